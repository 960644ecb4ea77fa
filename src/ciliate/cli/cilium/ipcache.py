"""The ipcache: ``bpf ipcache list`` (cilium_ipcache: prefix -> identity, tunnel
endpoint, flags), as cilium-dbg prints it.

Inputs: the map source's cilium_ipcache bytes per node. Output: one table per node on
the Context ("No entries found." on stderr for an empty map). Imports nothing above
``cli``.
"""

from __future__ import annotations

import argparse
from ipaddress import IPv4Address

from ciliate.cli import render
from ciliate.cli.cilium.sections import dump_typed, print_sections, select_nodes
from ciliate.cli.context import Context
from ciliate.cli.state import load_desired, map_source
from ciliate.desired import (
    IPCACHE_F_HAS_TUNNEL_EP,
    IPCACHE_F_REMOTE_CLUSTER,
    IPCACHE_F_SKIP_TUNNEL,
    IPCacheKey,
    MapName,
    NodeState,
    RemoteEndpointInfo,
)
from ciliate.errors import ExitCode


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


def bpf_ipcache_list(args: argparse.Namespace, ctx: Context) -> int:
    state = load_desired(ctx)
    src = map_source(ctx, state)

    def body(n: NodeState) -> str:
        entries = dump_typed(src, n.name, MapName.IPCACHE.value)
        if not entries:
            ctx.err("No entries found.")
            return ""
        entries.sort(key=lambda kv: (kv[0].prefix.network_address, kv[0].prefix.prefixlen))
        return render.table(
            ["IP PREFIX/ADDRESS", "IDENTITY"], [list(_fmt_ipcache(k, v)) for k, v in entries]
        )

    print_sections(ctx, select_nodes(state, args.node), body, args.node is not None)
    return ExitCode.OK
