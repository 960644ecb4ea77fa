"""Where the tests find the shared example manifests (a helper module, not tests).

The examples (cluster.yaml, networking101/, ebook/, network-policy/, ...) live outside
the repository, in the shared folder. Looked for, in this order:

1. ``../shared/examples`` beside the clone (the layout the project is developed in);
2. ``$CILIATE_SHARED/examples`` (a clone anywhere else, e.g. CI: point it at the folder);
3. ``/work/shared/examples`` (where this machine keeps them).

cluster.yaml and the networking101 workloads also ship in the package
(``ciliate/examples``), so tests that need only those run from a bare clone. A test
that still cannot find a file skips, and the reason names every place looked in.

Importable as ``_paths`` from any test: ``tests/`` is on ``sys.path`` through
``tests/conftest.py`` (rootdir-relative imports, no ``__init__.py``).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGED = Path(str(resources.files("ciliate") / "examples"))
# shared example (relative to examples/) -> the packaged copy's name
PACKAGED_NAMES = {
    "cluster.yaml": "cluster.yaml",
    "networking101/workloads.yaml": "networking101.yaml",
}


def shared_candidates() -> list[Path]:
    """The places the shared examples may be, in the order they are tried."""
    out = [REPO.parent / "shared" / "examples"]
    env = os.environ.get("CILIATE_SHARED")
    if env:
        out.append(Path(env) / "examples")
    out.append(Path("/work/shared/examples"))
    return out


def find_shared_examples() -> Path | None:
    """The shared examples folder, or None when none of the places has it."""
    for cand in shared_candidates():
        if cand.is_dir():
            return cand.resolve()
    return None


def not_found_reason(what: str) -> str:
    """A skip reason naming every place looked in and how to point the tests at one."""
    places = ", ".join(str(p) for p in shared_candidates())
    return (
        f"{what} not found (looked in {places}; set CILIATE_SHARED to the folder that "
        "holds examples/)"
    )


def shared_examples() -> Path:
    """The shared examples folder, or a skip saying where it was looked for."""
    root = find_shared_examples()
    if root is None:
        pytest.skip(not_found_reason("the shared examples"))
    return root


def example_file(rel: str) -> Path:
    """``rel`` (e.g. ``ebook/services.yaml``) in the shared examples when they are there
    (a file missing from them is the test's error, not a skip), else its packaged copy,
    else a skip naming the places looked in."""
    root = find_shared_examples()
    if root is not None:
        return root / rel
    if rel in PACKAGED_NAMES:
        return PACKAGED / PACKAGED_NAMES[rel]
    pytest.skip(not_found_reason(f"shared example {rel}"))
