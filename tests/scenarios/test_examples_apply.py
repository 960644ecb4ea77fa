"""Every manifest under ../shared/examples applies into a fresh cluster, except the
ones their EXPECTED.md says are refused, which are refused with the right message.

One fresh cluster (cluster.yaml) per example directory; the directory's manifests are
applied as one batch (so a namespace created by one file serves the others), a second
apply reports every object unchanged, and ``get -o name`` lists each object.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from _cli import run_cli
from _paths import find_shared_examples, not_found_reason, shared_examples
from ciliate.manifest.decode import load_paths
from ciliate.manifest.kinds import kind_info

# file -> a fragment of the expected error (EXPECTED.md of ebook/)
REFUSED = {
    "ebook/ingress-legacy.yaml": "apiVersion: extensions/v1beta1 Ingress is no longer served "
    "(removed in Kubernetes v1.22): use networking.k8s.io/v1",
    "ebook/services-fixed-ip.yaml": 'spec.clusterIP: Invalid value: "10.0.171.239": provided IP '
    "is not in the valid range. The range of valid IPs is 10.96.0.0/12",
    "ebook/metallb-values.yaml": "apiVersion and kind are missing",
}
NOT_MANIFESTS = {"cluster.yaml"}  # the cluster config, applied with `cluster create`


def run(argv: list[str], state: Path) -> tuple[int, str, str]:
    return run_cli(state, *argv)


@pytest.fixture(scope="module")
def empty_cluster(tmp_path_factory: pytest.TempPathFactory) -> Path:
    state = tmp_path_factory.mktemp("examples") / "state"
    rc, _, err = run(["cluster", "create", "-f", str(shared_examples() / "cluster.yaml")], state)
    assert rc == 0, err
    return state


def _dirs() -> list[Any]:
    """Every example directory; without the examples, one skipped case saying why (an
    empty parameter list would skip with pytest's own, vaguer reason)."""
    root = find_shared_examples()
    if root is None:
        why = not_found_reason("the shared examples")
        return [pytest.param("", marks=pytest.mark.skip(reason=why))]
    return sorted(p.name for p in root.iterdir() if p.is_dir())


@pytest.mark.parametrize("directory", _dirs())
def test_example_directory_applies(directory: str, empty_cluster: Path, tmp_path: Path) -> None:
    root = shared_examples()
    files = sorted(
        str(p)
        for p in (root / directory).glob("*.yaml")
        if f"{directory}/{p.name}" not in REFUSED and p.name not in NOT_MANIFESTS
    )
    assert files
    state = tmp_path / "state"
    shutil.copytree(empty_cluster, state)
    argv = ["apply"] + [a for f in files for a in ("-f", f)]
    rc, out, err = run(argv, state)
    assert rc == 0, err
    objects = load_paths(files).objects
    lines = out.splitlines()
    assert len(lines) == len(objects) and all(line.endswith(" created") for line in lines), out
    rc, out, err = run(argv, state)
    assert rc == 0 and all(line.endswith(" unchanged") for line in out.splitlines()), out
    for obj in objects:
        info = kind_info(obj.kind)
        assert info is not None
        ns = ["-n", obj.namespace] if obj.namespace else []
        rc, out, err = run(["get", info.qualified_plural, obj.name, *ns, "-o", "name"], state)
        assert (rc, out) == (0, f"{info.qualified_singular}/{obj.name}\n"), err


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_examples(name: str, empty_cluster: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    shutil.copytree(empty_cluster, state)
    rc, out, err = run(["apply", "-f", str(shared_examples() / name)], state)
    assert rc == 1 and out == ""
    assert REFUSED[name] in err
    assert err.endswith("nothing was changed\n")
