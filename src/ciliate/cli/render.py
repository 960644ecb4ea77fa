"""Text rendering shared by commands: kubectl-style tables, Go tabwriter tables, ages."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], padding: int = 3) -> str:
    """Columns left-aligned, each as wide as its widest cell, separated by ``padding``
    spaces (kubectl uses 3; cilium-dbg's tabwriter too). Multi-line cells continue on
    the next lines with the other columns blank. Trailing spaces are stripped."""
    split_rows: list[list[list[str]]] = []
    for row in [list(headers), *[list(r) for r in rows]]:
        split_rows.append([str(c).split("\n") for c in row])
    ncol = max((len(r) for r in split_rows), default=0)
    widths = [0] * ncol
    for r in split_rows:
        for i, cell in enumerate(r):
            widths[i] = max(widths[i], *(len(x) for x in cell))
    lines: list[str] = []
    for r in split_rows:
        height = max((len(c) for c in r), default=1)
        for h in range(height):
            parts = []
            for i in range(ncol):
                cell = r[i] if i < len(r) else [""]
                text = cell[h] if h < len(cell) else ""
                parts.append(text.ljust(widths[i]) if i < ncol - 1 else text)
            lines.append((" " * padding).join(parts).rstrip())
    return "\n".join(lines)


def age(created: str, now: datetime | None = None) -> str:
    """kubectl's AGE: 45s, 5m, 3h, 2d (from an RFC 3339 timestamp)."""
    if not created:
        return "<unknown>"
    try:
        t = datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    secs = int(((now or datetime.now(UTC)) - t).total_seconds())
    secs = max(secs, 0)
    if secs < 120:
        return f"{secs}s"
    if secs < 3600 * 3:
        return f"{secs // 60}m"
    if secs < 86400 * 2:
        return f"{secs // 3600}h"
    return f"{secs // 86400}d"


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=False)
