"""The label selector query language of ``kubectl get -l`` (apimachinery labels.Parse).

Grammar: requirements separated by commas (commas inside parentheses belong to a set):
``key=value``, ``key==value``, ``key!=value``, ``key in (a,b)``, ``key notin (a,b)``,
``key`` (exists), ``!key`` (does not exist). ``key!=value`` matches objects without the
key too, as ``NotIn``. The same grammar serves hubble's ``--label`` filters
(``observe.filters``), with Cilium's label sources allowed in keys. Outputs a
``model.meta.LabelSelector``; raises ``ValueError`` with the reason on bad input.
Imports manifest.syntax and model.meta only.
"""

from __future__ import annotations

import re

from ciliate.manifest import syntax
from ciliate.model.meta import LabelSelector, Requirement, SelectorOp

_SET = re.compile(r"^(?P<key>[^\s!=(),]+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")


def _split(text: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    cur = ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise ValueError(f'unbalanced ")" in selector "{text}"')
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if depth != 0:
        raise ValueError(f'unbalanced "(" in selector "{text}"')
    parts.append(cur)
    return [p.strip() for p in parts]


def _key(key: str, label_sources: bool) -> str:
    reason = syntax.check_label_key(syntax.strip_label_source(key) if label_sources else key)
    if reason:
        raise ValueError(reason)
    return key


def _value(value: str) -> str:
    reason = syntax.check_label_value(value)
    if reason:
        raise ValueError(reason)
    return value


def parse_selector(text: str, *, label_sources: bool = False) -> LabelSelector:
    """Parse ``-l`` text; the empty string selects everything. ``label_sources``: keys
    may carry a Cilium source prefix (``k8s:app``, ``reserved:world``), as hubble's
    ``--label`` filters do; the key is checked without it and kept with it."""
    if not text.strip():
        return LabelSelector()
    reqs: list[Requirement] = []
    for part in _split(text):
        if not part:
            raise ValueError(f'empty requirement in selector "{text}"')
        m = _SET.match(part)
        if m:
            values = frozenset(_value(v.strip()) for v in m["values"].split(",") if v.strip())
            if not values:
                raise ValueError(f'"{part}": a set needs at least one value')
            op = SelectorOp.IN if m["op"] == "in" else SelectorOp.NOT_IN
            reqs.append(Requirement(_key(m["key"], label_sources), op, values))
        elif "!=" in part:
            k, _, v = part.partition("!=")
            reqs.append(
                Requirement(
                    _key(k.strip(), label_sources),
                    SelectorOp.NOT_IN,
                    frozenset({_value(v.strip())}),
                )
            )
        elif "=" in part:
            k, _, v = part.partition("==") if "==" in part else part.partition("=")
            reqs.append(
                Requirement(
                    _key(k.strip(), label_sources), SelectorOp.IN, frozenset({_value(v.strip())})
                )
            )
        elif part.startswith("!"):
            reqs.append(
                Requirement(_key(part[1:].strip(), label_sources), SelectorOp.DOES_NOT_EXIST)
            )
        else:
            if " " in part or "(" in part:
                raise ValueError(f'cannot parse requirement "{part}"')
            reqs.append(Requirement(_key(part, label_sources), SelectorOp.EXISTS))
    return LabelSelector(tuple(reqs))
