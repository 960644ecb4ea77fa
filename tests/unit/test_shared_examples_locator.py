"""The tests' locator of the shared examples (tests/_paths.py): ../shared beside the
clone first, then $CILIATE_SHARED, then /work/shared; a skip names every place."""

from __future__ import annotations

from pathlib import Path

import pytest

import _paths


def _examples(root: Path) -> Path:
    (root / "examples").mkdir(parents=True)
    (root / "examples" / "cluster.yaml").write_text("cluster: {}\n")
    return root / "examples"


def test_beside_the_clone_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    beside = _examples(tmp_path / "shared")
    env = _examples(tmp_path / "elsewhere")
    monkeypatch.setattr(_paths, "REPO", tmp_path / "main")
    monkeypatch.setenv("CILIATE_SHARED", str(env.parent))
    assert _paths.find_shared_examples() == beside.resolve()
    assert _paths.example_file("cluster.yaml") == beside.resolve() / "cluster.yaml"


def test_environment_when_nothing_is_beside_the_clone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _examples(tmp_path / "elsewhere")
    monkeypatch.setattr(_paths, "REPO", tmp_path / "ci" / "checkout")
    monkeypatch.setenv("CILIATE_SHARED", str(env.parent))
    assert _paths.shared_candidates()[:2] == [
        tmp_path / "ci" / "shared" / "examples",
        env,
    ]
    assert _paths.find_shared_examples() == env.resolve()


def test_skip_reason_names_every_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_paths, "REPO", tmp_path / "main")
    monkeypatch.setenv("CILIATE_SHARED", str(tmp_path / "nowhere"))
    monkeypatch.setattr(
        _paths,
        "shared_candidates",
        lambda: [tmp_path / "shared" / "examples", tmp_path / "nowhere" / "examples"],
    )
    with pytest.raises(pytest.skip.Exception) as info:
        _paths.example_file("ebook/services.yaml")
    reason = str(info.value)
    assert "shared example ebook/services.yaml not found" in reason
    assert str(tmp_path / "shared" / "examples") in reason
    assert str(tmp_path / "nowhere" / "examples") in reason
    assert "CILIATE_SHARED" in reason
    # The packaged copies still serve the two files the package ships.
    assert _paths.example_file("cluster.yaml").name == "cluster.yaml"
