"""An endpoint's policy map: ``bpf policy get EP`` (cilium_policy_v2_NNNNN), cilium-dbg's
columns plus PROVENANCE: the policy, rule and file:line that made each entry.

Inputs: the DesiredState (typed policy entries carry the provenance; identities give
the labels) and the map source's bytes of the endpoint's policy map. Output: one table
per matching endpoint on the Context. Imports nothing above ``cli``.
"""

from __future__ import annotations

import argparse

from ciliate.cli import render
from ciliate.cli.cilium.sections import dump_typed, select_nodes
from ciliate.cli.context import Context
from ciliate.cli.state import load_desired, map_source
from ciliate.control.services import PROTOCOL_NAMES
from ciliate.desired import DesiredState, NodeState, PolicyEntry, PolicyKey, policy_map_name
from ciliate.errors import ExitCode, NotFoundError

AUTH_TYPES = {0: "disabled", 1: "spire", 2: "test-always-fail"}


def _port_proto(k: PolicyKey) -> str:
    if k.protocol == 0:
        return "ANY"
    name = PROTOCOL_NAMES.get(
        k.protocol, {1: "ICMP", 58: "ICMPv6"}.get(k.protocol, str(k.protocol))
    )
    if k.port_prefix_len == 0:
        return name
    if k.port_prefix_len == 16:
        return f"{k.dport}/{name}"
    last = k.dport + (1 << (16 - k.port_prefix_len)) - 1
    return f"{k.dport}-{last}/{name}"


def _provenance(e: PolicyEntry) -> str:
    out = []
    for p in e.provenance:
        obj = "/".join(x for x in (p.namespace, p.name) if x)
        where = f"{p.file}:{p.line}" if p.file else ""
        out.append(" ".join(x for x in (p.kind, obj, p.rule, where) if x))
    return "\n".join(out) or "-"


def _find_endpoint(state: DesiredState, ep: str, node: str | None) -> list[tuple[NodeState, int]]:
    """Endpoints named by ``ep``: an endpoint ID, a pod ``ns/name`` or a bare pod name
    (which may match on several nodes)."""
    hits: list[tuple[NodeState, int]] = []
    for n in select_nodes(state, node):
        for e in n.endpoints.values():
            if (
                (ep.isdigit() and e.id == int(ep))
                or e.pod == ep
                or (e.pod and e.pod.split("/", 1)[1] == ep)
            ):
                hits.append((n, e.id))
    if not hits:
        raise NotFoundError(f"endpoint {ep!r} not found{' on node ' + node if node else ''}")
    return hits


def bpf_policy_get(args: argparse.Namespace, ctx: Context) -> int:
    state = load_desired(ctx)
    src = map_source(ctx, state)
    hits = _find_endpoint(state, args.endpoint, args.node)
    headers = ["POLICY", "DIRECTION", "IDENTITY" if args.numeric else "LABELS (source:key[=value])", "PORT/PROTO",
               "PROXY PORT", "AUTH TYPE", "BYTES", "PACKETS", "PREFIX", "COOKIE", "PROVENANCE"]  # fmt: skip
    for i, (n, ep_id) in enumerate(hits):
        if len(hits) > 1:
            if i:
                ctx.out()
            ctx.out(f"Node: {n.name}  Endpoint ID: {ep_id}")
        entries: list[tuple[PolicyKey, PolicyEntry]] = dump_typed(
            src, n.name, policy_map_name(ep_id)
        )
        typed = n.policy.get(ep_id, {})
        if not entries:
            ctx.out("Policy stats empty. Perhaps the policy enforcement is disabled?")
            continue
        entries.sort(
            key=lambda kv: (
                not kv[1].deny,
                kv[0].egress,
                kv[0].identity,
                kv[0].protocol,
                kv[0].dport,
            )
        )
        rows = []
        for k, v in entries:
            full = typed.get(k, v)  # the typed entry carries the provenance
            if args.numeric:
                who = str(k.identity)
            elif k.identity == 0:
                who = "ANY"
            else:
                ident = state.identities.get(k.identity)
                who = "\n".join(ident.labels) if ident else str(k.identity)
            rows.append([
                "Deny" if v.deny else "Allow",
                "Egress" if k.egress else "Ingress",
                who,
                _port_proto(k),
                str(v.proxy_port) if v.proxy_port else "NONE",
                AUTH_TYPES.get(v.auth_type, str(v.auth_type)),
                "-", "-",
                str(k.lpm_prefix_len),
                str(v.cookie),
                _provenance(full),
            ])  # fmt: skip
        ctx.out(render.table(headers, rows))
    return ExitCode.OK
