"""Services as the load balancer holds them: ``service list`` (frontends with their
backends) and ``bpf lb list`` (cilium_lb4_services_v2, ``--backends``
cilium_lb4_backends_v3, ``--revnat`` cilium_lb4_reverse_nat), as cilium-dbg prints them.

Inputs: the map source's lb4 bytes per node. Output: one table per node on the Context.
Imports nothing above ``cli``.
"""

from __future__ import annotations

import argparse
from typing import Any

from ciliate.cli import render
from ciliate.cli.cilium.sections import dump_typed, print_sections, select_nodes
from ciliate.cli.context import Context
from ciliate.cli.state import load_desired, map_source
from ciliate.control.services import PROTOCOL_NAMES, service_flag_names
from ciliate.desired import (
    LB_SCOPE_INT,
    LB4Backend,
    LB4Key,
    LB4ReverseNat,
    LB4Service,
    MapName,
    NodeState,
)
from ciliate.errors import ExitCode

BACKEND_STATES = {0: "active", 1: "terminating", 2: "quarantined", 3: "maintenance"}


def _proto(p: int) -> str:
    return PROTOCOL_NAMES.get(p, "ANY")


def _frontend_text(k: LB4Key) -> str:
    text = f"{k.address}:{k.dport}"
    if k.proto:
        text += f"/{_proto(k.proto)}"
    if k.scope == LB_SCOPE_INT:
        text += "/i"
    return text


def lb_rows(
    services: list[tuple[LB4Key, LB4Service]], backends: dict[int, LB4Backend]
) -> list[list[str]]:
    """`bpf lb list` rows: per frontend its slots, then the master entry."""
    by_fe: dict[tuple[Any, ...], list[tuple[LB4Key, LB4Service]]] = {}
    for k, v in services:
        by_fe.setdefault((k.address, k.dport, k.proto, k.scope), []).append((k, v))
    rows: list[list[str]] = []
    for fe in sorted(by_fe):
        entries = sorted(by_fe[fe], key=lambda kv: kv[0].backend_slot)
        lines: list[str] = []
        master = entries[0] if entries and entries[0][0].backend_slot == 0 else None
        for k, v in entries:
            if k.backend_slot == 0:
                continue
            b = backends.get(v.backend_id)
            addr = (
                f"{b.address}:{b.port}/{_proto(b.proto)}"
                if b
                else f"<backend {v.backend_id} missing>"
            )
            lines.append(f"{addr} ({v.rev_nat_index}) ({k.backend_slot})")
        if master is not None:
            mv = master[1]
            lines.append(
                f"0.0.0.0:0 ({mv.rev_nat_index}) (0) [{', '.join(service_flag_names(mv))}]"
            )
        rows.append([_frontend_text(entries[0][0]), "\n".join(lines)])
    return rows


def bpf_lb_list(args: argparse.Namespace, ctx: Context) -> int:
    state = load_desired(ctx)
    src = map_source(ctx, state)

    def body(n: NodeState) -> str:
        if args.revnat:
            entries: list[tuple[int, LB4ReverseNat]] = sorted(
                dump_typed(src, n.name, MapName.LB4_REVERSE_NAT.value)
            )
            return render.table(
                ["ID", "FRONTEND ADDRESS"], [[str(k), f"{v.address}:{v.port}"] for k, v in entries]
            )
        backends: dict[int, LB4Backend] = dict(dump_typed(src, n.name, MapName.LB4_BACKENDS.value))
        if args.backends:
            return render.table(["ID", "BACKEND ADDRESS", "STATE"], [
                [str(i), f"{b.address}:{b.port}/{_proto(b.proto)}", BACKEND_STATES.get(b.flags, str(b.flags))]
                for i, b in sorted(backends.items())
            ])  # fmt: skip
        services = dump_typed(src, n.name, MapName.LB4_SERVICES.value)
        return render.table(
            ["SERVICE ADDRESS", "BACKEND ADDRESS (REVNAT_ID) (SLOT)"], lb_rows(services, backends)
        )

    print_sections(ctx, select_nodes(state, args.node), body, args.node is not None)
    return ExitCode.OK


def service_list(args: argparse.Namespace, ctx: Context) -> int:
    state = load_desired(ctx)
    src = map_source(ctx, state)

    def body(n: NodeState) -> str:
        backends: dict[int, LB4Backend] = dict(dump_typed(src, n.name, MapName.LB4_BACKENDS.value))
        masters: dict[tuple[Any, ...], tuple[LB4Key, LB4Service]] = {}
        slots: dict[tuple[Any, ...], list[tuple[int, int]]] = {}
        for k, v in dump_typed(src, n.name, MapName.LB4_SERVICES.value):
            fe = (k.address, k.dport, k.proto, k.scope)
            if k.backend_slot == 0:
                masters[fe] = (k, v)
            else:
                slots.setdefault(fe, []).append((k.backend_slot, v.backend_id))
        rows: list[list[str]] = []
        for fe in sorted(masters):
            k, v = masters[fe]
            lines = []
            for i, (_slot, bid) in enumerate(sorted(slots.get(fe, [])), start=1):
                b = backends.get(bid)
                if b is not None:
                    lines.append(
                        f"{i} => {b.address}:{b.port}/{_proto(b.proto)} ({BACKEND_STATES.get(b.flags, 'active')})"
                    )
            rows.append([f"{_frontend_text(k)}", service_flag_names(v)[0], "\n".join(lines)])
        headers = ["ID", "Frontend", "Service Type", "Backend"]
        return render.table(
            headers,
            [
                [str(masters[fe][1].rev_nat_index), *r]
                for fe, r in zip(sorted(masters), rows, strict=True)
            ],
        )

    print_sections(ctx, select_nodes(state, args.node), body, args.node is not None)
    return ExitCode.OK
