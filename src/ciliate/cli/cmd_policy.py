"""``ciliate reach`` and ``ciliate policy explain``.

``reach`` prints the verdict for every ordered pair of pods: from manifests alone
(``-f``: an ephemeral cluster of kind-style nodes where the controllers turn
Deployments into pods, schedule them and give them addresses) or from the current
cluster state. The verdicts come from the model datapath (``datapath.sim.probe`` over
the DesiredState the control engine computes), i.e. from the compiled policy maps; pods
are grouped by (node, identity, policy map) so a class pair is probed once.

``policy explain SRC DST`` answers with the rule-level oracle (``control.explain``)
and, next to it, what the model datapath does, so a disagreement is visible at once.

Exit codes: 0 ok, 1 invalid input, 2 unknown pod, 4 ``--datapath kernel`` unavailable.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import random
from collections.abc import Sequence
from typing import Any

from ciliate.cli.context import Context
from ciliate.control.explain import Evaluator
from ciliate.control.reach import ClusterView, Matrix, build_view, reach_matrix
from ciliate.desired import DesiredState
from ciliate.errors import (
    CiliateError,
    Diagnostic,
    DiagnosticError,
    ExitCode,
    NotFoundError,
    UnsupportedError,
)
from ciliate.model.cluster import ClusterConfig
from ciliate.model.meta import Doc

EPHEMERAL_CLUSTER = "reach"
PROTOCOLS = ("TCP", "UDP", "SCTP")


# --- the cluster a command looks at ------------------------------------------------------


def ephemeral_docs(
    docs: Sequence[Doc], config: ClusterConfig | None = None
) -> tuple[list[Doc], ClusterConfig]:
    """Manifests + default kind-style nodes, reconciled in memory (no store)."""
    from ciliate.controllers.cluster import cluster_objects
    from ciliate.controllers.clusterconfig import kind_cluster
    from ciliate.controllers.reconcile import compute_round
    from ciliate.controllers.snapshot import Snapshot

    cfg = config or kind_cluster(EPHEMERAL_CLUSTER, 3)
    snap = Snapshot([*cluster_objects(cfg), *docs])
    rng = random.Random(0)
    for _ in range(20):
        changes = compute_round(snap, cfg, rng)
        if not changes:
            break
        snap = snap.with_changes(changes)
    return snap.all(), cfg


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


def _http(text: str | None) -> tuple[str, str] | None:
    if not text:
        return None
    method, _, path = text.strip().partition(" ")
    if not path.startswith("/"):
        raise DiagnosticError(
            [Diagnostic(f"--http {text!r}: expected 'METHOD /path'", file="<flags>")]
        )
    return method.upper(), path.strip()


# --- reach -------------------------------------------------------------------------------


def sim_matrix(
    state: DesiredState, port: int, protocol: str, http: tuple[str, str] | None
) -> Matrix:
    """Every ordered pair of local endpoints, probed through the model datapath."""
    from ciliate.datapath.sim import probe

    eps: dict[str, tuple[str, int, int]] = {}
    for node in state.nodes.values():
        for ep in node.endpoints.values():
            if ep.pod:
                eps[ep.pod] = (node.name, ep.identity, id(node.policy.get(ep.id)))
    keys = tuple(sorted(eps))
    cls_rep: dict[tuple[str, int, int], str] = {}
    for k in keys:
        cls_rep.setdefault(eps[k], k)
    verdict: dict[tuple[tuple[str, int, int], tuple[str, int, int]], bool] = {}
    out: dict[str, dict[str, bool]] = {}
    for a in keys:
        ca = eps[a]
        row: dict[str, bool] = {}
        for b in keys:
            if a == b:
                row[b] = True
                continue
            cb = eps[b]
            v = verdict.get((ca, cb))
            if v is None:
                ra, rb = cls_rep[ca], cls_rep[cb]
                if ra == rb:  # the representative would probe itself: use another pair
                    ra, rb = a, b
                v = probe(state, ra, rb, port, protocol.lower(), http).allowed
                verdict[(ca, cb)] = v
            row[b] = v
        out[a] = row
    return Matrix(port, protocol, keys, out)


def compute_reach(
    docs: Sequence[Doc],
    config: ClusterConfig,
    port: int,
    protocol: str,
    http: tuple[str, str] | None,
) -> Matrix:
    """The matrix from the model datapath, or from the compiled maps when the model
    datapath is not installed (``mapstate.lookup``, what the datapath does)."""
    if importlib.util.find_spec("ciliate.datapath.sim") is not None:
        return sim_matrix(_state(docs, config), port, protocol, http)
    view = build_view(config, docs)
    return reach_matrix(view, port, protocol, http)


def cmd_reach(args: argparse.Namespace, ctx: Context) -> int:
    http = _http(args.http)
    if args.datapath == "kernel":
        if importlib.util.find_spec("ciliate.datapath.linux.reach") is None:
            raise UnsupportedError(
                "reach --datapath kernel is not available yet: the kernel datapath has no "
                "reachability prober; use the model datapath (the default)"
            )
        mod = importlib.import_module("ciliate.datapath.linux.reach")
        matrix = mod.reach_matrix(ctx, args.port, args.protocol, http)
    else:
        docs, config = cluster_docs(args, ctx)
        matrix = compute_reach(docs, config, args.port, args.protocol, http)
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
    http = _http(args.http)
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
    if importlib.util.find_spec("ciliate.datapath.sim") is not None:
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


def _common(p: argparse.ArgumentParser) -> None:
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
    p.add_argument("--protocol", type=str.upper, choices=PROTOCOLS, default="TCP")
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
    reach.add_argument("-o", "--output", choices=("json", "table"), default="table")
    reach.add_argument("--datapath", choices=("model", "kernel"), default="model")
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
    _common(ex)
    ex.add_argument("-o", "--output", choices=("text", "json"), default="text")
    ex.set_defaults(func=cmd_explain)
    pol.set_defaults(func=lambda a, c: (pol.print_help(c.stdout), ExitCode.OK)[1])
