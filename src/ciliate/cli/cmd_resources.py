"""``apply``, ``delete``, ``get`` and ``describe``: kubectl's conventions over the store.

Role: argument parsing and output. The apply transaction (admission, one atomic store
batch, reconcile) is ``cli.applier``; the table columns ``cli.resource_tables``;
``describe``'s layout ``cli.describe``. ``get`` consults ``cli.virtual`` (computed kinds
such as ciliumendpoints and endpoints) before the store, and prints tables, ``-o
wide|yaml|json|name|jsonpath=``, kubectl's List shape and its NotFound messages.

Imports ``manifest``, ``store``, ``model`` and the ``cli`` helpers; must not import
``datapath`` or ``agent``, so these commands work on any machine.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from typing import Any

import yaml

from ciliate.cli import describe as describe_mod
from ciliate.cli import (
    endpoints_view,  # noqa: F401 - registers the computed Endpoints kind
    mutate,
)
from ciliate.cli.applier import apply_batch, cluster_config, diff_batch, reconcile
from ciliate.cli.context import Context
from ciliate.cli.jsonpath import render as render_jsonpath
from ciliate.cli.render import table
from ciliate.cli.resource_tables import table_for
from ciliate.cli.virtual import VirtualKind
from ciliate.cli.virtual import lookup as virtual_lookup
from ciliate.errors import CiliateError, ExitCode
from ciliate.manifest import kinds
from ciliate.manifest.decode import (
    Batch,
    check_namespace_flag,
    load_paths,
)
from ciliate.manifest.kinds import KindInfo
from ciliate.manifest.selector import parse_selector
from ciliate.model.cluster import ClusterConfig
from ciliate.model.meta import Doc, LabelSelector, name_of, namespace_of
from ciliate.store.api import Change, ObjectKey, Store

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
PROTECTED_NAMESPACES = frozenset({"default", "kube-system", "kube-public", "kube-node-lease"})
ALL_KINDS = ("pods", "services", "daemonsets", "deployments", "replicasets", "statefulsets")

APPLY_EPILOG = """\
Examples:
  ciliate apply -f networking101/workloads.yaml
  ciliate apply -f manifests/ -R            # every *.yaml, *.yml, *.json below
  cat pod.yaml | ciliate apply -f -
  ciliate apply -f policy.yaml --dry-run    # every check, nothing written

Every document is validated first; one problem anywhere and nothing is applied.
Exit status: 0 applied, 1 invalid input (every problem printed as file:line:col).
"""

DELETE_EPILOG = """\
Examples:
  ciliate delete -f networking101/workloads.yaml
  ciliate delete pod busybox-c8bbbbb84-fmhwc -n networking101
  ciliate delete deploy busybox netshoot -n networking101

Exit status: 0 deleted, 1 invalid input, 2 not found.
"""

GET_EPILOG = """\
Examples:
  ciliate get pods -n networking101 -o wide
  ciliate get deploy,svc -A
  ciliate get pods -l app=busybox -o name
  ciliate get cnp my-policy -o yaml
  ciliate get nodes -o json                 # a Kubernetes List
  ciliate get svc my-service -o jsonpath='{.spec.clusterIP}'
  ciliate get all -n networking101          # pods, services and workloads

Kinds: plural, singular or short names (po, svc, no, deploy, rs, ds, sts, ns, netpol,
cnp, ccnp, ing, gtw, httproute, ep, cm, cep, cn, ippools ...), or KIND.GROUP.
Exit status: 0 ok, 1 invalid arguments, 2 a named object was not found.
"""

DESCRIBE_EPILOG = """\
Examples:
  ciliate describe pod busybox-c8bbbbb84-fmhwc -n networking101
  ciliate describe svc my-service

Exit status: 0 ok, 1 invalid arguments, 2 not found.
"""


def register(sub: Any) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "apply",
        help="create or update objects from manifests",
        description="Create or update objects from manifest files, directories or stdin.",
        epilog=APPLY_EPILOG,
        formatter_class=fmt,
    )
    _file_args(p, required=True)
    p.add_argument("-n", "--namespace", default=None, help="namespace of objects that name none")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="validate and admit everything, report what would change, write nothing",
    )
    p.set_defaults(func=run_apply)

    p = sub.add_parser(
        "delete",
        help="delete objects by manifest or by kind and name",
        description="Delete the objects of manifests (-f) or named objects (KIND NAME...).",
        epilog=DELETE_EPILOG,
        formatter_class=fmt,
    )
    _file_args(p, required=False)
    p.add_argument("kind", nargs="?", help="resource kind (e.g. pod, deploy, svc)")
    p.add_argument("names", nargs="*", metavar="NAME")
    p.add_argument("-n", "--namespace", default=None, help="namespace (default: default)")
    p.add_argument("--ignore-not-found", action="store_true", help="missing objects are fine")
    p.set_defaults(func=run_delete)

    p = sub.add_parser(
        "get",
        help="list objects in kubectl's columns",
        description="Display one or many objects (kubectl get).",
        epilog=GET_EPILOG,
        formatter_class=fmt,
    )
    p.add_argument("kind", help="resource kind(s), comma-separated")
    p.add_argument("names", nargs="*", metavar="NAME")
    _namespace_args(p)
    p.add_argument("-l", "--selector", default="", help="label selector, e.g. app=x,tier!=db")
    p.add_argument("--show-labels", action="store_true", help="add a LABELS column")
    p.add_argument(
        "-o",
        "--output",
        type=_output_format,
        default=None,
        metavar="FORMAT",
        help="wide, yaml, json, name, or jsonpath=TEMPLATE (e.g. jsonpath='{.spec.clusterIP}')",
    )
    p.set_defaults(func=run_get)

    p = sub.add_parser(
        "describe",
        help="show details of an object",
        description="Show the details of one object (kubectl describe).",
        epilog=DESCRIBE_EPILOG,
        formatter_class=fmt,
    )
    p.add_argument("kind")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.add_argument("-n", "--namespace", default=None, help="namespace (default: default)")
    p.set_defaults(func=run_describe)

    p = sub.add_parser(
        "diff",
        help="show what apply would change",
        description="Show, as a unified diff, what `apply -f` would change (kubectl diff).",
        epilog=DIFF_EPILOG,
        formatter_class=fmt,
    )
    _file_args(p, required=True)
    p.add_argument("-n", "--namespace", default=None, help="namespace of objects that name none")
    p.set_defaults(func=run_diff)

    p = sub.add_parser(
        "api-resources",
        help="list the kinds ciliate understands",
        description="The kinds, their short names and API versions (kubectl api-resources).",
        epilog="Examples:\n  ciliate api-resources\n  ciliate api-resources | grep cilium.io\n",
        formatter_class=fmt,
    )
    p.set_defaults(func=run_api_resources)

    p = sub.add_parser(
        "scale",
        help="set the replicas of deployments, replicasets or statefulsets",
        description="Set spec.replicas of workloads; the controllers add or remove pods.",
        epilog=SCALE_EPILOG,
        formatter_class=fmt,
    )
    p.add_argument("kind")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.add_argument("--replicas", type=int, required=True, help="the new number of replicas")
    p.add_argument("-n", "--namespace", default=None, help="namespace (default: default)")
    p.set_defaults(func=run_scale)

    p = sub.add_parser(
        "label",
        help="set or remove labels of objects",
        description="Set (key=value) or remove (key-) labels of objects.",
        epilog=LABEL_EPILOG,
        formatter_class=fmt,
    )
    p.add_argument("kind")
    p.add_argument("name")
    p.add_argument("labels", nargs="+", metavar="KEY=VALUE|KEY-")
    p.add_argument("-n", "--namespace", default=None, help="namespace (default: default)")
    p.add_argument("--overwrite", action="store_true", help="allow replacing existing values")
    p.set_defaults(func=run_label)


DIFF_EPILOG = """\
Examples:
  ciliate diff -f networking101/workloads.yaml
  ciliate diff -f policies/ -R

Prints nothing when applying would change nothing. Checks everything apply checks.
Exit status: 0 (with or without differences), 1 invalid input.
"""

SCALE_EPILOG = """\
Examples:
  ciliate scale deploy busybox --replicas=3 -n networking101
  ciliate scale deploy backend1 frontend1 --replicas=0 -n app1

Exit status: 0 scaled, 1 invalid arguments, 2 not found.
"""

LABEL_EPILOG = """\
Examples:
  ciliate label ns app2 project=myproject
  ciliate label pod web-1 role=frontend --overwrite
  ciliate label pod web-1 role-              # remove the label

Exit status: 0 labeled, 1 invalid arguments, 2 not found.
"""


def _stored_kind(word: str) -> KindInfo:
    r = _resolve(word)
    if isinstance(r, VirtualKind) or r.computed:
        raise CiliateError(f"{r.plural} are computed by ciliate and cannot be changed")
    return r


def _after_change(store: Store) -> None:
    config = _config_or_none(store)
    if config is not None:
        reconcile(store, config)


def run_diff(args: argparse.Namespace, ctx: Context) -> int:
    ctx.stdout.write(diff_batch(_load(args, ctx), ctx.store()))
    return ExitCode.OK


def run_api_resources(args: argparse.Namespace, ctx: Context) -> int:
    rows = [
        [
            k.plural,
            ",".join(k.short_names),
            k.preferred_api_version,
            "true" if k.namespaced else "false",
            k.kind,
        ]
        for k in sorted(kinds.KINDS, key=lambda k: (k.group, k.plural))
    ]
    ctx.out(table(["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"], rows))
    return ExitCode.OK


def run_scale(args: argparse.Namespace, ctx: Context) -> int:
    info = _stored_kind(args.kind)
    store = ctx.store()
    ns = _namespace(args) if info.namespaced else ""
    for line in mutate.scale(store, info, ns, args.names, args.replicas):
        ctx.out(line)
    _after_change(store)
    return ExitCode.OK


def run_label(args: argparse.Namespace, ctx: Context) -> int:
    info = _stored_kind(args.kind)
    store = ctx.store()
    ns = _namespace(args) if info.namespaced else ""
    for line in mutate.label(store, info, ns, [args.name], args.labels, args.overwrite):
        ctx.out(line)
    _after_change(store)
    return ExitCode.OK


def _file_args(p: argparse.ArgumentParser, required: bool) -> None:
    p.add_argument(
        "-f",
        "--filename",
        action="append",
        default=[],
        required=required,
        metavar="FILE",
        help="manifest file, directory, or - for stdin (repeatable)",
    )
    p.add_argument("-R", "--recursive", action="store_true", help="recurse into directories")


def _namespace_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-n", "--namespace", default=None, help="namespace (default: default)")
    p.add_argument("-A", "--all-namespaces", action="store_true", help="objects of every namespace")


def _qualified(info: KindInfo | VirtualKind, name: str) -> str:
    return f"{info.qualified_singular}/{name}"


def _load(args: argparse.Namespace, ctx: Context, identity_only: bool = False) -> Batch:
    """The batch of ``-f`` arguments, with kubectl's ``-n`` rule applied."""
    batch = load_paths(args.filename, args.recursive, ctx.stdin, _namespace(args))
    if args.namespace:
        batch.diagnostics.extend(check_namespace_flag(batch.objects, args.namespace))
    if identity_only:
        # delete -f needs only each object's identity, as kubectl: a field problem of
        # an identified object does not stop its deletion.
        known = {d.key for d in batch.objects}
        batch.diagnostics = [
            x for x in batch.diagnostics if (x.kind, x.namespace, x.name) not in known
        ]
    batch.raise_if_invalid()
    return batch


def run_apply(args: argparse.Namespace, ctx: Context) -> int:
    batch = _load(args, ctx)
    if not batch.objects:
        ctx.err("error: no objects passed to apply")
        return ExitCode.INVALID_INPUT
    suffix = " (dry run)" if args.dry_run else ""
    for d, action in apply_batch(batch, ctx.store(), args.dry_run):
        ctx.out(f"{_qualified(d.info, d.name)} {action}{suffix}")
    return ExitCode.OK


# -- resolving kinds -------------------------------------------------------------------------


Resolved = KindInfo | VirtualKind


def _resolve(word: str) -> Resolved:
    vk = virtual_lookup(word)
    if vk is not None:
        return vk
    info = kinds.resolve_resource(word)
    if info is None:
        raise CiliateError(f'the server doesn\'t have a resource type "{word}"')
    return info


def _kind_name(r: Resolved) -> str:
    return r.kind


def _namespace(args: argparse.Namespace) -> str:
    return str(args.namespace or "default")


def _not_found(r: Resolved, name: str) -> str:
    return f'Error from server (NotFound): {r.qualified_plural} "{name}" not found'


# -- delete --------------------------------------------------------------------------------


def run_delete(args: argparse.Namespace, ctx: Context) -> int:
    store = ctx.store()
    targets: list[tuple[Resolved, str, str]] = []  # (kind, namespace, name)
    if args.filename:
        if args.kind:
            raise CiliateError("give either -f FILE or KIND NAME, not both")
        batch = _load(args, ctx, identity_only=True)
        targets = [(d.info, d.namespace, d.name) for d in batch.objects]
    else:
        if not args.kind or not args.names:
            raise CiliateError("give -f FILE, or KIND and at least one NAME")
        r = _resolve(args.kind)
        if isinstance(r, VirtualKind) or r.computed:
            raise CiliateError(f"{r.plural} are computed by ciliate and cannot be deleted")
        ns = _namespace(args) if r.namespaced else ""
        targets = [(r, ns, n) for n in args.names]
    changes: list[Change] = []
    lines: list[str] = []
    missing: list[str] = []
    for r, ns, name in targets:
        kind = _kind_name(r)
        if kind == "Namespace" and name in PROTECTED_NAMESPACES:
            raise CiliateError(
                f'namespaces "{name}" is forbidden: this namespace may not be deleted'
            )
        key = ObjectKey(kind, ns, name)
        if store.get(key) is None:
            if not args.ignore_not_found:
                missing.append(_not_found(r, name))
            continue
        changes.append(Change(key, None))
        lines.append(f'{r.qualified_singular} "{name}" deleted')
    if changes:
        store.apply(changes)
        config = _config_or_none(store)
        if config is not None:
            reconcile(store, config)
    for line in lines:
        ctx.out(line)
    for m in missing:
        ctx.err(m)
    return ExitCode.NOT_FOUND if missing else ExitCode.OK


def _config_or_none(store: Store) -> ClusterConfig | None:
    try:
        return cluster_config(store)
    except CiliateError:
        return None


# -- get -----------------------------------------------------------------------------------


def _list(r: Resolved, ctx: Context, namespace: str | None) -> list[Doc]:
    if isinstance(r, VirtualKind):
        docs = r.list(ctx)
        if r.namespaced and namespace is not None:
            docs = [d for d in docs if namespace_of(d) == namespace]
    else:
        docs = ctx.store().list(r.kind, namespace if r.namespaced else None)
    return sorted(docs, key=lambda d: (namespace_of(d), name_of(d)))


def _labels(doc: Doc) -> dict[str, str]:
    return {str(k): str(v) for k, v in ((doc.get("metadata") or {}).get("labels") or {}).items()}


def _table_fn(r: Resolved) -> Callable[[Sequence[Doc], bool], tuple[list[str], list[list[str]]]]:
    if isinstance(r, VirtualKind):
        return r.table
    fn = table_for(r.kind)
    return lambda docs, wide: fn(docs, wide, None)


def _clean(doc: Doc) -> Doc:
    """The document as ``-o yaml|json`` shows it (apiVersion and kind first)."""
    head: Doc = {k: doc[k] for k in ("apiVersion", "kind", "metadata") if k in doc}
    return {**head, **{k: v for k, v in doc.items() if k not in head}}


def run_get(args: argparse.Namespace, ctx: Context) -> int:
    try:
        selector = parse_selector(args.selector)
    except ValueError as e:
        raise CiliateError(f"invalid label selector: {e}") from None
    words = [w for w in args.kind.split(",") if w]
    # "all", as kubectl: the workload kinds and services.
    words = [x for w in words for x in (ALL_KINDS if w == "all" else (w,))]
    resolved = [_resolve(w) for w in words]
    if not resolved:
        raise CiliateError("give a resource kind, e.g. `ciliate get pods`")
    namespace: str | None = None if args.all_namespaces else _namespace(args)
    if args.names and args.all_namespaces:
        raise CiliateError("a resource cannot be retrieved by name across all namespaces")
    several = len(resolved) > 1 or args.kind == "all"
    found: list[tuple[Resolved, list[Doc]]] = []
    errors: list[str] = []
    for r in resolved:
        docs = _list(r, ctx, namespace)
        docs = [d for d in docs if selector.matches(_labels(d))]
        if args.names:
            by_name = {name_of(d): d for d in docs}
            picked: list[Doc] = []
            for n in args.names:
                if n in by_name:
                    picked.append(by_name[n])
                else:
                    errors.append(_not_found(r, n))
            docs = picked
        found.append((r, docs))
    _print(found, args, ctx, several, namespace, selector)
    for message in errors:
        ctx.err(message)
    return ExitCode.NOT_FOUND if errors else ExitCode.OK


def _list_doc(items: list[Doc]) -> Doc:
    """Kubernetes' List shape, as ``kubectl get -o json`` prints several objects."""
    return {"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}}


def _output_format(value: str) -> str:
    if value in ("wide", "yaml", "json", "name") or value.startswith("jsonpath="):
        return value
    raise argparse.ArgumentTypeError(
        f"unknown output format {value!r}: use wide, yaml, json, name or jsonpath=TEMPLATE"
    )


def _print(
    found: list[tuple[Resolved, list[Doc]]],
    args: argparse.Namespace,
    ctx: Context,
    several: bool,
    namespace: str | None,
    selector: LabelSelector,
) -> None:
    all_docs = [_clean(d) for _, docs in found for d in docs]
    if args.output and args.output.startswith("jsonpath="):
        single = len(all_docs) == 1 and len(args.names) == 1 and not several
        data = all_docs[0] if single else _list_doc(all_docs)
        try:
            ctx.stdout.write(render_jsonpath(args.output[len("jsonpath=") :], data))
        except ValueError as e:
            raise CiliateError(f"error parsing jsonpath: {e}") from None
        return
    if args.output in ("json", "yaml") and not (args.names and not all_docs):
        single = len(all_docs) == 1 and len(args.names) == 1 and not several
        obj: Any = all_docs[0] if single else _list_doc(all_docs)
        if args.output == "json":
            ctx.out(json.dumps(obj, indent=4))
        else:
            ctx.stdout.write(yaml.safe_dump(obj, sort_keys=False, default_flow_style=False))
        return
    if not all_docs:
        if not args.names:
            where = (
                f" in {namespace} namespace"
                if namespace is not None and any(r.namespaced for r, _ in found)
                else ""
            )
            ctx.err(f"No resources found{where}.")
        return
    if args.output == "name":
        for r, docs in found:
            for d in docs:
                ctx.out(_qualified(r, name_of(d)))
        return
    wide = args.output == "wide"
    blocks: list[str] = []
    for r, docs in found:
        if not docs:
            continue
        headers, rows = _table_fn(r)(docs, wide)
        if several:
            rows = [[_qualified(r, row[0]), *row[1:]] for row in rows]
        if args.show_labels:
            headers = [*headers, "LABELS"]
            rows = [
                [*row, ",".join(f"{k}={v}" for k, v in sorted(_labels(d).items())) or "<none>"]
                for d, row in zip(docs, rows, strict=True)
            ]
        if args.all_namespaces and r.namespaced:
            headers = ["NAMESPACE", *headers]
            rows = [[namespace_of(d), *row] for d, row in zip(docs, rows, strict=True)]
        blocks.append(table(headers, rows))
    ctx.out("\n\n".join(blocks))


# -- describe --------------------------------------------------------------------------------


def run_describe(args: argparse.Namespace, ctx: Context) -> int:
    r = _resolve(args.kind)
    namespace = _namespace(args) if r.namespaced else None
    docs = {name_of(d): d for d in _list(r, ctx, namespace)}
    missing = 0
    texts: list[str] = []
    for name in args.names:
        doc = docs.get(name)
        if doc is None:
            ctx.err(_not_found(r, name))
            missing += 1
            continue
        store = None if isinstance(r, VirtualKind) else ctx.store()
        texts.append(describe_mod.describe(doc, store))
    if texts:
        ctx.out("\n\n".join(texts))
    return ExitCode.NOT_FOUND if missing else ExitCode.OK
