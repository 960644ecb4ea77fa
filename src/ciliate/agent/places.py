"""Pod places: where each pod's endpoint lives in a DesiredState, and what wires it.

Role: the agent compares two DesiredStates pod by pod to decide which pods to rebuild:
``pod_places`` maps every pod to its node and endpoint (``PodPlace``), ``wiring`` is the
part of a place its namespace and veth are built from. A pod whose wiring is unchanged
keeps its netns, connections and processes; only its map entries change.

Inputs: ``DesiredState``. Outputs: plain values, no effects.
Must not import cli or the agent's other modules (they import this one).
"""

from __future__ import annotations

from dataclasses import dataclass

from ciliate.datapath.linux.topology import iter_pod_endpoints
from ciliate.desired import DesiredState, EndpointState


@dataclass(frozen=True, slots=True)
class PodPlace:
    """Where a pod's endpoint lives, as compared between two DesiredStates."""

    node: str
    endpoint: EndpointState


def wiring(place: PodPlace) -> tuple[object, ...]:
    """What the pod's namespace and veth are built from. Identity, labels and policy
    enforcement are map contents: a pod whose policy or labels change keeps its netns,
    its connections and its processes (only its map entries change)."""
    ep = place.endpoint
    return (place.node, ep.id, ep.ip, ep.lxc_name, ep.lxc_ifindex, ep.lxc_mac,
            ep.pod_ifindex, ep.pod_mac)  # fmt: skip


def pod_places(state: DesiredState) -> dict[str, PodPlace]:
    return {
        ep.pod: PodPlace(node.name, ep)
        for node in state.nodes.values()
        for ep in iter_pod_endpoints(node)
    }
