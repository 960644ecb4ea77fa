"""``ciliate reach`` and ``ciliate policy explain``.

``reach`` prints the verdict for every ordered pair of pods: from manifests alone
(``-f``: an ephemeral cluster of kind-style nodes where the controllers turn
Deployments into pods, schedule them and give them addresses) or from the current
cluster state. The verdicts come from the model datapath (``datapath.sim.probe`` over
the DesiredState the control engine computes), i.e. from the compiled policy maps; pods
are grouped by (identity, policy map) — destinations of an HTTP probe by address too,
the request's Host — so a class pair is probed once.

``policy explain SRC DST`` answers with the rule-level oracle (``control.explain``)
and, next to it, what the model datapath does, so a disagreement is visible at once.

Exit codes: 0 ok, 1 invalid input, 2 unknown pod, 4 ``--datapath kernel`` unavailable.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
from collections.abc import Sequence
from typing import Any

from ciliate.cli.context import Context
from ciliate.cli.probeflags import parse_http
from ciliate.control.explain import Evaluator, request_host
from ciliate.control.reach import (
    ClusterView,
    Matrix,
    build_view,
    expand_classes,
    reach_matrix,
)
from ciliate.desired import DesiredState
from ciliate.errors import (
    CiliateError,
    ExitCode,
    NotFoundError,
    UnsupportedError,
)
from ciliate.model.cluster import ClusterConfig
from ciliate.model.meta import Doc

PROTOCOLS = ("TCP", "UDP", "SCTP")


# --- the cluster a command looks at ------------------------------------------------------


def ephemeral_docs(
    docs: Sequence[Doc], config: ClusterConfig | None = None
) -> tuple[list[Doc], ClusterConfig]:
    """Manifests + default kind-style nodes, reconciled in memory (no store):
    ``controllers.ephemeral``, imported when a command needs it (CLI start-up)."""
    from ciliate.controllers.ephemeral import ephemeral_docs as reconcile

    return reconcile(docs, config)


def ephemeral_node_count(docs: Sequence[Doc]) -> int:
    """kind's 3 nodes, more when the pods would not fit the /24 pod CIDR per node."""
    from ciliate.controllers.ephemeral import ephemeral_node_count as count

    return count(docs)


def load_manifests(paths: Sequence[str], ctx: Context) -> list[Doc]:
    from ciliate.manifest.decode import load_paths, with_provenance

    batch = load_paths(paths, stdin=ctx.stdin)
    batch.raise_if_invalid()
    return [with_provenance(o) for o in batch.objects]


def cluster_docs(args: argparse.Namespace, ctx: Context) -> tuple[list[Doc], ClusterConfig]:
    if args.filename:
        return ephemeral_docs(load_manifests(args.filename, ctx))
    from ciliate.controllers.clusterconfig import get_cluster_config

    store = ctx.store()
    config = get_cluster_config(store)
    return store.list(), config


def _state(docs: Sequence[Doc], config: ClusterConfig) -> DesiredState:
    from ciliate.control.engine import compute_desired

    return compute_desired(list(docs), config)


# --- reach -------------------------------------------------------------------------------


# Above this many (identity, map) class pairs, reach reads the verdicts from the same
# maps with the datapath's lookup (``mapstate``) instead of walking a packet per class
# pair, and cross-checks a sample of class pairs through the model datapath.
SIM_CLASS_PAIRS = 2500
SIM_SAMPLE = 64


def _endpoint_classes(
    state: DesiredState, by_host: bool = False
) -> tuple[tuple[str, ...], dict[str, int], list[tuple[int, Any, list[str], str]]]:
    """Pods in order, their class index, and the classes (identity, map, members, Host).
    ``by_host`` splits classes by the pod's address too: an HTTP request's Host is the
    destination's address (``explain.request_host``), which an L7 rule may name."""
    eps: dict[str, tuple[int, Any, str]] = {}
    for node in state.nodes.values():
        for ep in node.endpoints.values():
            if ep.pod:
                host = request_host(ep.ip) if by_host else ""
                eps[ep.pod] = (ep.identity, node.policy.get(ep.id), host)
    keys = tuple(sorted(eps))
    index: dict[tuple[int, int, str], int] = {}
    classes: list[tuple[int, Any, list[str], str]] = []
    cls_of: dict[str, int] = {}
    for k in keys:
        ident, pmap, host = eps[k]
        ck = (ident, id(pmap), host)
        if ck not in index:
            index[ck] = len(classes)
            classes.append((ident, pmap, [], host))
        classes[index[ck]][2].append(k)
        cls_of[k] = index[ck]
    return keys, cls_of, classes


def sim_matrix(
    state: DesiredState,
    port: int,
    protocol: str,
    http: tuple[str, str] | None,
    notes: list[str] | None = None,
) -> Matrix:
    """Every ordered pair of local endpoints. Pods sharing identity and policy map get
    the same verdicts, so one pair per class pair is decided: walked through the model
    datapath (``sim.probe``), or for large clusters looked up in the same maps with the
    datapath's algorithm, a sample of them re-walked through the model as a check."""
    from ciliate.control.reach import map_verdict
    from ciliate.datapath.sim import probe

    keys, cls_of, classes = _endpoint_classes(state)
    _, col_of, cols = _endpoint_classes(state, by_host=http is not None)
    n, m = len(classes), len(cols)
    walk = n * m <= SIM_CLASS_PAIRS
    proto = {"TCP": 6, "UDP": 17, "SCTP": 132}.get(protocol.upper(), 6)

    def rep(i: int, j: int) -> tuple[str, str] | None:
        """Two different pods standing for the class pair (None: the only pair is a pod
        with itself, which never crosses the datapath)."""
        for a in classes[i][2][:2]:
            for b in cols[j][2][:2]:
                if a != b:
                    return a, b
        return None

    cm = [[True] * m for _ in range(n)]
    for i in range(n):
        for j in range(m):
            if walk:
                pair = rep(i, j)
                if pair is not None:
                    cm[i][j] = probe(state, pair[0], pair[1], port, protocol.lower(), http).allowed
            else:
                si, sm, _, _ = classes[i]
                di, dm, _, host = cols[j]
                cm[i][j] = map_verdict(sm, dm, si, di, proto, port, http, host)[0]
    if not walk:
        step = max(1, (n * m) // SIM_SAMPLE)
        for x in range(0, n * m, step):
            i, j = divmod(x, m)
            pair = rep(i, j)
            if pair is None:
                continue
            got = probe(state, pair[0], pair[1], port, protocol.lower(), http).allowed
            if got != cm[i][j] and notes is not None:
                notes.append(
                    f"warning: model datapath disagrees with the map lookup for "
                    f"{pair[0]} -> {pair[1]} ({got} vs {cm[i][j]})"
                )
    return Matrix(port, protocol, keys, expand_classes(keys, cls_of, col_of, cm))


def compute_reach(
    docs: Sequence[Doc],
    config: ClusterConfig,
    port: int,
    protocol: str,
    http: tuple[str, str] | None,
    notes: list[str] | None = None,
) -> Matrix:
    """The matrix from the model datapath, or from the compiled maps when the model
    datapath is not installed (``mapstate.lookup``, what the datapath does)."""
    if importlib.util.find_spec("ciliate.datapath.sim") is not None:
        return sim_matrix(_state(docs, config), port, protocol, http, notes)
    view = build_view(config, docs)
    return reach_matrix(view, port, protocol, http)


def cmd_reach(args: argparse.Namespace, ctx: Context) -> int:
    http = parse_http(args.http)
    if args.datapath == "kernel":
        if importlib.util.find_spec("ciliate.datapath.linux.reach") is None:
            raise UnsupportedError(
                "reach --datapath kernel is not available yet: the kernel datapath has no "
                "reachability prober; use the model datapath (the default)"
            )
        mod = importlib.import_module("ciliate.datapath.linux.reach")
        matrix = mod.reach_matrix(ctx, args.port, args.protocol, http, args.filename)
    else:
        docs, config = cluster_docs(args, ctx)
        notes: list[str] = []
        matrix = compute_reach(docs, config, args.port, args.protocol, http, notes)
        for n in notes:
            ctx.err(n)
    if args.output == "json":
        ctx.out(json.dumps(matrix.to_json(), indent=2))
    else:
        req = f" {http[0]} {http[1]}" if http else ""
        ctx.out(f"Reachability {args.port}/{args.protocol}{req} (rows from, columns to):")
        ctx.out(matrix.table())
    return ExitCode.OK


# --- policy explain ------------------------------------------------------------------------


def view_of(docs: Sequence[Doc], config: ClusterConfig) -> ClusterView:
    return build_view(config, docs)


def cmd_explain(args: argparse.Namespace, ctx: Context) -> int:
    http = parse_http(args.http)
    docs, config = cluster_docs(args, ctx)
    view = view_of(docs, config)
    ev: Evaluator = view.evaluator()
    try:
        ex = ev.explain(args.src, args.dst, args.port, args.protocol, http)
    except KeyError as e:
        raise NotFoundError(
            f"{e.args[0]!r} is not a pod (namespace/name) or an IPv4 address"
        ) from None
    datapath: dict[str, Any] | None = None
    # The model datapath probes ICMP with an echo request (type 8) only.
    comparable = args.protocol != "ICMP" or args.port == 8
    if comparable and importlib.util.find_spec("ciliate.datapath.sim") is not None:
        from ciliate.datapath.sim import probe

        try:
            r = probe(
                _state(docs, config), args.src, args.dst, args.port, args.protocol.lower(), http
            )
            datapath = {"allowed": r.allowed, "dropReason": r.drop_reason}
        except CiliateError:
            datapath = None
    if args.output == "json":
        doc = ex.to_json()
        doc["datapath"] = datapath
        ctx.out(json.dumps(doc, indent=2))
        return ExitCode.OK
    ctx.out(ex.text())
    if datapath is not None:
        agree = datapath["allowed"] == ex.allowed
        ctx.out(
            f"  model datapath: {'allowed' if datapath['allowed'] else 'dropped'}"
            f" (drop reason {datapath['dropReason']})"
            + ("" if agree else "  ** DISAGREES with the rule-level verdict **")
        )
    return ExitCode.OK


# --- registration ----------------------------------------------------------------------------


def _common(p: argparse.ArgumentParser, protocols: tuple[str, ...] = PROTOCOLS) -> None:
    p.add_argument(
        "-f",
        "--filename",
        action="append",
        default=[],
        metavar="PATH",
        help="manifests (files, directories, - for stdin); an ephemeral cluster "
        "is built from them. Without -f: the current cluster",
    )
    p.add_argument("--port", type=int, default=80, help="destination port (default 80)")
    p.add_argument(
        "--protocol",
        type=str.upper,
        choices=protocols,
        default="TCP",
        help="IP protocol (for ICMP, --port is the ICMP type, e.g. 8 for echo request)"
        if "ICMP" in protocols
        else "IP protocol",
    )
    p.add_argument(
        "--http",
        metavar="'METHOD /path'",
        default=None,
        help="also send this HTTP request (L7 rules decide it)",
    )


def register(sub: Any) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    reach = sub.add_parser(
        "reach",
        help="verdict for every ordered pair of pods",
        description="Print whether each pod can open a connection to each other pod, as the "
        "datapath enforces the compiled policy maps (a pod to itself is always allowed).",
        epilog="Examples:\n  ciliate reach -f apps.yaml -f policies/ --port 80 -o table\n"
        "  ciliate reach --port 53 --protocol UDP -o json",
        formatter_class=fmt,
    )
    _common(reach)
    reach.add_argument(
        "-o",
        "--output",
        choices=("json", "table"),
        default="table",
        help="table: rows from, columns to, '.' allowed, 'X' denied; json: "
        '{"port", "protocol", "pods", "matrix"}',
    )
    reach.add_argument(
        "--datapath",
        choices=("model", "kernel"),
        default="model",
        help="model: the compiled maps walked by the model datapath; kernel: real packets "
        "through the eBPF datapath (root)",
    )
    reach.set_defaults(func=cmd_reach)

    pol = sub.add_parser(
        "policy",
        help="policy tools (explain)",
        description="Network policy tools.",
        formatter_class=fmt,
    )
    psub = pol.add_subparsers(dest="policy_command", metavar="COMMAND")
    ex = psub.add_parser(
        "explain",
        help="why a connection is allowed or dropped",
        description="Explain the verdict for SRC -> DST: the policies selecting each side, the "
        "rule that allowed or denied it (with file:line), or why default deny applies. "
        "SRC/DST: a pod (namespace/name), a pod IP, 'host', or an outside IP.",
        epilog="Example:\n  ciliate policy explain app1/frontend1-x app1/backend1-y --port 80",
        formatter_class=fmt,
    )
    ex.add_argument("src")
    ex.add_argument("dst")
    _common(ex, (*PROTOCOLS, "ICMP"))
    ex.add_argument(
        "-o",
        "--output",
        choices=("text", "json"),
        default="text",
        help='json adds the model datapath\'s own verdict under "datapath"',
    )
    ex.set_defaults(func=cmd_explain)
    pol.set_defaults(func=lambda a, c: (pol.print_help(c.stdout), ExitCode.OK)[1])
