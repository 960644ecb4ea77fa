"""``ciliate trace SRC DST``: follow one probe through the model datapath, hop by hop.

SRC/DST: a pod (``namespace/name``), a pod IP, a service (``namespace/name`` or
``ClusterIP[:port]``), a node (name or IP) or any other IP (the world, entering through
eth0). With ``-f`` the manifests run in an ephemeral cluster (as ``reach`` does);
without, the current cluster state (``cli.state.load_desired``). Output: text that
reads like the networking101 walkthrough, ``-o json`` (shape documented in
``datapath.render``), and ``--svg FILE`` for a drawing of the path.

Exit codes: 0 the probe was delivered, or printed as dropped (a drop is a result, not
an error); 1 invalid input; 2 an unknown pod, node or service.

Imports ``cli.state`` (the DesiredState), ``datapath.sim``, ``datapath.render``/``svg``;
must not import ``datapath.linux`` or ``agent``: a trace is the model's walk.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ciliate.cli.context import Context
from ciliate.cli.probeflags import parse_http
from ciliate.desired import DesiredState
from ciliate.errors import ExitCode

PROTOCOLS = ("tcp", "udp", "sctp", "icmp", "arp")


def _state(args: argparse.Namespace, ctx: Context) -> DesiredState:
    if args.filename:
        from ciliate.cli.cmd_policy import ephemeral_docs, load_manifests
        from ciliate.control.engine import compute_desired

        docs, config = ephemeral_docs(load_manifests(args.filename, ctx))
        return compute_desired(list(docs), config)
    from ciliate.cli.state import load_desired

    return load_desired(ctx)


def cmd_trace(args: argparse.Namespace, ctx: Context) -> int:
    from ciliate.datapath.render import trace_to_json, trace_to_text
    from ciliate.datapath.sim import trace

    http = parse_http(args.http)
    protocol = args.protocol.lower()
    state = _state(args, ctx)
    result = trace(state, args.src, args.dst, args.port or 0, protocol, http)
    if args.output == "json":
        ctx.out(json.dumps(trace_to_json(result, state.cluster), indent=2))
    else:
        ctx.out(trace_to_text(result, flows=args.flows, cluster=state.cluster))
    if args.svg:
        from ciliate.datapath.svg import trace_to_svg

        Path(args.svg).write_text(trace_to_svg(state, result))
        if args.output != "json":
            ctx.out(f"\nPicture written to {args.svg}")
    return ExitCode.OK


def register(sub: Any) -> None:
    p = sub.add_parser(
        "trace",
        help="follow a packet hop by hop through the model datapath",
        description="Follow one probe (request and reply) from SRC to DST through the "
        "programs and maps of every node it crosses: interfaces, programs, map lookups "
        "with key bytes, encapsulation, service translation, policy verdicts with their "
        "rule, delivery or the drop reason. SRC/DST: a pod (namespace/name), a pod IP, a "
        "service (namespace/name or ClusterIP[:port]), a node, or an outside IP.",
        epilog="Examples:\n"
        "  ciliate trace networking101/busybox-x networking101/netshoot-y --protocol icmp\n"
        "  ciliate trace default/client 10.96.0.10:80 -o json\n"
        "  ciliate trace 192.0.2.1 mycluster-worker:31000   # NodePort from outside\n"
        "  ciliate trace -f apps.yaml -f policy.yaml app/a app/b --port 80 --http 'GET /x'\n"
        "  ciliate trace a/x b/y --svg path.svg",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("src", metavar="SRC")
    p.add_argument("dst", metavar="DST")
    p.add_argument(
        "--port", type=int, default=0, help="destination port (default 80; ignored for icmp)"
    )
    p.add_argument(
        "--protocol",
        type=str.lower,
        choices=PROTOCOLS,
        default="tcp",
        help="tcp, udp, sctp, icmp (echo) or arp (a pod asking for DST's MAC)",
    )
    p.add_argument("--http", metavar="'METHOD /path'", help="an HTTP request for L7 policy")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")
    p.add_argument("--svg", metavar="FILE", help="also draw the path as an SVG picture")
    p.add_argument(
        "--flows",
        action="store_true",
        help="also print the events as hubble observe would (text output)",
    )
    p.add_argument(
        "-f",
        "--filename",
        action="append",
        metavar="MANIFEST",
        help="trace in an ephemeral cluster built from these manifests (repeatable)",
    )
    p.set_defaults(func=cmd_trace)
