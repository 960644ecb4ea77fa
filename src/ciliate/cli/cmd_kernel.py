"""``ciliate up|down|status|observe``: the cluster in the Linux kernel datapath.

``up`` builds the cluster of the state directory as network namespaces with eBPF
programs and real processes, and returns once it is ready, leaving the agent running in
the background (``--foreground`` keeps it attached until Ctrl-C). ``down`` stops the
agent and removes every namespace, link, pin, mount and process. ``status`` reports the
datapath, nodes, endpoints and agents. ``observe`` prints flows, hubble-style.

Without root or kernel support ``up`` says so in one line and exits 4; the model
commands (trace, reach, exec views) keep working.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import time
from typing import TYPE_CHECKING, Any

from ciliate.cli.context import Context
from ciliate.cli.render import table
from ciliate.errors import ExitCode, UnsupportedError

if TYPE_CHECKING:
    from ciliate.datapath.linux import runtime
else:

    class _LazyModule:
        """The kernel runtime (netns, pyroute2: ~0.3 s of imports) is loaded on first
        use, so that commands which never touch the kernel (apply, get) do not pay for
        it when the parser registers these commands."""

        def __init__(self, name: str) -> None:
            self._name = name

        def __getattr__(self, attr: str) -> Any:
            return getattr(importlib.import_module(self._name), attr)

    runtime = _LazyModule("ciliate.datapath.linux.runtime")

_FMT = argparse.RawDescriptionHelpFormatter


def _sub(subparsers: Any, name: str, help_: str, example: str) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        name,
        help=help_,
        description=help_[0].upper() + help_[1:] + ".",
        epilog="Examples:\n" + example,
        formatter_class=_FMT,
    )
    return p


def register(subparsers: Any) -> None:
    p = _sub(
        subparsers,
        "up",
        "run the cluster in the kernel datapath (network namespaces, eBPF, processes)",
        "  ciliate cluster create -f cluster.yaml && ciliate apply -f app.yaml\n"
        "  sudo ciliate up\n  sudo ciliate up --foreground\n  sudo ciliate up --restart",
    )
    p.add_argument(
        "--foreground", action="store_true", help="keep the agent attached (Ctrl-C tears down)"
    )
    p.add_argument(
        "--restart",
        action="store_true",
        help="replace a running agent; the datapath is adopted, pod traffic keeps flowing",
    )
    # None = runtime.READY_TIMEOUT (read when used: see _LazyModule)
    p.add_argument("--timeout", type=float, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=_up)

    p = _sub(
        subparsers,
        "down",
        "stop the agent and remove every namespace, link, pin and process of the cluster",
        "  sudo ciliate down",
    )
    p.set_defaults(func=_down)

    p = _sub(
        subparsers,
        "status",
        "the datapath in use, nodes, endpoints and agent processes",
        "  ciliate status\n  ciliate status -o json",
    )
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")
    p.set_defaults(func=_status)

    p = _sub(
        subparsers,
        "observe",
        "observe flows (hubble observe): forwards and drops seen by the kernel datapath",
        "  ciliate observe --last 20\n"
        "  ciliate observe --follow --from-pod networking101/busybox-abc --verdict DROPPED\n"
        "  ciliate observe --protocol tcp --port 80 -o json",
    )
    _add_observe_arguments(p)
    p.set_defaults(func=_observe)


# --- up / down / status ------------------------------------------------------------------


def _up(args: argparse.Namespace, ctx: Context) -> int:
    if args.foreground:
        return _up_foreground(ctx)
    if args.restart:
        _require_cluster(ctx)
        st = runtime.restart(ctx, timeout=_ready_timeout(args))
        _print_up(ctx, st)
        return ExitCode.OK
    if runtime.is_up(ctx):
        st = runtime.status(ctx)
        ctx.out(f"cluster {st.get('cluster', '')} is already up (agent pid {_agent_pid(st)})")
        return ExitCode.OK
    _require_cluster(ctx)
    st = runtime.up(ctx, timeout=_ready_timeout(args))
    _print_up(ctx, st)
    return ExitCode.OK


def _ready_timeout(args: argparse.Namespace) -> float:
    return float(runtime.READY_TIMEOUT if args.timeout is None else args.timeout)


def _require_cluster(ctx: Context) -> None:
    """A missing cluster is NOT_FOUND before anything touches the kernel."""
    from ciliate.controllers.clusterconfig import get_cluster_config

    get_cluster_config(ctx.store())
    ctx.close()  # the agent opens its own connection; do not hold ours across its life


def _up_foreground(ctx: Context) -> int:
    reason = runtime.unavailable_reason()
    if reason:
        raise UnsupportedError(runtime.UNAVAILABLE.format(reason=reason))
    if runtime.agent_pid(runtime.paths(ctx)) is not None:
        ctx.err("error: an agent already runs for this state directory; `ciliate down` first")
        return ExitCode.CONFLICT
    _require_cluster(ctx)
    from ciliate import agent

    def ready(a: agent.Agent) -> None:
        _print_up(ctx, a.status())
        ctx.out("agent running in the foreground; Ctrl-C stops it and tears everything down")
        ctx.stdout.flush()

    rc = agent.serve(ctx.state_dir, on_ready=ready)
    err = runtime.paths(ctx).error
    if rc != 0 and err.exists():
        ctx.err(f"error: {err.read_text().strip()}")
        return ExitCode.DATAPATH_ERROR
    return ExitCode.OK if rc == 0 else ExitCode.DATAPATH_ERROR


def _agent_pid(st: dict[str, Any]) -> str:
    pids = sorted({a["pid"] for a in st.get("agents", [])})
    return ",".join(str(p) for p in pids) or "?"


def _print_up(ctx: Context, st: dict[str, Any]) -> None:
    t = st.get("timings", {})
    ctx.out(
        f"cluster {st.get('cluster', '')} is up in the kernel datapath "
        f"(tag {st.get('tag', '')}): {len(st.get('nodes', []))} nodes, "
        f"{sum(1 for e in st.get('endpoints', []) if e.get('pod'))} pods, "
        f"agent pid {_agent_pid(st)}"
    )
    if t.get("pods_wired"):
        ctx.out(
            f"  built in {t.get('up_ms', 0):.0f} ms; pod wiring {t.get('pod_wire_ms_avg')} ms avg, "
            f"{t.get('pod_wire_ms_max')} ms max"
        )
    if st.get("adopted"):
        ctx.out(f"  adopted the running datapath ({st['adopted']} namespaces): nothing was flushed")
        kept = [w for w in st.get("workloads", []) if w.get("adopted")]
        if kept:
            ctx.out(f"  adopted {len(kept)} running pod processes (not restarted)")
    if not st.get("programs", False):
        ctx.out("  note: eBPF programs are not loaded (loader unavailable): no pod forwarding")
    for e in st.get("errors", []):
        ctx.out(f"  warning: {e}")


def _down(args: argparse.Namespace, ctx: Context) -> int:
    kp = runtime.paths(ctx)
    was_up = runtime.agent_pid(kp) is not None
    from ciliate.datapath.linux.netns import list_netns

    if not was_up and not list_netns(kp.names.prefix) and not kp.names.pin_root.exists():
        ctx.out("cluster is not up; nothing to remove")
        return ExitCode.OK
    if not os.geteuid() == 0:
        raise UnsupportedError(
            runtime.UNAVAILABLE.format(reason="needs root (network namespaces and eBPF)")
        )
    removed = runtime.down(ctx)
    ctx.out(
        f"cluster down: agent stopped, {len(removed)} namespaces removed with their links, "
        "pins and processes"
    )
    return ExitCode.OK


def _status(args: argparse.Namespace, ctx: Context) -> int:
    st = runtime.status(ctx)
    if not st.get("up"):
        with contextlib.suppress(Exception):  # status is best effort about the config
            from ciliate.controllers.clusterconfig import find_cluster_config

            cfg = find_cluster_config(ctx.store())
            if cfg is not None:
                st["cluster"] = cfg.name
                st["nodes"] = [{"name": n.name, "internalIP": n.internal_ip} for n in cfg.nodes]
    if args.output == "json":
        ctx.out(json.dumps(st, indent=2, default=str))
        return ExitCode.OK
    ctx.out(f"Cluster:    {st.get('cluster', '') or '-'}")
    ctx.out(f"Datapath:   {st['datapath']}" + ("" if st.get("up") else " (kernel datapath not up)"))
    if st.get("up"):
        ctx.out(f"Agents:     pid {_agent_pid(st)} (one process hosts every node's agent)")
        ctx.out(f"Programs:   {'loaded' if st.get('programs') else 'not loaded'}")
        t = st.get("timings", {})
        ctx.out(
            f"Pod wiring: {t.get('pods_wired', 0)} pods, avg {t.get('pod_wire_ms_avg')} ms, "
            f"max {t.get('pod_wire_ms_max')} ms"
        )
        if t.get("live_pod_wire_ms_count"):
            ctx.out(
                f"  added while running: {t['live_pod_wire_ms_count']} pods, median "
                f"{t['live_pod_wire_ms_median']} ms, max {t['live_pod_wire_ms_max']} ms"
            )
    if st.get("leftover_namespaces"):
        ctx.out(
            f"Leftovers:  {len(st['leftover_namespaces'])} namespaces of a stopped agent, still "
            "forwarding (`ciliate up` adopts them, `ciliate down` removes them)"
        )
    nodes = st.get("nodes", [])
    if nodes:
        ctx.out("")
        ctx.out(
            table(
                ["NODE", "INTERNAL-IP", "CILIUM-INTERNAL-IP", "POD-CIDR", "ENDPOINTS"],
                [
                    [
                        n.get("name", ""),
                        n.get("internalIP", ""),
                        n.get("ciliumInternalIP", ""),
                        n.get("podCIDR", ""),
                        str(n.get("endpoints", "")),
                    ]
                    for n in nodes
                ],
            )
        )
    eps = st.get("endpoints", [])
    if eps:
        ctx.out("")
        ctx.out(
            table(
                ["ENDPOINT", "POD", "NODE", "IPV4", "IDENTITY", "LXC"],
                [
                    [
                        str(e["id"]),
                        e["pod"] or "(health)",
                        e["node"],
                        e["ip"],
                        str(e["identity"]),
                        e["lxc"],
                    ]
                    for e in eps
                ],
            )
        )
    work = st.get("workloads", [])
    if work:
        ctx.out("")
        ctx.out(
            table(
                ["POD", "CONTAINER", "PID", "RUNNING", "RESTARTS", "ADOPTED"],
                [
                    [
                        w["pod"],
                        w["container"],
                        str(w["pid"]),
                        "yes" if w["running"] else "no",
                        str(w["restarts"]),
                        # started by an earlier agent and taken over at its restart
                        "yes" if w.get("adopted") else "no",
                    ]
                    for w in work
                ],
            )
        )
    for e in st.get("errors", []):
        ctx.out(f"warning: {e}")
    return ExitCode.OK


# --- observe ---------------------------------------------------------------------------


def _add_observe_arguments(p: argparse.ArgumentParser) -> None:
    from ciliate.observe import filters

    filters.add_filter_arguments(p)
    filters.add_output_arguments(p)
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new flows")


def _observe(args: argparse.Namespace, ctx: Context) -> int:
    """Flows of the kernel datapath from the agent's per-node flow logs: the stored ones
    (filtered, cut to --first/--last), then with --follow the new ones as they come."""
    from ciliate.datapath.flowlog import FlowLogDir
    from ciliate.observe import filters
    from ciliate.observe.render import FlowPrinter

    flt = filters.from_args(args)
    printer = FlowPrinter(
        output=args.output,
        print_node_name=args.print_node_name,
        print_policy_names=args.print_policy_names,
    )
    kp = runtime.paths(ctx)
    logs = FlowLogDir(kp.flows)
    if not kp.flows.exists() and not runtime.is_up(ctx):
        ctx.err(
            "no flows: the kernel datapath has not run in this state directory (`ciliate up`); "
            "`ciliate trace` shows the model datapath's flows"
        )
        return ExitCode.OK
    for f in flt.select(logs.read_all()):
        ctx.stdout.write(printer.format(f))
    ctx.stdout.flush()
    if not args.follow:
        return ExitCode.OK
    live = filters.with_scope(flt, last=None, first=None)
    logs.poll()  # start at the end: what is on disk was printed above
    try:
        while True:
            for f in logs.poll():
                if live.matches(f):
                    ctx.stdout.write(printer.format(f))
            ctx.stdout.flush()
            time.sleep(0.2)
    finally:
        logs.close()
