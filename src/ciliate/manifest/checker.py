"""The diagnostic collector the validators write into, with typed field accessors.

Role: one ``Checker`` per document. Validators read fields through it
(``ck.get_map(obj, "spec", "")``); a field of the wrong type becomes a diagnostic and
reads as absent, so a validator never crashes on hostile input and every problem of a
document is reported at once. ``ck.error(path, reason)`` locates the path through the
document's ``SourceMap``; ``ck.check(path, syntax.check_x(v))`` records a syntax check's
answer when it names a problem. Also holds the checks shared by kinds: label maps and
label selectors. Imports ``ciliate.errors`` and ``manifest.yaml``/``manifest.syntax`` only.
"""

from __future__ import annotations

from typing import Any

from ciliate.errors import Diagnostic
from ciliate.manifest import syntax
from ciliate.manifest.yaml import SourceMap, join_path

SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def _type_name(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "list"
    return "object"


class Checker:
    def __init__(
        self, file: str, source: SourceMap, kind: str = "", namespace: str = "", name: str = ""
    ) -> None:
        self.file = file
        self.source = source
        self.kind = kind
        self.namespace = namespace
        self.name = name
        self.diagnostics: list[Diagnostic] = []

    def diagnostic(self, path: str, reason: str) -> Diagnostic:
        """A diagnostic about this document at ``path``, located through its source map
        (not recorded: ``error`` records)."""
        line, col = self.source.locate(path)
        return Diagnostic(
            reason,
            file=self.file,
            line=line,
            col=col,
            kind=self.kind,
            namespace=self.namespace,
            name=self.name,
            path=path,
        )

    def error(self, path: str, reason: str) -> None:
        self.diagnostics.append(self.diagnostic(path, reason))

    def check(self, path: str, reason: str | None) -> None:
        """Record a ``syntax.check_*`` answer at ``path`` when it names a problem (the
        checks return None for a valid value)."""
        if reason:
            self.error(path, reason)

    # -- typed accessors: wrong type -> diagnostic, read as None -------------------------

    def _get(self, obj: dict[str, Any], key: str, path: str, want: type, what: str) -> Any:
        v = obj.get(key)
        if v is None:
            return None
        if not isinstance(v, want) or (want is int and isinstance(v, bool)):
            self.error(join_path(path, key), f"must be {what}, not {_type_name(v)}")
            return None
        return v

    def get_map(self, obj: dict[str, Any], key: str, path: str) -> dict[str, Any] | None:
        v: dict[str, Any] | None = self._get(obj, key, path, dict, "an object")
        return v

    def get_list(self, obj: dict[str, Any], key: str, path: str) -> list[Any] | None:
        v: list[Any] | None = self._get(obj, key, path, list, "a list")
        return v

    def get_str(
        self, obj: dict[str, Any], key: str, path: str, required: bool = False
    ) -> str | None:
        v: str | None = self._get(obj, key, path, str, "a string")
        if v is None and required and obj.get(key) is None:
            self.error(join_path(path, key), "required value")
        return v

    def get_int(self, obj: dict[str, Any], key: str, path: str) -> int | None:
        v: int | None = self._get(obj, key, path, int, "an integer")
        return v

    def get_bool(self, obj: dict[str, Any], key: str, path: str) -> bool | None:
        v: bool | None = self._get(obj, key, path, bool, "true or false")
        return v

    def maps(self, obj: dict[str, Any], key: str, path: str) -> list[tuple[str, dict[str, Any]]]:
        """The items of a list of objects with their paths; wrong items reported."""
        items = self.get_list(obj, key, path) or []
        out: list[tuple[str, dict[str, Any]]] = []
        for i, it in enumerate(items):
            p = join_path(join_path(path, key), i)
            if isinstance(it, dict):
                out.append((p, it))
            else:
                self.error(p, f"must be an object, not {_type_name(it)}")
        return out

    def strs(self, obj: dict[str, Any], key: str, path: str) -> list[tuple[str, str]]:
        items = self.get_list(obj, key, path) or []
        out: list[tuple[str, str]] = []
        for i, it in enumerate(items):
            p = join_path(join_path(path, key), i)
            if isinstance(it, str):
                out.append((p, it))
            else:
                self.error(p, f"must be a string, not {_type_name(it)}")
        return out

    # -- shared checks ----------------------------------------------------------------------

    def label_map(self, labels: Any, path: str, key_source: bool = False) -> None:
        """A map of label keys to values (metadata.labels, matchLabels, nodeSelector).

        ``key_source``: Cilium selectors may prefix keys with a label source
        (``k8s:``, ``any:``, ``reserved:``, ``cidr:``...), checked without it.
        """
        if labels is None:
            return
        if not isinstance(labels, dict):
            self.error(path, f"must be an object, not {_type_name(labels)}")
            return
        for k, v in labels.items():
            p = join_path(path, k)
            self.check(p, syntax.check_label_key(syntax.strip_label_source(k) if key_source else k))
            if not isinstance(v, str):
                self.error(p, f"label value must be a string, not {_type_name(v)}")
                continue
            self.check(p, syntax.check_label_value(v))

    def selector(self, sel: Any, path: str, cilium: bool = False) -> None:
        """A metav1.LabelSelector: matchLabels and matchExpressions (key, operator,
        values: In/NotIn need values, Exists/DoesNotExist forbid them)."""
        if sel is None:
            return
        if not isinstance(sel, dict):
            self.error(path, f"must be a label selector object, not {_type_name(sel)}")
            return
        self.label_map(sel.get("matchLabels"), join_path(path, "matchLabels"), cilium)
        for p, e in self.maps(sel, "matchExpressions", path):
            key = self.get_str(e, "key", p, required=True)
            if key is not None:
                self.check(
                    join_path(p, "key"),
                    syntax.check_label_key(syntax.strip_label_source(key) if cilium else key),
                )
            op = self.get_str(e, "operator", p, required=True)
            values = self.strs(e, "values", p)
            if op is None:
                continue
            if op not in SELECTOR_OPERATORS:
                self.error(
                    join_path(p, "operator"),
                    f'unknown operator "{op}": supported values: {", ".join(SELECTOR_OPERATORS)}',
                )
            elif op in ("In", "NotIn") and not values:
                self.error(join_path(p, "values"), f"must be non-empty when operator is {op}")
            elif op in ("Exists", "DoesNotExist") and e.get("values"):
                self.error(join_path(p, "values"), f"must be empty when operator is {op}")
            for vp, v in values:
                self.check(vp, syntax.check_label_value(v))

    def port_value(
        self, v: Any, path: str, allow_zero: bool = False, string_numbers: bool = False
    ) -> int | str | None:
        """A port: number in range, or an IANA port name. ``string_numbers``: Cilium
        gives ports as strings ("80")."""
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int | str):
            self.error(path, f"must be a port number or name, not {_type_name(v)}")
            return None
        if isinstance(v, str) and string_numbers and v.isdigit():
            v = int(v)
        if isinstance(v, int):
            reason = syntax.check_port_number(v, allow_zero)
            if reason:
                self.error(path, reason)
                return None
            return v
        name: str = v
        reason = syntax.check_port_name(name)
        if reason:
            self.error(path, reason)
            return None
        return name
