"""A subset of kubectl's JSONPath output (``-o jsonpath='{.spec.clusterIP}'``).

Supported: literal text around ``{...}`` expressions; paths of ``.field``,
``['field']``, ``[N]`` (negative counts from the end) and ``[*]`` / ``.*`` wildcards;
``{range .items[*]}...{end}`` loops; quoted literals (``{"\\t"}``); ``\\n`` and ``\\t``
escapes in literal text. Several results of one expression are joined by a space, as
kubectl does. Raises ``ValueError`` on a template it cannot parse. Pure: documents in,
text out.

Standard library only; must not import the store or any other layer (a pure function of
a document).
"""

from __future__ import annotations

import json
import re
from typing import Any

_TOKEN = re.compile(r"\.\*|\.([A-Za-z0-9_\-/]+)|\[\*\]|\[(-?\d+)\]|\['([^']*)'\]|\[\"([^\"]*)\"\]")


def _steps(path: str) -> list[str | int | None]:
    """``.a.b[0][*]`` -> ["a", "b", 0, None] (None = every element)."""
    p = path.strip()
    if p in ("", "."):
        return []
    if p.startswith("$"):
        p = p[1:]
    if not p.startswith((".", "[")):
        p = "." + p
    steps: list[str | int | None] = []
    pos = 0
    while pos < len(p):
        m = _TOKEN.match(p, pos)
        if m is None:
            raise ValueError(f"unrecognized JSONPath at {p[pos:]!r}")
        if m[0] in (".*", "[*]"):
            steps.append(None)
        elif m[1] is not None:
            steps.append(m[1])
        elif m[2] is not None:
            steps.append(int(m[2]))
        else:
            steps.append(m[3] if m[3] is not None else m[4])
        pos = m.end()
    return steps


def evaluate(path: str, data: Any) -> list[Any]:
    """Every value ``path`` reaches in ``data`` (missing fields reach nothing)."""
    current = [data]
    for step in _steps(path):
        nxt: list[Any] = []
        for v in current:
            if step is None:
                if isinstance(v, list):
                    nxt.extend(v)
                elif isinstance(v, dict):
                    nxt.extend(v.values())
            elif isinstance(step, int):
                if isinstance(v, list) and -len(v) <= step < len(v):
                    nxt.append(v[step])
            elif isinstance(v, dict) and step in v:
                nxt.append(v[step])
        current = nxt
    return current


def _text(v: Any) -> str:
    if isinstance(v, dict | list):
        return json.dumps(v, separators=(",", ":"))
    if isinstance(v, bool):
        return "true" if v else "false"
    return "" if v is None else str(v)


def _parse(template: str) -> list[tuple[str, str]]:
    """("text", literal) and ("expr", path) parts of a template."""
    parts: list[tuple[str, str]] = []
    pos = 0
    while pos < len(template):
        start = template.find("{", pos)
        if start < 0:
            parts.append(("text", template[pos:]))
            break
        if start > pos:
            parts.append(("text", template[pos:start]))
        end = template.find("}", start)
        if end < 0:
            raise ValueError(f"unclosed {{ in JSONPath template {template!r}")
        parts.append(("expr", template[start + 1 : end].strip()))
        pos = end + 1
    return parts


def _render(parts: list[tuple[str, str]], data: Any) -> str:
    out: list[str] = []
    i = 0
    while i < len(parts):
        kind, value = parts[i]
        if kind == "text":
            out.append(value.replace("\\n", "\n").replace("\\t", "\t"))
        elif value.startswith("range "):
            depth, j = 1, i + 1
            while j < len(parts) and depth:
                if parts[j][0] == "expr" and parts[j][1].startswith("range "):
                    depth += 1
                elif parts[j] == ("expr", "end"):
                    depth -= 1
                j += 1
            if depth:
                raise ValueError("{range} without {end}")
            body = parts[i + 1 : j - 1]
            for item in evaluate(value[len("range ") :], data):
                out.append(_render(body, item))
            i = j
            continue
        elif value == "end":
            raise ValueError("{end} without {range}")
        elif len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            out.append(value[1:-1].replace("\\n", "\n").replace("\\t", "\t"))
        else:
            out.append(" ".join(_text(v) for v in evaluate(value, data)))
        i += 1
    return "".join(out)


def render(template: str, data: Any) -> str:
    """Render a kubectl JSONPath template against ``data``."""
    return _render(_parse(template), data)
