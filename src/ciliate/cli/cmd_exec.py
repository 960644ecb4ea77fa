"""``ciliate exec POD -- CMD`` and ``ciliate node exec NODE -- CMD``.

With the kernel datapath up (``ciliate.datapath.linux.runtime.is_up``) the command runs
for real inside the pod's or node's network namespace. Otherwise the model answers the
commands it can (``datapath.sim.views``: ``ip a``, ``ip route``, ``ip neigh``,
``arp -a`` in pods; ``ip a``, ``ip route``, ``bpftool net show`` on nodes) from the
computed state, in iproute2's formats; anything else prints one line and exits 4.

Exit codes: the command's own status in kernel mode; 0, 2 (unknown pod or node) or 4
(not answerable in model mode) otherwise.

Imports ``datapath.sim.views`` for the model views and ``datapath.linux.runtime``
inside ``_runtime`` (to ask whether the cluster is up; a missing or broken kernel side
falls back to the model); must not import ``agent``.
"""

from __future__ import annotations

import argparse
from typing import Any

from ciliate.cli.context import Context
from ciliate.errors import Diagnostic, DiagnosticError, ExitCode, NotFoundError

_FMT = argparse.RawDescriptionHelpFormatter


def _command(args: argparse.Namespace) -> list[str]:
    argv = list(args.command)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise DiagnosticError(
            [Diagnostic("no command given: use `-- CMD ARGS...`", file="<flags>")]
        )
    return argv


def _runtime(ctx: Context) -> Any | None:
    """The kernel datapath's runtime when the cluster is up in the kernel, else None."""
    try:
        from ciliate.datapath.linux import runtime
    except ImportError:
        return None
    try:
        return runtime if runtime.is_up(ctx) else None
    except Exception:  # a half-built state dir must not break the model views
        return None


def _split_pod(pod: str, namespace: str | None) -> tuple[str, str]:
    if "/" in pod:
        ns, _, name = pod.partition("/")
        return ns, name
    return namespace or "default", pod


def cmd_exec(args: argparse.Namespace, ctx: Context) -> int:
    argv = _command(args)
    ns, name = _split_pod(args.pod, args.namespace)
    rt = _runtime(ctx)
    if rt is not None:
        return int(rt.exec_in_pod(ctx, ns, name, argv))
    from ciliate.cli.state import load_desired
    from ciliate.datapath.sim.views import run_pod

    state = load_desired(ctx)
    key = f"{ns}/{name}"
    for node in state.nodes.values():
        pod = node.pods.get(key)
        if pod is not None:
            text = run_pod(pod, argv)
            if text:
                ctx.out(text)
            return ExitCode.OK
    raise NotFoundError(f'pods "{name}" not found in namespace "{ns}" (or it has no network yet)')


def cmd_node_exec(args: argparse.Namespace, ctx: Context) -> int:
    argv = _command(args)
    rt = _runtime(ctx)
    if rt is not None:
        return int(rt.exec_in_node(ctx, args.node, argv))
    from ciliate.cli.state import load_desired
    from ciliate.datapath.sim.views import run_node

    state = load_desired(ctx)
    node = state.nodes.get(args.node)
    if node is None:
        raise NotFoundError(
            f'node "{args.node}" not found (nodes: {", ".join(sorted(state.nodes))})'
        )
    text = run_node(node, argv)
    if text:
        ctx.out(text)
    return ExitCode.OK


def register(sub: Any) -> None:
    p = sub.add_parser(
        "exec",
        help="run a command in a pod's network namespace (model views without the kernel)",
        description="Run CMD inside POD. With the kernel datapath up this is the real "
        "command; in model mode ip a, ip route, ip neigh and arp -a are answered from the "
        "computed state, exactly as iproute2 prints them.",
        epilog="Examples:\n  ciliate exec -n networking101 busybox-abc -- ip a\n"
        "  ciliate exec networking101/busybox-abc -- ip route\n"
        "  ciliate exec networking101/busybox-abc -- arp -a",
        formatter_class=_FMT,
    )
    p.add_argument("pod", metavar="POD", help="pod name, or namespace/name")
    p.add_argument("-n", "--namespace", help="namespace of POD (default: default)")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD", help="the command")
    p.set_defaults(func=cmd_exec)

    node = sub.add_parser(
        "node",
        help="node commands (exec)",
        description="Commands on a node.",
        formatter_class=_FMT,
    )
    nsub = node.add_subparsers(dest="node_command", metavar="COMMAND")
    ne = nsub.add_parser(
        "exec",
        help="run a command in a node's network namespace",
        description="Run CMD on NODE. With the kernel datapath up this is the real command; "
        "in model mode ip a, ip route and bpftool net show are answered from the state.",
        epilog="Examples:\n  ciliate node exec mycluster-worker -- ip route\n"
        "  ciliate node exec mycluster-worker -- bpftool net show",
        formatter_class=_FMT,
    )
    ne.add_argument("node", metavar="NODE")
    ne.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD", help="the command")
    ne.set_defaults(func=cmd_node_exec)
