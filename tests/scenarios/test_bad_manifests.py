"""Golden error messages for bad manifests: ``ciliate apply -f CASE`` into a fresh
cluster prints exactly ``bad_manifests/CASE.stderr``, exits 1 and changes nothing.

Cases are the ``*.yaml`` files of bad_manifests/, plus three built here: the shared
example services-fixed-ip.yaml (clusterIP outside the service CIDR), the shared Helm
values metallb-values.yaml, and an oversized document (generated, not committed).
Rewrite the golden files with ``pytest --update-golden``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from _cli import run_cli
from _paths import shared_examples
from ciliate.cli.context import Context
from ciliate.manifest.yaml import MAX_DOC_BYTES

CASES = Path(__file__).parent / "bad_manifests"


def run(argv: list[str], state: Path) -> tuple[int, str, str]:
    return run_cli(state, *argv)


def store_snapshot(state: Path) -> list[dict]:  # type: ignore[type-arg]
    ctx = Context(state_dir=state)
    try:
        return ctx.store().list()
    finally:
        ctx.close()


@pytest.fixture(scope="module")
def cluster_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cluster created once; each case applies into a copy of it."""
    state = tmp_path_factory.mktemp("bad-manifests") / "state"
    rc, _, err = run(["cluster", "create", "-f", str(shared_examples() / "cluster.yaml")], state)
    assert rc == 0, err
    return state


def _case_files() -> list[str]:
    return sorted(p.name for p in CASES.glob("*.yaml"))


def _write_generated(name: str, where: Path) -> None:
    if name in ("services-fixed-ip.yaml", "metallb-values.yaml"):  # the shared examples
        shutil.copy(shared_examples() / "ebook" / name, where / name)
    elif name == "oversized.yaml":
        small = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: small\n"
        big = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\ndata:\n  blob: "
        (where / name).write_text(small + "---\n" + big + "x" * (MAX_DOC_BYTES + 1) + "\n")
    else:
        shutil.copy(CASES / name, where / name)


GENERATED = ["services-fixed-ip.yaml", "metallb-values.yaml", "oversized.yaml"]


@pytest.mark.parametrize("name", _case_files() + GENERATED)
def test_bad_manifest(
    name: str,
    cluster_state: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    update_golden: bool,
) -> None:
    state = tmp_path / "state"
    shutil.copytree(cluster_state, state)
    work = tmp_path / "work"
    work.mkdir()
    _write_generated(name, work)
    monkeypatch.chdir(work)  # diagnostics name the file as given: CASE.yaml
    before = store_snapshot(state)
    rc, out, err = run(["apply", "-f", name], state)
    golden = CASES / (Path(name).stem + ".stderr")
    if update_golden:
        golden.write_text(err)
    assert err == golden.read_text()
    assert rc == 1
    assert out == ""
    assert store_snapshot(state) == before, "a refused apply must not change the store"
