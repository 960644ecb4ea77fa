"""Diagnostics: where and why an input is wrong, rendered like a compiler.

A ``Diagnostic`` names the file, line and column, the object (Kind ns/name), the
field path (``spec.ingress[0].from[1].ipBlock.cidr``) and the reason. Batches collect
every diagnostic before failing (``DiagnosticError``). Imports nothing of ciliate.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


class ExitCode(enum.IntEnum):
    """Exit statuses of every ciliate command (documented in the README)."""

    OK = 0
    INVALID_INPUT = 1  # a manifest, a flag value or a reference is invalid; nothing changed
    NOT_FOUND = 2  # the named object, node or pod does not exist
    CONFLICT = 3  # the state does not allow it (cluster exists / missing, port collision)
    UNSUPPORTED = 4  # needs root or a kernel feature that is missing here
    DATAPATH_ERROR = 5  # the kernel datapath failed; state was rolled back
    INTERRUPTED = 130


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem with an input, located as precisely as known."""

    reason: str
    file: str = "<input>"
    line: int = 0  # 1-based; 0 = unknown
    col: int = 0  # 1-based; 0 = unknown
    kind: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""  # field path, e.g. spec.ports[0].port

    def render(self) -> str:
        loc = self.file
        if self.line:
            loc += f":{self.line}"
            if self.col:
                loc += f":{self.col}"
        parts = [loc]
        if self.kind or self.name:
            obj = "/".join(p for p in (self.namespace, self.name) if p)
            parts.append(f"{self.kind} {obj}".strip())
        if self.path:
            parts.append(self.path)
        parts.append(self.reason)
        return ": ".join(parts)

    def __str__(self) -> str:
        return self.render()


class CiliateError(Exception):
    """Base of ciliate's errors; carries the exit code the CLI returns."""

    exit_code: ExitCode = ExitCode.INVALID_INPUT


class DiagnosticError(CiliateError):
    """A batch of diagnostics: the whole input is refused and nothing is applied."""

    def __init__(self, diagnostics: Iterable[Diagnostic]) -> None:
        self.diagnostics: Sequence[Diagnostic] = tuple(diagnostics)
        super().__init__("\n".join(d.render() for d in self.diagnostics))


class NotFoundError(CiliateError):
    exit_code = ExitCode.NOT_FOUND


class ConflictError(CiliateError):
    exit_code = ExitCode.CONFLICT


class UnsupportedError(CiliateError):
    exit_code = ExitCode.UNSUPPORTED


class DatapathError(CiliateError):
    exit_code = ExitCode.DATAPATH_ERROR
