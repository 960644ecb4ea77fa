"""Running ``ciliate`` in-process from a test (a helper module, not tests).

``run_cli(state, *argv)`` runs one command on the state directory ``state`` with its
own stdout, stderr and stdin (``stdin`` text, empty by default, so a test never reads
the terminal) and returns (exit code, stdout, stderr). Every test file that drives the
CLI uses it instead of wiring a ``Context`` of its own.

Importable as ``_cli`` from any test: ``tests/`` is on ``sys.path`` through
``tests/conftest.py`` (rootdir-relative imports, no ``__init__.py``).
"""

from __future__ import annotations

import io
from pathlib import Path

from ciliate.cli.context import Context
from ciliate.cli.main import main


def run_cli(state: Path, *argv: str, stdin: str = "") -> tuple[int, str, str]:
    """``ciliate ARGV`` on state directory ``state``: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    ctx = Context(state_dir=state, stdout=out, stderr=err, stdin=io.StringIO(stdin))
    rc = main(list(argv), ctx)
    return rc, out.getvalue(), err.getvalue()
