"""The apply transaction behind ``ciliate apply``: admission, one atomic store batch,
then the controllers.

1. the decoded batch must be free of diagnostics;
2. admission against the store: namespaces exist or are created by the batch; then
   ``controllers.admission.admit`` (clusterIP/nodePort allocation and checks: a
   clusterIP must lie in the service CIDR);
3. kubectl's three-way merge with the live object (``manifest.merge``), then one
   ``store.apply`` of every changed object (policies carry ``ciliate.io/source`` and
   ``ciliate.io/source-lines`` annotations for provenance; namespaces their
   ``kubernetes.io/metadata.name`` label);
4. ``controllers.reconcile.reconcile`` runs the controllers to a fixed point.

Diagnostics raised by admission without a file position are located through the
batch's source maps. Output: (object, "created" | "configured" | "unchanged") pairs.

Imports ``manifest``, ``store``, ``controllers`` and ``model``; must not import
``datapath`` or ``agent``.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import yaml

from ciliate.controllers.admission import admit
from ciliate.controllers.clusterconfig import get_cluster_config
from ciliate.controllers.reconcile import reconcile as run_controllers
from ciliate.errors import Diagnostic, DiagnosticError
from ciliate.manifest.decode import Batch, Decoded, check_namespaces, with_provenance
from ciliate.manifest.merge import is_unchanged, merge_applied, strip_server_fields
from ciliate.model.cluster import ClusterConfig
from ciliate.model.meta import Doc, name_of
from ciliate.store.api import Change, ObjectKey, Store, apply_unless_changed

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
MAX_ATTEMPTS = 20  # optimistic-concurrency retries against concurrent writers


def cluster_config(store: Store) -> ClusterConfig:
    """The cluster of this store (``NotFoundError`` naming ``ciliate cluster create``)."""
    return get_cluster_config(store)


def reconcile(store: Store, config: ClusterConfig) -> None:
    """Run the controllers to a fixed point (``controllers.reconcile``)."""
    run_controllers(store, config)


# -- apply ---------------------------------------------------------------------------------


def _locate(diags: Sequence[Diagnostic], batch: Batch) -> list[Diagnostic]:
    """Give diagnostics raised without a position (admission) their file:line:col."""
    by_key = {d.key: d for d in batch.objects}
    out: list[Diagnostic] = []
    for diag in diags:
        obj = by_key.get((diag.kind, diag.namespace, diag.name))
        if diag.line or obj is None:
            out.append(diag)
            continue
        out.append(obj.diagnostic(diag.path, diag.reason))
    return out


def _prepare(d: Decoded) -> Doc:
    doc = with_provenance(d)
    if d.kind == "Namespace":
        meta = dict(doc.get("metadata") or {})
        labels = dict(meta.get("labels") or {})
        labels[NAMESPACE_NAME_LABEL] = d.name
        meta["labels"] = labels
        doc = {**doc, "metadata": meta}
    return doc


def _admit(
    batch: Batch, store: Store, config: ClusterConfig
) -> tuple[list[Change], list[tuple[Decoded, str]]]:
    """Every check against the current store, and the changes to write."""
    namespaces = {name_of(n) for n in store.list("Namespace")}
    diags = check_namespaces(batch.objects, namespaces)
    if diags:
        raise DiagnosticError(diags)
    keys = [ObjectKey(d.kind, d.namespace, d.name) for d in batch.objects]
    lives = [store.get(key) for key in keys]
    # kubectl apply's three-way merge keeps what controllers set (nodeName, clusterIP,
    # annotations) and drops only what the user removed from the manifest.
    docs = [merge_applied(live, _prepare(d)) for d, live in zip(batch.objects, lives, strict=True)]
    try:
        docs = list(admit(docs, store, config))
    except DiagnosticError as e:
        raise DiagnosticError(_locate(e.diagnostics, batch)) from None
    changes: list[Change] = []
    results: list[tuple[Decoded, str]] = []
    for d, key, live, doc in zip(batch.objects, keys, lives, docs, strict=True):
        if live is None:
            action = "created"
        elif is_unchanged(live, doc):
            action = "unchanged"
        else:
            action = "configured"
        results.append((d, action))
        if action != "unchanged":
            changes.append(Change(key, doc))
    return changes, results


def apply_batch(batch: Batch, store: Store, dry_run: bool = False) -> list[tuple[Decoded, str]]:
    """Admission + one atomic store batch + reconcile; returns (object, action) pairs.

    Raises ``DiagnosticError`` (nothing written) when any check fails. ``dry_run``
    runs every check and reports the actions without writing anything.

    Admission reads the store (free cluster IPs and node ports, existing namespaces),
    so the write is conditional on the store not having changed since
    (``if_version``): another process applying at the same time makes this one check
    again against the new state, so two applies can never take the same address.
    """
    batch.raise_if_invalid()
    config = cluster_config(store)
    if dry_run:
        return _admit(batch, store, config)[1]
    results = apply_unless_changed(
        store,
        lambda: _admit(batch, store, config),
        attempts=MAX_ATTEMPTS,
        gave_up=f"the cluster state kept changing during {MAX_ATTEMPTS} attempts; nothing applied",
    )
    reconcile(store, config)
    return results


def diff_batch(batch: Batch, store: Store) -> str:
    """``kubectl diff``: what applying ``batch`` would change, as a unified diff of the
    YAML of each live object and of what apply would store (after admission). Empty
    when nothing would change. Raises ``DiagnosticError`` like apply."""
    batch.raise_if_invalid()
    config = cluster_config(store)
    changes, _results = _admit(batch, store, config)
    out: list[str] = []
    for change in changes:
        new = change.object or {}
        keep = "status" in new
        live = store.get(change.key)
        name = "/".join(p for p in (change.key.kind, change.key.namespace, change.key.name) if p)
        before = _yaml_lines(strip_server_fields(live, keep)) if live is not None else []
        after = _yaml_lines(strip_server_fields(new, keep))
        out.extend(difflib.unified_diff(before, after, f"live/{name}", f"merged/{name}"))
    return "".join(out)


def _yaml_lines(doc: Doc) -> list[str]:
    text = yaml.safe_dump(doc, sort_keys=True, default_flow_style=False)
    return text.splitlines(keepends=True)
