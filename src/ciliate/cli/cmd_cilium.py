"""cilium-dbg style commands over the computed state: ``endpoint list``, ``identity
list``, ``service list``, ``bpf endpoint|ipcache|lb list``, ``bpf policy get``,
``bpf map lookup|dump`` (bpftool's plain output), and the computed kinds
ciliumendpoints, ciliumnodes and ciliumidentities for ``get``.

This module only registers the commands, from one table (``COMMANDS``): every entry is
a command path with its help, examples, arguments and, for a leaf, the handler. The
views live in ``ciliate.cli.cilium`` by domain noun (endpoint, ipcache, lb, policymap,
bpftool). Commands that show per-node state print one section per node (``Node:
<name>`` header) unless ``--node`` picks one. ``bpf`` commands read map bytes through
``cli.state.map_source`` (the kernel's maps when the cluster is up, else the model's),
so both datapaths print the same.

The formatting helpers stay importable from here (``bpftool_hex``, ``bpftool_entry``,
``parse_key_bytes``, ``ipcache_flags``, ``lb_rows``). Imports nothing above ``cli``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ciliate.cli import (
    cilium_kinds,  # noqa: F401  (registers the computed kinds for `get`)
)
from ciliate.cli.cilium.bpftool import (
    bpf_map_dump,
    bpf_map_lookup,
    bpftool_entry,
    bpftool_hex,
    parse_key_bytes,
)
from ciliate.cli.cilium.endpoint import bpf_endpoint_list, endpoint_list, identity_list
from ciliate.cli.cilium.ipcache import bpf_ipcache_list, ipcache_flags
from ciliate.cli.cilium.lb import BACKEND_STATES, bpf_lb_list, lb_rows, service_list
from ciliate.cli.cilium.policymap import AUTH_TYPES, bpf_policy_get
from ciliate.cli.context import Context

__all__ = [
    "AUTH_TYPES",
    "BACKEND_STATES",
    "COMMANDS",
    "Command",
    "bpftool_entry",
    "bpftool_hex",
    "ipcache_flags",
    "lb_rows",
    "parse_key_bytes",
    "register",
]

RAW = argparse.RawDescriptionHelpFormatter

Handler = Callable[[argparse.Namespace, Context], int]
Arguments = Callable[[argparse.ArgumentParser], None]


# --- arguments, in the order each command lists them ----------------------------------


def _node(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--node", metavar="NODE", help="only this node (default: every node, one section each)"
    )


def _output(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", choices=("table", "json"), default="table")


def _lb_table(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--revnat", action="store_true", help="cilium_lb4_reverse_nat")
    g.add_argument("--backends", action="store_true", help="cilium_lb4_backends_v3")


def _endpoint(p: argparse.ArgumentParser) -> None:
    p.add_argument("endpoint", metavar="EP")


def _numeric(p: argparse.ArgumentParser) -> None:
    p.add_argument("-n", "--numeric", action="store_true", help="print identities as numbers")


def _node_map_key(p: argparse.ArgumentParser) -> None:
    p.add_argument("node", metavar="NODE")
    p.add_argument(
        "map",
        metavar="MAP",
        help="cilium_lxc, cilium_ipcache, cilium_lb4_services_v2, cilium_lb4_backends_v3, cilium_lb4_reverse_nat, cilium_policy_v2_NNNNN",
    )
    p.add_argument("key", nargs=argparse.REMAINDER, metavar="key [hex] BYTES")


def _node_map(p: argparse.ArgumentParser) -> None:
    p.add_argument("node", metavar="NODE")
    p.add_argument("map", metavar="MAP")


# --- the table ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """One command of the table. A group (no handler) takes a sub-command, named by
    ``metavar`` in its usage and stored in ``<path joined by _>_command``; a leaf runs
    ``handler``. A parent comes before its children."""

    path: tuple[str, ...]
    help: str
    examples: tuple[str, ...]
    handler: Handler | None = None
    arguments: tuple[Arguments, ...] = ()
    metavar: str = "COMMAND"


W = "mycluster-worker"
LXC_KEY = "key hex 0a 0a 02 79 00 00 00 00 00 00 00 00 00 00 00 00 01 00 00 00"

COMMANDS: tuple[Command, ...] = (
    Command(("endpoint",), "Cilium endpoints (cilium-dbg endpoint)",
            (f"ciliate endpoint list --node {W}",)),
    Command(("endpoint", "list"), "list the endpoints of every node",
            ("ciliate endpoint list", "ciliate endpoint list -o json"),
            endpoint_list, (_node, _output)),
    Command(("identity",), "security identities (cilium-dbg identity)",
            ("ciliate identity list",)),
    Command(("identity", "list"), "list the identities in use and the reserved ones",
            ("ciliate identity list",),
            identity_list, (_output,)),
    Command(("service",), "load-balanced services (cilium-dbg service)",
            ("ciliate service list",)),
    Command(("service", "list"), "frontends with their backends, per node",
            (f"ciliate service list --node {W}",),
            service_list, (_node,)),
    Command(("bpf",), "BPF maps as the datapath holds them (cilium-dbg bpf, bpftool map)",
            (f"ciliate bpf ipcache list --node {W}", f"ciliate bpf map lookup {W} cilium_lxc {LXC_KEY}"),
            metavar="MAP"),
    Command(("bpf", "endpoint"), "cilium_lxc: local endpoints and host IPs",
            ("ciliate bpf endpoint list",)),
    Command(("bpf", "endpoint", "list"), "dump cilium_lxc",
            (f"ciliate bpf endpoint list --node {W}",),
            bpf_endpoint_list, (_node,)),
    Command(("bpf", "ipcache"), "cilium_ipcache: prefix -> identity, tunnel endpoint",
            ("ciliate bpf ipcache list",)),
    Command(("bpf", "ipcache", "list"), "dump cilium_ipcache",
            (f"ciliate bpf ipcache list --node {W}",),
            bpf_ipcache_list, (_node,)),
    Command(("bpf", "lb"), "cilium_lb4_*: services, backends, reverse NAT",
            ("ciliate bpf lb list", "ciliate bpf lb list --backends")),
    Command(("bpf", "lb", "list"), "dump the lb4 maps",
            (f"ciliate bpf lb list --revnat --node {W}",),
            bpf_lb_list, (_node, _lb_table)),
    Command(("bpf", "policy"), "cilium_policy_v2_NNNNN: an endpoint's policy map",
            ("ciliate bpf policy get 1547",)),
    Command(("bpf", "policy", "get"), "the policy map of endpoint EP (an ID, or a pod ns/name)",
            (f"ciliate bpf policy get 1547 --node {W}", "ciliate bpf policy get networking101/netshoot-abc -n"),
            bpf_policy_get, (_endpoint, _node, _numeric)),
    Command(("bpf", "map"), "bpftool-style access to any map by name",
            (f"ciliate bpf map lookup {W} cilium_ipcache key hex 40 00 00 00 00 00 00 01 0a 0a 01 9b 00 00 00 00 00 00 00 00 00 00 00 00",)),
    Command(("bpf", "map", "lookup"), "look up one key (bpftool map lookup)",
            (f"ciliate bpf map lookup NODE cilium_lxc {LXC_KEY}",),
            bpf_map_lookup, (_node_map_key,)),
    Command(("bpf", "map", "dump"), "every entry of a map (bpftool map dump)",
            (f"ciliate bpf map dump {W} cilium_lxc",),
            bpf_map_dump, (_node_map,)),
)  # fmt: skip


def register(subparsers: Any) -> None:
    groups: dict[tuple[str, ...], Any] = {(): subparsers}
    for c in COMMANDS:
        help_ = c.help
        p: argparse.ArgumentParser = groups[c.path[:-1]].add_parser(
            c.path[-1],
            help=help_,
            description=help_,
            epilog="Examples:\n" + "\n".join(f"  {e}" for e in c.examples),
            formatter_class=RAW,
        )
        for add in c.arguments:
            add(p)
        if c.handler is None:
            groups[c.path] = p.add_subparsers(
                dest="_".join(c.path) + "_command", metavar=c.metavar, required=True
            )
        else:
            p.set_defaults(func=c.handler)
