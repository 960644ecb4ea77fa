"""Manifests in, validated documents and every diagnostic out.

Role: read files, directories (``*.yaml``, ``*.yml``, ``*.json``; ``-R`` recurses) and
stdin (``-``), split them into documents (``manifest.yaml``), expand ``kind: List``,
and check each document: apiVersion/kind/metadata.name present, the kind served in that
apiVersion (removed APIs name their replacement), names (DNS-1123), labels, then the
kind's own fields (``validate_*``), then duplicates across the whole batch. Namespaced
objects without ``metadata.namespace`` get ``default``; unknown fields are kept.

Outputs a ``Batch``: the ``Decoded`` objects (document + source map + file + line) and
all diagnostics. ``Batch.raise_if_invalid()`` fails the whole batch at once. Checks that
need the store (does the namespace exist?) are pure functions here too
(``check_namespaces``), fed by the caller. Imports manifest.*, ciliate.errors and
ciliate.model.meta only; never the store.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ciliate.errors import Diagnostic, DiagnosticError
from ciliate.manifest import kinds, syntax, validate_core, validate_net, validate_policy
from ciliate.manifest.checker import Checker
from ciliate.manifest.kinds import KindInfo, NameRule
from ciliate.manifest.yaml import SourceMap, load_yaml
from ciliate.model.meta import Doc, name_of, namespace_of

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")

VALIDATORS: dict[str, validate_core.Validator] = {
    **validate_core.VALIDATORS,
    **validate_policy.VALIDATORS,
    **validate_net.VALIDATORS,
}

SOURCE_ANNOTATION = "ciliate.io/source"
SOURCE_LINES_ANNOTATION = "ciliate.io/source-lines"
PROVENANCE_KINDS = frozenset(
    {"NetworkPolicy", "CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy"}
)


@dataclass(frozen=True, slots=True)
class Decoded:
    """One valid-looking object of a batch and where it came from."""

    doc: Doc
    source: SourceMap
    file: str
    line: int  # the document's first line
    info: KindInfo

    @property
    def kind(self) -> str:
        return str(self.doc["kind"])

    @property
    def namespace(self) -> str:
        return namespace_of(self.doc)

    @property
    def name(self) -> str:
        return name_of(self.doc)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.namespace, self.name)

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def diagnostic(self, path: str, reason: str) -> Diagnostic:
        """A diagnostic about this object at ``path`` (for checks made after decoding,
        e.g. admission against the store)."""
        ck = Checker(self.file, self.source, self.kind, self.namespace, self.name)
        return ck.diagnostic(path, reason)


@dataclass(slots=True)
class Batch:
    objects: list[Decoded] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.diagnostics

    def extend(self, other: Batch) -> None:
        self.objects.extend(other.objects)
        self.diagnostics.extend(other.diagnostics)

    def raise_if_invalid(self) -> None:
        if self.diagnostics:
            raise DiagnosticError(self.diagnostics)


# -- reading -------------------------------------------------------------------------------


def load_paths(
    paths: Sequence[str],
    recursive: bool = False,
    stdin: TextIO | None = None,
    namespace: str = "default",
) -> Batch:
    """Decode every manifest named by ``paths`` as one batch (duplicates checked across
    all of them). ``namespace`` is given to namespaced objects that name none (``-n``)."""
    batch = Batch()
    for p in paths:
        if p == "-":
            if stdin is None:
                batch.diagnostics.append(Diagnostic("no standard input to read", file="-"))
                continue
            batch.extend(
                decode_text(stdin.read(), "<stdin>", duplicates=False, namespace=namespace)
            )
            continue
        path = Path(p)
        if path.is_dir():
            files = sorted(
                f
                for f in (path.rglob("*") if recursive else path.iterdir())
                if f.is_file() and f.suffix in MANIFEST_SUFFIXES
            )
            if not files:
                batch.diagnostics.append(
                    Diagnostic(
                        "no manifests in this directory (recognized file extensions are "
                        f"{', '.join(MANIFEST_SUFFIXES)}{'' if recursive else '; -R recurses'})",
                        file=p,
                    )
                )
            for f in files:
                batch.extend(_decode_file(f, namespace))
        elif path.exists():
            batch.extend(_decode_file(path, namespace))
        else:
            batch.diagnostics.append(Diagnostic("no such file or directory", file=p))
    batch.diagnostics.extend(check_duplicates(batch.objects))
    return batch


def _decode_file(path: Path, namespace: str) -> Batch:
    try:
        data = path.read_bytes()
    except OSError as e:
        return Batch(diagnostics=[Diagnostic(f"cannot read: {e.strerror}", file=str(path))])
    return decode_text(data, str(path), duplicates=False, namespace=namespace)


def decode_text(
    text: str | bytes,
    filename: str = "<input>",
    duplicates: bool = True,
    namespace: str = "default",
) -> Batch:
    """Decode and validate every document of one text; never raises."""
    batch = Batch()
    loaded = load_yaml(text, filename)
    batch.diagnostics.extend(loaded.diagnostics)
    for ydoc in loaded.docs:
        if ydoc.value is None:
            continue  # an empty document ("---" alone) is skipped, as kubectl does
        for value, source in _expand_list(ydoc.value, ydoc.source):
            decode_document(value, source, filename, batch, namespace)
    if duplicates:
        batch.diagnostics.extend(check_duplicates(batch.objects))
    return batch


def _expand_list(value: Any, source: SourceMap) -> Iterable[tuple[Any, SourceMap]]:
    """A ``kind: List`` (what ``get -o yaml`` prints) stands for its items."""
    if (
        isinstance(value, dict)
        and value.get("kind") == "List"
        and value.get("apiVersion") == "v1"
        and isinstance(value.get("items"), list)
    ):
        for i, item in enumerate(value["items"]):
            prefix = f"items[{i}]"
            sub = {
                p[len(prefix) :].lstrip("."): pos
                for p, pos in source.positions.items()
                if p == prefix or p.startswith(prefix + ".") or p.startswith(prefix + "[")
            }
            yield item, SourceMap(sub.get("", (source.start_line, 1))[0], sub)
        return
    yield value, source


# -- per-document checks -------------------------------------------------------------------


def decode_document(
    value: Any, source: SourceMap, filename: str, batch: Batch, namespace: str = "default"
) -> None:
    """Check one document; append it to ``batch.objects`` when its identity is known
    (even with field errors, so duplicates are still found) — a batch with any
    diagnostic is refused as a whole anyway."""
    ck = Checker(filename, source)
    if not isinstance(value, dict):
        ck.error("", "a manifest document must be an object with apiVersion, kind and metadata")
        batch.diagnostics.extend(ck.diagnostics)
        return
    api_version = ck.get_str(value, "apiVersion", "")
    kind = ck.get_str(value, "kind", "")
    meta = ck.get_map(value, "metadata", "")
    name = ck.get_str(meta, "name", "metadata") if meta is not None else None
    ck.kind = kind or ""
    ck.name = name or ""
    if value.get("apiVersion") in (None, "") and value.get("kind") in (None, ""):
        ck.error(
            "",
            "not a Kubernetes object: apiVersion and kind are missing (configuration such as "
            "Helm values cannot be applied)",
        )
        batch.diagnostics.extend(ck.diagnostics)
        return
    if value.get("apiVersion") in (None, ""):
        ck.error("apiVersion", "required value")
    if value.get("kind") in (None, ""):
        ck.error("kind", "required value")
    info: KindInfo | None = None
    if api_version and kind:
        info = _check_kind(api_version, kind, ck)
    if meta is None:
        ck.error("metadata", "required value (metadata.name)")
    elif name is None:
        if meta.get("name") in (None, ""):
            ck.error("metadata.name", "required value")
    elif info is not None:
        _check_name(name, info, ck)
    if info is None or meta is None or name is None:
        if not ck.diagnostics:  # never drop a document silently
            ck.error("", "not a valid Kubernetes object")
        batch.diagnostics.extend(ck.diagnostics)
        return
    doc: Doc = value
    ns = ck.get_str(meta, "namespace", "metadata")
    if info.namespaced:
        if not ns:
            # Like kubectl, a namespaced object without a namespace goes to "default"
            # (or to the namespace of -n).
            meta["namespace"] = ns = namespace
        ck.namespace = ns
        ck.check("metadata.namespace", syntax.check_dns1123_label(ns))
    elif ns:
        ck.error("metadata.namespace", f"{kind} is cluster-scoped: remove metadata.namespace")
    ck.label_map(meta.get("labels"), "metadata.labels")
    annotations = ck.get_map(meta, "annotations", "metadata") or {}
    for k, v in annotations.items():
        reason = syntax.check_label_key(k)
        if reason:
            ck.error(f"metadata.annotations.{k}", reason.replace("label key", "annotation key"))
        if not isinstance(v, str):
            ck.error(f"metadata.annotations.{k}", "annotation value must be a string")
    if info.computed:
        ck.error("kind", f"{kind} objects are computed by ciliate and cannot be applied")
    validator = VALIDATORS.get(info.kind)
    if validator is not None:
        validator(doc, ck)
    batch.diagnostics.extend(ck.diagnostics)
    batch.objects.append(Decoded(doc, source, filename, source.start_line, info))


def _check_kind(api_version: str, kind: str, ck: Checker) -> KindInfo | None:
    removed = kinds.removed_api(api_version, kind)
    if removed is not None:
        release, replacement = removed
        ck.error(
            "apiVersion",
            f"{api_version} {kind} is no longer served (removed in Kubernetes {release}): "
            f"use {replacement}",
        )
        return None
    info = kinds.kind_info(kind)
    if info is None:
        ck.error("kind", f'no matches for kind "{kind}" in version "{api_version}"')
        return None
    if api_version not in info.api_versions:
        ck.error(
            "apiVersion",
            f'no matches for kind "{kind}" in version "{api_version}": '
            f"served: {', '.join(info.api_versions)}",
        )
        return None
    return info


def _check_name(name: str, info: KindInfo, ck: Checker) -> None:
    checks = {
        NameRule.SUBDOMAIN: syntax.check_dns1123_subdomain,
        NameRule.LABEL: syntax.check_dns1123_label,
        NameRule.DNS1035: syntax.check_dns1035_label,
        NameRule.PATH_SEGMENT: syntax.check_path_segment,
    }
    reason = checks[info.name_rule](name) if name else "must not be empty"
    if reason:
        ck.error("metadata.name", reason)


# -- batch checks --------------------------------------------------------------------------


def check_duplicates(objects: Sequence[Decoded]) -> list[Diagnostic]:
    """Two documents of a batch naming the same object: both places are named."""
    first: dict[tuple[str, str, str], Decoded] = {}
    out: list[Diagnostic] = []
    for d in objects:
        prev = first.get(d.key)
        if prev is None:
            first[d.key] = d
            continue
        out.append(
            d.diagnostic(
                "metadata.name",
                f"duplicate object in this batch: also defined at "
                f"{prev.file}:{prev.source.locate('metadata.name')[0]}",
            )
        )
    return out


def check_namespace_flag(objects: Sequence[Decoded], namespace: str) -> list[Diagnostic]:
    """kubectl's rule for ``-n``: an object naming another namespace is an error."""
    return [
        d.diagnostic(
            "metadata.namespace",
            f'the namespace from the provided object "{d.namespace}" does not match the '
            f'namespace "{namespace}" given with -n',
        )
        for d in objects
        if d.info.namespaced
        and "metadata.namespace" in d.source.positions
        and d.namespace != namespace
    ]


def check_namespaces(objects: Sequence[Decoded], existing: Collection[str]) -> list[Diagnostic]:
    """Namespaced objects must go to a namespace that exists or that the batch creates."""
    created = {d.name for d in objects if d.kind == "Namespace"}
    out: list[Diagnostic] = []
    for d in objects:
        if d.info.namespaced and d.namespace not in existing and d.namespace not in created:
            out.append(
                d.diagnostic(
                    "metadata.namespace",
                    f'namespace "{d.namespace}" not found (create it first or in the same batch)',
                )
            )
    return out


def with_provenance(d: Decoded) -> Doc:
    """The document, with ``ciliate.io/source`` and ``ciliate.io/source-lines`` on policy
    kinds, so verdicts can name the file and line of the rule that decided them."""
    if d.kind not in PROVENANCE_KINDS:
        return d.doc
    lines = d.source.lines_under("spec")
    lines.update(d.source.lines_under("specs"))
    meta = dict(d.doc.get("metadata") or {})
    ann = dict(meta.get("annotations") or {})
    ann[SOURCE_ANNOTATION] = f"{d.file}:{d.line}"
    ann[SOURCE_LINES_ANNOTATION] = json.dumps(lines, separators=(",", ":"), sort_keys=True)
    meta["annotations"] = ann
    return {**d.doc, "metadata": meta}
