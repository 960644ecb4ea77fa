"""Endpoints and identities: ``endpoint list``, ``identity list`` and ``bpf endpoint
list`` (cilium_lxc), as cilium-dbg prints them.

Inputs: the DesiredState (typed endpoints and identities) and, for ``bpf endpoint
list``, the cilium_lxc bytes of the map source. Output: tables or JSON on the Context.
Imports nothing above ``cli``.
"""

from __future__ import annotations

import argparse
from typing import Any

from ciliate.cli import render
from ciliate.cli.cilium.sections import dump_typed, print_sections, select_nodes
from ciliate.cli.context import Context
from ciliate.cli.state import load_desired, map_source
from ciliate.desired import (
    ENDPOINT_F_HOST,
    DesiredState,
    EndpointInfo,
    EndpointKey,
    MapName,
    NodeState,
)
from ciliate.errors import ExitCode


def _endpoint_rows(state: DesiredState, n: NodeState) -> list[list[str]]:
    rows: list[tuple[int, list[str]]] = []
    if n.host_endpoint_id:
        labels = [
            "reserved:host",
            *(f"k8s:{k}={v}" if v else f"k8s:{k}" for k, v in sorted(n.labels.items())),
        ]
        rows.append(
            (
                n.host_endpoint_id,
                [
                    str(n.host_endpoint_id),
                    "Disabled",
                    "Disabled",
                    "1",
                    "\n".join(labels),
                    "",
                    "",
                    "ready",
                ],
            )
        )
    for ep in n.endpoints.values():
        rows.append((ep.id, [
            str(ep.id),
            "Enabled" if ep.ingress_enforced else "Disabled",
            "Enabled" if ep.egress_enforced else "Disabled",
            str(ep.identity),
            "\n".join(ep.labels),
            "",
            str(ep.ip),
            ep.state,
        ]))  # fmt: skip
    return [r for _, r in sorted(rows, key=lambda x: x[0])]


def endpoint_list(args: argparse.Namespace, ctx: Context) -> int:
    state = load_desired(ctx)
    nodes = select_nodes(state, args.node)
    if args.output == "json":
        ctx.out(
            render.to_json(
                [
                    _endpoint_json(n, ep.id)
                    for n in nodes
                    for ep in sorted(n.endpoints.values(), key=lambda e: e.id)
                ]
            )
        )
        return ExitCode.OK
    headers = ["ENDPOINT", "POLICY (ingress)\nENFORCEMENT", "POLICY (egress)\nENFORCEMENT", "IDENTITY",
               "LABELS (source:key[=value])", "IPv6", "IPv4", "STATUS"]  # fmt: skip
    print_sections(
        ctx, nodes, lambda n: render.table(headers, _endpoint_rows(state, n)), args.node is not None
    )
    return ExitCode.OK


def _endpoint_json(n: NodeState, ep_id: int) -> dict[str, Any]:
    ep = n.endpoints[ep_id]
    return {
        "id": ep.id,
        "node": n.name,
        "pod": ep.pod,
        "kind": str(ep.kind),
        "identity": {"id": ep.identity, "labels": list(ep.labels)},
        "ipv4": str(ep.ip),
        "interface": {"name": ep.lxc_name, "ifindex": ep.lxc_ifindex, "mac": ep.lxc_mac},
        "pod-interface": {"ifindex": ep.pod_ifindex, "mac": ep.pod_mac},
        "policy": {"ingress": ep.ingress_enforced, "egress": ep.egress_enforced},
        "state": ep.state,
    }


def identity_list(args: argparse.Namespace, ctx: Context) -> int:
    state = load_desired(ctx)
    ids = sorted(state.identities.values(), key=lambda i: i.id)
    if args.output == "json":
        ctx.out(render.to_json([{"id": i.id, "labels": list(i.labels)} for i in ids]))
        return ExitCode.OK
    ctx.out(render.table(["ID", "LABELS"], [[str(i.id), "\n".join(i.labels)] for i in ids]))
    return ExitCode.OK


def _fmt_endpoint(k: EndpointKey, v: EndpointInfo) -> tuple[str, str]:
    key = f"{k.ip}{'@' + str(k.cluster_id) if k.cluster_id else ''}:0"
    if v.flags & ENDPOINT_F_HOST:
        return key, "(localhost)"
    return key, (
        f"id={v.lxc_id:<5d} sec_id={v.sec_id:<5d} flags=0x{v.flags:04X} ifindex={v.ifindex:<3d} "
        f"mac={v.mac.upper()} nodemac={v.node_mac.upper()} parent_ifindex={v.parent_ifindex:<3d}"
    ).rstrip()


def bpf_endpoint_list(args: argparse.Namespace, ctx: Context) -> int:
    state = load_desired(ctx)
    src = map_source(ctx, state)

    def body(n: NodeState) -> str:
        entries = sorted(dump_typed(src, n.name, MapName.LXC.value), key=lambda kv: kv[0])
        rows = [list(_fmt_endpoint(k, v)) for k, v in entries]
        return render.table(["IP ADDRESS", "LOCAL ENDPOINT INFO"], rows)

    print_sections(ctx, select_nodes(state, args.node), body, args.node is not None)
    return ExitCode.OK
