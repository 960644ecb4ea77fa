"""Per-node output for the cilium-dbg views: which nodes a command covers, one
``Node: <name>`` section each, and a node's map entries decoded to typed values.

Inputs: the DesiredState (node names) and a ``MapSource`` (map bytes from the kernel
when the cluster is up, else from the model), so both datapaths print the same.
Output: text through the ``Context``. Imports only ``cli.context``/``cli.state`` and the
desired-state types.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ciliate.cli.context import Context
from ciliate.cli.state import MapSource, codec_for
from ciliate.desired import DesiredState, NodeState
from ciliate.errors import NotFoundError


def select_nodes(state: DesiredState, node: str | None) -> list[NodeState]:
    """Every node in name order, or only ``node`` (``--node``); an unknown name is
    NotFound and lists the nodes there are."""
    if node is None:
        return [state.nodes[n] for n in sorted(state.nodes)]
    if node not in state.nodes:
        raise NotFoundError(f"node {node!r} not found (nodes: {', '.join(sorted(state.nodes))})")
    return [state.nodes[node]]


def print_sections(
    ctx: Context, nodes: Sequence[NodeState], body: Callable[[NodeState], str], one: bool
) -> None:
    """``body`` of each node, under a ``Node:`` header and a blank line between nodes,
    unless ``one`` node was asked for (then the body alone, as cilium-dbg prints it)."""
    for i, n in enumerate(nodes):
        if not one:
            if i:
                ctx.out()
            ctx.out(f"Node: {n.name}")
        text = body(n)
        if text:
            ctx.out(text)


def dump_typed(src: MapSource, node: str, map_name: str) -> list[tuple[Any, Any]]:
    """Every entry of a node's map, key and value parsed by the map's codec."""
    c = codec_for(map_name)
    return [(c.parse_key(k), c.parse_value(v)) for k, v in src.dump(node, map_name)]
