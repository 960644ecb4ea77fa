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
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from ciliate.cli.context import Context
from ciliate.cli.render import table
from ciliate.datapath.linux import runtime
from ciliate.datapath.linux.netns import list_netns
from ciliate.errors import ExitCode, UnsupportedError

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
        "  sudo ciliate up\n  sudo ciliate up --foreground",
    )
    p.add_argument(
        "--foreground", action="store_true", help="keep the agent attached (Ctrl-C tears down)"
    )
    p.add_argument("--timeout", type=float, default=runtime.READY_TIMEOUT, help=argparse.SUPPRESS)
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
    if runtime.is_up(ctx):
        st = runtime.status(ctx)
        ctx.out(f"cluster {st.get('cluster', '')} is already up (agent pid {_agent_pid(st)})")
        return ExitCode.OK
    _require_cluster(ctx)
    st = runtime.up(ctx, timeout=args.timeout)
    _print_up(ctx, st)
    return ExitCode.OK


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
    if not st.get("programs", False):
        ctx.out("  note: eBPF programs are not loaded (loader unavailable): no pod forwarding")
    for e in st.get("errors", []):
        ctx.out(f"  warning: {e}")


def _down(args: argparse.Namespace, ctx: Context) -> int:
    kp = runtime.paths(ctx)
    was_up = runtime.agent_pid(kp) is not None
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
    if st.get("leftover_namespaces"):
        ctx.out(f"Leftovers:  {len(st['leftover_namespaces'])} namespaces (run `ciliate down`)")
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
    return ExitCode.OK


# --- observe -----------------------------------------------------------------------------


def _add_observe_arguments(p: argparse.ArgumentParser) -> None:
    filters = runtime.optional_module("ciliate.observe.filters")
    add = getattr(filters, "add_filter_arguments", None)
    if add is not None:
        add(p)
    else:  # the shared filter flags, until observe.filters lands
        for flag in ("--from-pod", "--to-pod", "--from-ip", "--to-ip", "--namespace"):
            p.add_argument(flag, action="append", default=[])
        p.add_argument("--verdict", action="append", default=[])
        p.add_argument("--protocol", action="append", default=[])
        p.add_argument("--port", action="append", default=[])
    known = {a.dest for a in p._actions}
    if "follow" not in known:
        p.add_argument("-f", "--follow", action="store_true", help="keep printing new flows")
    if "last" not in known:
        p.add_argument("--last", type=int, default=None, help="the last N flows")
    if "since" not in known:
        p.add_argument(
            "--since", default=None, help="flows since a time (RFC 3339) or duration (5m)"
        )
    if "output" not in known:
        p.add_argument(
            "-o",
            "--output",
            choices=("compact", "json", "jsonpb", "table", "dict"),
            default="compact",
        )
    if "print_node_name" not in known:
        p.add_argument("--print-node-name", action="store_true")


def _flow_predicate(args: argparse.Namespace) -> Callable[[Any], bool]:
    filters = runtime.optional_module("ciliate.observe.filters")
    from_args = getattr(filters, "from_args", None)
    if from_args is None:
        return lambda flow: True
    flt = from_args(args)
    for name in ("matches", "match", "__call__"):
        fn = getattr(flt, name, None)
        if callable(fn):
            return lambda flow: bool(fn(flow))
    return lambda flow: True


def _since_ns(text: str | None, now: float) -> int | None:
    """``--since``: an RFC 3339 time or a Go-style duration ago (30s, 5m, 1h)."""
    if not text:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text[-1] in units and text[:-1].replace(".", "", 1).isdigit():
        return int((now - float(text[:-1]) * units[text[-1]]) * 1e9)
    from datetime import datetime

    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1e9)


def _flow_source(ctx: Context, follow: bool) -> Iterator[Any]:
    flowlog = runtime.optional_module("ciliate.datapath.flowlog")
    if flowlog is None:
        return iter(())
    for name in ("follow_flows", "read_flows") if follow else ("read_flows",):
        fn = getattr(flowlog, name, None)
        if fn is not None:
            it: Iterable[Any] = (
                fn(ctx.state_dir, follow=True)
                if name == "read_flows" and follow
                else fn(ctx.state_dir)
            )
            return iter(it)
    return iter(())


def _observe(args: argparse.Namespace, ctx: Context) -> int:
    from ciliate.observe.render import FlowPrinter

    keep = _flow_predicate(args)
    since = _since_ns(getattr(args, "since", None), time.time())
    printer = FlowPrinter(
        output=args.output, print_node_name=getattr(args, "print_node_name", False)
    )

    def wanted(flow: Any) -> bool:
        if since is not None and int(getattr(flow, "time_ns", 0) or 0) < since:
            return False
        return keep(flow)

    if not Path(runtime.paths(ctx).dir).exists() and not runtime.is_up(ctx):
        ctx.err("no flows: the kernel datapath has not run here (`ciliate up`); "
                "the model datapath's flows come with `ciliate trace`")  # fmt: skip
        return ExitCode.OK
    flows = [f for f in _flow_source(ctx, follow=False) if wanted(f)]
    if args.last is not None:
        flows = flows[-args.last :] if args.last > 0 else []
    for f in flows:
        ctx.stdout.write(printer.format(f))
    ctx.stdout.flush()
    if not args.follow:
        return ExitCode.OK
    skip = len(list(_flow_source(ctx, follow=False)))
    for i, f in enumerate(_flow_source(ctx, follow=True)):
        if i < skip or not wanted(f):
            continue
        ctx.stdout.write(printer.format(f))
        ctx.stdout.flush()
    return ExitCode.OK
