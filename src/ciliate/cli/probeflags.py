"""Flags shared by the commands that send a probe (trace, reach, policy explain)."""

from __future__ import annotations

from ciliate.errors import Diagnostic, DiagnosticError


def parse_http(text: str | None) -> tuple[str, str] | None:
    """``--http 'GET /path'`` -> ("GET", "/path"); None when not given."""
    if not text:
        return None
    method, _, path = text.strip().partition(" ")
    path = path.strip()
    if not method.isalpha() or not path.startswith("/"):
        raise DiagnosticError(
            [Diagnostic(f"--http {text!r}: expected 'METHOD /path'", file="<flags>")]
        )
    return method.upper(), path
