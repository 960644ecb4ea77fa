"""cli.jsonpath: the subset of kubectl's -o jsonpath that get supports."""

from __future__ import annotations

import pytest

from ciliate.cli.jsonpath import evaluate, render

DATA = {
    "items": [
        {"metadata": {"name": "a", "labels": {"app": "x"}}, "status": {"podIP": "10.0.0.1"}},
        {"metadata": {"name": "b"}, "status": {"podIP": "10.0.0.2"}, "spec": {"ok": True}},
    ]
}


def test_paths() -> None:
    assert evaluate(".items[*].metadata.name", DATA) == ["a", "b"]
    assert evaluate("$.items[-1].metadata.name", DATA) == ["b"]
    assert evaluate(".items[0].metadata.labels['app']", DATA) == ["x"]
    assert evaluate(".items[5].metadata", DATA) == []
    assert evaluate(".items[*].spec.ok", DATA) == [True]


def test_templates() -> None:
    assert render("{.items[*].metadata.name}", DATA) == "a b"
    assert render('{range .items[*]}{.metadata.name}{"\\t"}{.status.podIP}{"\\n"}{end}', DATA) == (
        "a\t10.0.0.1\nb\t10.0.0.2\n"
    )
    assert render("name={.items[1].metadata.name}\\n", DATA) == "name=b\n"
    assert render("{.items[1].spec}", DATA) == '{"ok":true}'


@pytest.mark.parametrize("bad", ["{.items", "{range .items[*]}x", "{end}", "{.a b}"])
def test_errors(bad: str) -> None:
    with pytest.raises(ValueError):
        render(bad, DATA)
