"""cilium-dbg style commands over the computed state: ``endpoint list``, ``identity
list``, ``service list``, ``bpf endpoint|ipcache|lb list``, ``bpf policy get``,
``bpf map lookup|dump`` (bpftool's plain output), and the computed kinds
ciliumendpoints, ciliumnodes and ciliumidentities for ``get``.

Commands that show per-node state print one section per node (``Node: <name>``
header) unless ``--node`` picks one. ``bpf`` commands read map bytes through
``cli.state.map_source`` (the kernel's maps when the cluster is up, else the model's),
so both datapaths print the same.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address
from typing import Any

from ciliate.cli import (
    cilium_kinds,  # noqa: F401  (registers the computed kinds for `get`)
    render,
)
from ciliate.cli.context import Context
from ciliate.cli.state import MapSource, codec_for, load_desired, map_source
from ciliate.control.services import PROTOCOL_NAMES, service_flag_names
from ciliate.desired import (
    ENDPOINT_F_HOST,
    IPCACHE_F_HAS_TUNNEL_EP,
    IPCACHE_F_REMOTE_CLUSTER,
    IPCACHE_F_SKIP_TUNNEL,
    LB_SCOPE_INT,
    DesiredState,
    EndpointInfo,
    EndpointKey,
    IPCacheKey,
    LB4Backend,
    LB4Key,
    LB4ReverseNat,
    LB4Service,
    MapName,
    NodeState,
    PolicyEntry,
    PolicyKey,
    RemoteEndpointInfo,
    policy_map_name,
)
from ciliate.errors import CiliateError, ExitCode, NotFoundError

RAW = argparse.RawDescriptionHelpFormatter
BACKEND_STATES = {0: "active", 1: "terminating", 2: "quarantined", 3: "maintenance"}
AUTH_TYPES = {0: "disabled", 1: "spire", 2: "test-always-fail"}


def _nodes(state: DesiredState, node: str | None) -> list[NodeState]:
    if node is None:
        return [state.nodes[n] for n in sorted(state.nodes)]
    if node not in state.nodes:
        raise NotFoundError(f"node {node!r} not found (nodes: {', '.join(sorted(state.nodes))})")
    return [state.nodes[node]]


def _sections(
    ctx: Context, nodes: Sequence[NodeState], body: Callable[[NodeState], str], one: bool
) -> None:
    for i, n in enumerate(nodes):
        if not one:
            if i:
                ctx.out()
            ctx.out(f"Node: {n.name}")
        text = body(n)
        if text:
            ctx.out(text)


def _dump(src: MapSource, node: str, map_name: str) -> list[tuple[Any, Any]]:
    c = codec_for(map_name)
    return [(c.parse_key(k), c.parse_value(v)) for k, v in src.dump(node, map_name)]


# --- endpoint list / identity list -------------------------------------------------------


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


def _endpoint_list(args: argparse.Namespace, ctx: Context) -> int:
    state = load_desired(ctx)
    nodes = _nodes(state, args.node)
    if args.output == "json":
        ctx.out(
            render.to_json(
                [
                    _endpoint_json(state, n, ep.id)
                    for n in nodes
                    for ep in sorted(n.endpoints.values(), key=lambda e: e.id)
                ]
            )
        )
        return ExitCode.OK
    headers = ["ENDPOINT", "POLICY (ingress)\nENFORCEMENT", "POLICY (egress)\nENFORCEMENT", "IDENTITY",
               "LABELS (source:key[=value])", "IPv6", "IPv4", "STATUS"]  # fmt: skip
    _sections(
        ctx, nodes, lambda n: render.table(headers, _endpoint_rows(state, n)), args.node is not None
    )
    return ExitCode.OK


def _endpoint_json(state: DesiredState, n: NodeState, ep_id: int) -> dict[str, Any]:
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


def _identity_list(args: argparse.Namespace, ctx: Context) -> int:
    state = load_desired(ctx)
    ids = sorted(state.identities.values(), key=lambda i: i.id)
    if args.output == "json":
        ctx.out(render.to_json([{"id": i.id, "labels": list(i.labels)} for i in ids]))
        return ExitCode.OK
    ctx.out(render.table(["ID", "LABELS"], [[str(i.id), "\n".join(i.labels)] for i in ids]))
    return ExitCode.OK


# --- bpf endpoint / ipcache / lb list ---------------------------------------------------------


def _fmt_endpoint(k: EndpointKey, v: EndpointInfo) -> tuple[str, str]:
    key = f"{k.ip}{'@' + str(k.cluster_id) if k.cluster_id else ''}:0"
    if v.flags & ENDPOINT_F_HOST:
        return key, "(localhost)"
    return key, (
        f"id={v.lxc_id:<5d} sec_id={v.sec_id:<5d} flags=0x{v.flags:04X} ifindex={v.ifindex:<3d} "
        f"mac={v.mac.upper()} nodemac={v.node_mac.upper()} parent_ifindex={v.parent_ifindex:<3d}"
    ).rstrip()


def _bpf_endpoint_list(args: argparse.Namespace, ctx: Context) -> int:
    state = load_desired(ctx)
    src = map_source(ctx, state)

    def body(n: NodeState) -> str:
        entries = sorted(_dump(src, n.name, MapName.LXC.value), key=lambda kv: kv[0])
        rows = [list(_fmt_endpoint(k, v)) for k, v in entries]
        return render.table(["IP ADDRESS", "LOCAL ENDPOINT INFO"], rows)

    _sections(ctx, _nodes(state, args.node), body, args.node is not None)
    return ExitCode.OK


def ipcache_flags(flags: int) -> str:
    names = [n for bit, n in ((IPCACHE_F_SKIP_TUNNEL, "skiptunnel"), (IPCACHE_F_HAS_TUNNEL_EP, "hastunnel"),
                              (0x4, "ipv6tunnel"), (IPCACHE_F_REMOTE_CLUSTER, "remotecluster")) if flags & bit]  # fmt: skip
    return ",".join(names) or "<none>"


def _fmt_ipcache(k: IPCacheKey, v: RemoteEndpointInfo) -> tuple[str, str]:
    key = f"{k.prefix}{'@' + str(k.cluster_id) if k.cluster_id else ''}"
    tun = v.tunnel_endpoint or IPv4Address(0)
    return (
        key,
        f"identity={v.sec_identity} encryptkey={v.encrypt_key} tunnelendpoint={tun} flags={ipcache_flags(v.flags)}",
    )


def _bpf_ipcache_list(args: argparse.Namespace, ctx: Context) -> int:
    state = load_desired(ctx)
    src = map_source(ctx, state)

    def body(n: NodeState) -> str:
        entries = _dump(src, n.name, MapName.IPCACHE.value)
        if not entries:
            ctx.err("No entries found.")
            return ""
        entries.sort(key=lambda kv: (kv[0].prefix.network_address, kv[0].prefix.prefixlen))
        return render.table(
            ["IP PREFIX/ADDRESS", "IDENTITY"], [list(_fmt_ipcache(k, v)) for k, v in entries]
        )

    _sections(ctx, _nodes(state, args.node), body, args.node is not None)
    return ExitCode.OK


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


def _bpf_lb_list(args: argparse.Namespace, ctx: Context) -> int:
    state = load_desired(ctx)
    src = map_source(ctx, state)

    def body(n: NodeState) -> str:
        if args.revnat:
            entries: list[tuple[int, LB4ReverseNat]] = sorted(
                _dump(src, n.name, MapName.LB4_REVERSE_NAT.value)
            )
            return render.table(
                ["ID", "FRONTEND ADDRESS"], [[str(k), f"{v.address}:{v.port}"] for k, v in entries]
            )
        backends: dict[int, LB4Backend] = dict(_dump(src, n.name, MapName.LB4_BACKENDS.value))
        if args.backends:
            return render.table(["ID", "BACKEND ADDRESS", "STATE"], [
                [str(i), f"{b.address}:{b.port}/{_proto(b.proto)}", BACKEND_STATES.get(b.flags, str(b.flags))]
                for i, b in sorted(backends.items())
            ])  # fmt: skip
        services = _dump(src, n.name, MapName.LB4_SERVICES.value)
        return render.table(
            ["SERVICE ADDRESS", "BACKEND ADDRESS (REVNAT_ID) (SLOT)"], lb_rows(services, backends)
        )

    _sections(ctx, _nodes(state, args.node), body, args.node is not None)
    return ExitCode.OK


def _service_list(args: argparse.Namespace, ctx: Context) -> int:
    state = load_desired(ctx)
    src = map_source(ctx, state)

    def body(n: NodeState) -> str:
        backends: dict[int, LB4Backend] = dict(_dump(src, n.name, MapName.LB4_BACKENDS.value))
        masters: dict[tuple[Any, ...], tuple[LB4Key, LB4Service]] = {}
        slots: dict[tuple[Any, ...], list[tuple[int, int]]] = {}
        for k, v in _dump(src, n.name, MapName.LB4_SERVICES.value):
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

    _sections(ctx, _nodes(state, args.node), body, args.node is not None)
    return ExitCode.OK


# --- bpf policy get ---------------------------------------------------------------------


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
    hits: list[tuple[NodeState, int]] = []
    for n in _nodes(state, node):
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


def _bpf_policy_get(args: argparse.Namespace, ctx: Context) -> int:
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
        entries: list[tuple[PolicyKey, PolicyEntry]] = _dump(src, n.name, policy_map_name(ep_id))
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


# --- bpf map lookup / dump (bpftool) --------------------------------------------------------


def bpftool_hex(data: bytes) -> str:
    """bpftool's fprint_hex: bytes space-separated, two spaces after 8, 16 per line."""
    out: list[str] = []
    for i, b in enumerate(data):
        if i == 0:
            pfx = ""
        elif i % 16 == 0:
            pfx = "\n"
        elif i % 8 == 0:
            pfx = "  "
        else:
            pfx = " "
        out.append(f"{pfx}{b:02x}")
    return "".join(out)


def bpftool_entry(key: bytes, value: bytes) -> str:
    """bpftool's plain entry: ``key:``/``value:`` on their own lines when either side
    is longer than 16 bytes, else on one or two lines (print_entry_plain)."""
    break_names = len(key) > 16 or len(value) > 16
    single = len(key) + len(value) <= 24 and not break_names
    sep = "\n" if break_names else " "
    text = f"key:{sep}{bpftool_hex(key)}"
    text += "  " if single else "\n"
    text += f"value:{sep}{bpftool_hex(value)}"
    return text


def parse_key_bytes(words: Sequence[str]) -> bytes:
    """bpftool's key syntax: ``hex 0a 0b ...`` or decimal bytes ``10 11 ...``."""
    ws = list(words)
    is_hex = bool(ws) and ws[0] == "hex"
    if is_hex:
        ws = ws[1:]
    try:
        vals = [int(w, 16) if is_hex else int(w, 0) for w in ws]
    except ValueError as e:
        raise CiliateError(f"invalid key byte: {e}") from e
    if any(not 0 <= v <= 255 for v in vals):
        raise CiliateError("key bytes must be 0..255")
    return bytes(vals)


def _bpf_map_lookup(args: argparse.Namespace, ctx: Context) -> int:
    if not args.key or args.key[0] != "key":
        ctx.err("Error: expected 'key' followed by the key bytes (e.g. key hex 0a 0a 02 79 ...)")
        return ExitCode.INVALID_INPUT
    key = parse_key_bytes(args.key[1:])
    c = codec_for(args.map)
    if len(key) != c.key_size:
        ctx.err(f"Error: key expected {c.key_size} bytes got {len(key)}")
        return ExitCode.INVALID_INPUT
    src = map_source(ctx)
    value = src.lookup(args.node, args.map, key)
    if value is None:
        ctx.err("Error: bpf map lookup elem failed: No such file or directory")
        return ExitCode.NOT_FOUND
    ctx.out(bpftool_entry(key, value))
    return ExitCode.OK


def _bpf_map_dump(args: argparse.Namespace, ctx: Context) -> int:
    src = map_source(ctx)
    entries = sorted(src.dump(args.node, args.map))
    for k, v in entries:
        ctx.out(bpftool_entry(k, v))
    ctx.out(f"Found {len(entries)} element{'s' if len(entries) != 1 else ''}")
    return ExitCode.OK


# --- registration ----------------------------------------------------------------------------


def _node_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--node", metavar="NODE", help="only this node (default: every node, one section each)"
    )


def _sub(sub: Any, name: str, help_: str, examples: str) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        name, help=help_, description=help_, epilog="Examples:\n" + examples, formatter_class=RAW
    )
    return p


def register(subparsers: Any) -> None:
    ep = _sub(
        subparsers,
        "endpoint",
        "Cilium endpoints (cilium-dbg endpoint)",
        "  ciliate endpoint list --node mycluster-worker",
    )
    ep_sub = ep.add_subparsers(dest="endpoint_command", metavar="COMMAND", required=True)
    p = _sub(
        ep_sub,
        "list",
        "list the endpoints of every node",
        "  ciliate endpoint list\n  ciliate endpoint list -o json",
    )
    _node_arg(p)
    p.add_argument("-o", "--output", choices=("table", "json"), default="table")
    p.set_defaults(func=_endpoint_list)

    idp = _sub(
        subparsers,
        "identity",
        "security identities (cilium-dbg identity)",
        "  ciliate identity list",
    )
    id_sub = idp.add_subparsers(dest="identity_command", metavar="COMMAND", required=True)
    p = _sub(
        id_sub,
        "list",
        "list the identities in use and the reserved ones",
        "  ciliate identity list",
    )
    p.add_argument("-o", "--output", choices=("table", "json"), default="table")
    p.set_defaults(func=_identity_list)

    svc = _sub(
        subparsers,
        "service",
        "load-balanced services (cilium-dbg service)",
        "  ciliate service list",
    )
    svc_sub = svc.add_subparsers(dest="service_command", metavar="COMMAND", required=True)
    p = _sub(
        svc_sub,
        "list",
        "frontends with their backends, per node",
        "  ciliate service list --node mycluster-worker",
    )
    _node_arg(p)
    p.set_defaults(func=_service_list)

    bpf = _sub(subparsers, "bpf", "BPF maps as the datapath holds them (cilium-dbg bpf, bpftool map)",
               "  ciliate bpf ipcache list --node mycluster-worker\n"
               "  ciliate bpf map lookup mycluster-worker cilium_lxc key hex 0a 0a 02 79 00 00 00 00 00 00 00 00 00 00 00 00 01 00 00 00")  # fmt: skip
    bpf_sub = bpf.add_subparsers(dest="bpf_command", metavar="MAP", required=True)

    e = _sub(
        bpf_sub,
        "endpoint",
        "cilium_lxc: local endpoints and host IPs",
        "  ciliate bpf endpoint list",
    )
    e_sub = e.add_subparsers(dest="bpf_endpoint_command", metavar="COMMAND", required=True)
    p = _sub(
        e_sub, "list", "dump cilium_lxc", "  ciliate bpf endpoint list --node mycluster-worker"
    )
    _node_arg(p)
    p.set_defaults(func=_bpf_endpoint_list)

    ic = _sub(
        bpf_sub,
        "ipcache",
        "cilium_ipcache: prefix -> identity, tunnel endpoint",
        "  ciliate bpf ipcache list",
    )
    ic_sub = ic.add_subparsers(dest="bpf_ipcache_command", metavar="COMMAND", required=True)
    p = _sub(
        ic_sub, "list", "dump cilium_ipcache", "  ciliate bpf ipcache list --node mycluster-worker"
    )
    _node_arg(p)
    p.set_defaults(func=_bpf_ipcache_list)

    lb = _sub(
        bpf_sub,
        "lb",
        "cilium_lb4_*: services, backends, reverse NAT",
        "  ciliate bpf lb list\n  ciliate bpf lb list --backends",
    )
    lb_sub = lb.add_subparsers(dest="bpf_lb_command", metavar="COMMAND", required=True)
    p = _sub(
        lb_sub,
        "list",
        "dump the lb4 maps",
        "  ciliate bpf lb list --revnat --node mycluster-worker",
    )
    _node_arg(p)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--revnat", action="store_true", help="cilium_lb4_reverse_nat")
    g.add_argument("--backends", action="store_true", help="cilium_lb4_backends_v3")
    p.set_defaults(func=_bpf_lb_list)

    po = _sub(
        bpf_sub,
        "policy",
        "cilium_policy_v2_NNNNN: an endpoint's policy map",
        "  ciliate bpf policy get 1547",
    )
    po_sub = po.add_subparsers(dest="bpf_policy_command", metavar="COMMAND", required=True)
    p = _sub(po_sub, "get", "the policy map of endpoint EP (an ID, or a pod ns/name)",
             "  ciliate bpf policy get 1547 --node mycluster-worker\n  ciliate bpf policy get networking101/netshoot-abc -n")  # fmt: skip
    p.add_argument("endpoint", metavar="EP")
    _node_arg(p)
    p.add_argument("-n", "--numeric", action="store_true", help="print identities as numbers")
    p.set_defaults(func=_bpf_policy_get)

    mp = _sub(bpf_sub, "map", "bpftool-style access to any map by name",
              "  ciliate bpf map lookup mycluster-worker cilium_ipcache key hex 40 00 00 00 00 00 00 01 0a 0a 01 9b 00 00 00 00 00 00 00 00 00 00 00 00")  # fmt: skip
    mp_sub = mp.add_subparsers(dest="bpf_map_command", metavar="COMMAND", required=True)
    p = _sub(mp_sub, "lookup", "look up one key (bpftool map lookup)",
             "  ciliate bpf map lookup NODE cilium_lxc key hex 0a 0a 02 79 00 00 00 00 00 00 00 00 00 00 00 00 01 00 00 00")  # fmt: skip
    p.add_argument("node", metavar="NODE")
    p.add_argument(
        "map",
        metavar="MAP",
        help="cilium_lxc, cilium_ipcache, cilium_lb4_services_v2, cilium_lb4_backends_v3, cilium_lb4_reverse_nat, cilium_policy_v2_NNNNN",
    )
    p.add_argument("key", nargs=argparse.REMAINDER, metavar="key [hex] BYTES")
    p.set_defaults(func=_bpf_map_lookup)
    p = _sub(
        mp_sub,
        "dump",
        "every entry of a map (bpftool map dump)",
        "  ciliate bpf map dump mycluster-worker cilium_lxc",
    )
    p.add_argument("node", metavar="NODE")
    p.add_argument("map", metavar="MAP")
    p.set_defaults(func=_bpf_map_dump)
