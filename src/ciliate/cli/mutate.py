"""``scale`` and ``label``: small in-place edits of stored objects, as kubectl does them.

Role: read the object, change one field (``spec.replicas``; ``metadata.labels``), write
it back in one store batch, then run the controllers (a scaled Deployment gets or loses
pods; a relabelled pod changes identity and policy). Inputs: the store and arguments;
outputs kubectl's lines (``deployment.apps/x scaled``, ``pod/x labeled``).

Imports ``manifest``, ``store.api``, ``model.meta`` and ``errors``; must not import
``datapath`` or ``agent``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

from ciliate.errors import CiliateError, ExitCode, NotFoundError
from ciliate.manifest import syntax
from ciliate.manifest.kinds import KindInfo
from ciliate.model.meta import Doc
from ciliate.store.api import Change, ObjectKey, Store, apply_unless_changed

SCALABLE = ("Deployment", "ReplicaSet", "StatefulSet")
MAX_ATTEMPTS = 20


def _edit(store: Store, compute: Callable[[], tuple[list[Change], list[str]]]) -> list[str]:
    """Read-modify-write that never loses a concurrent ``label`` or ``scale``."""
    return apply_unless_changed(
        store,
        compute,
        attempts=MAX_ATTEMPTS,
        gave_up=f"the object kept changing during {MAX_ATTEMPTS} attempts",
    )


class InvalidArgument(CiliateError):
    exit_code = ExitCode.INVALID_INPUT


def _get(store: Store, info: KindInfo, namespace: str, name: str) -> Doc:
    doc = store.get(ObjectKey(info.kind, namespace if info.namespaced else "", name))
    if doc is None:
        raise NotFoundError(f'{info.qualified_plural} "{name}" not found')
    return doc


def scale(
    store: Store, info: KindInfo, namespace: str, names: Sequence[str], replicas: int
) -> list[str]:
    """Set ``spec.replicas`` of each named workload; all or nothing."""
    if info.kind not in SCALABLE:
        raise InvalidArgument(
            f"{info.plural} cannot be scaled (scalable: deployments, replicasets, statefulsets)"
        )
    if replicas < 0:
        raise InvalidArgument(f"--replicas must be 0 or more, not {replicas}")

    def compute() -> tuple[list[Change], list[str]]:
        changes: list[Change] = []
        lines: list[str] = []
        for name in names:
            doc = copy.deepcopy(_get(store, info, namespace, name))
            doc.setdefault("spec", {})["replicas"] = replicas
            changes.append(Change(ObjectKey(info.kind, namespace, name), doc))
            lines.append(f"{info.qualified_singular}/{name} scaled")
        return changes, lines

    return _edit(store, compute)


def parse_label_changes(items: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """``key=value`` sets, ``key-`` removes (kubectl label's syntax)."""
    sets: dict[str, str] = {}
    removes: list[str] = []
    for item in items:
        if item.endswith("-") and "=" not in item:
            key = item[:-1]
            reason = syntax.check_label_key(key)
            if reason:
                raise InvalidArgument(reason)
            removes.append(key)
            continue
        key, eq, value = item.partition("=")
        if not eq:
            raise InvalidArgument(f'"{item}": use key=value to set a label or key- to remove one')
        reason = syntax.check_label_key(key) or syntax.check_label_value(value)
        if reason:
            raise InvalidArgument(reason)
        sets[key] = value
    return sets, removes


def label(
    store: Store,
    info: KindInfo,
    namespace: str,
    names: Sequence[str],
    changes_text: Sequence[str],
    overwrite: bool,
) -> list[str]:
    """Set or remove labels on each named object; all or nothing."""
    sets, removes = parse_label_changes(changes_text)
    if not sets and not removes:
        raise InvalidArgument("give at least one label change (key=value or key-)")

    def compute() -> tuple[list[Change], list[str]]:
        changes: list[Change] = []
        lines: list[str] = []
        for name in names:
            doc = copy.deepcopy(_get(store, info, namespace, name))
            labels = doc.setdefault("metadata", {}).setdefault("labels", {})
            for k, v in sets.items():
                if k in labels and labels[k] != v and not overwrite:
                    raise InvalidArgument(
                        f"'{k}' already has a value ({labels[k]}), and --overwrite is false"
                    )
            before = dict(labels)
            labels.update(sets)
            for k in removes:
                labels.pop(k, None)
            if labels == before:
                lines.append(f"{info.qualified_singular}/{name} not labeled")
                continue
            key = ObjectKey(info.kind, doc["metadata"].get("namespace", ""), name)
            changes.append(Change(key, doc))
            lines.append(f"{info.qualified_singular}/{name} labeled")
        return changes, lines

    return _edit(store, compute)
