"""manifest.yaml: values, positions, and every refusal as a located diagnostic."""

from __future__ import annotations

from ciliate.manifest.yaml import MAX_DOC_BYTES, MAX_FILE_BYTES, SourceMap, load_yaml

POLICY = """\
# a comment
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: web
spec:
  ingress:
  - from:
    - podSelector: {}
    - ipBlock:
        cidr: 10.0.0.0/33
---
kind: ConfigMap
"""


def test_values_are_plain_json_compatible() -> None:
    r = load_yaml("a: 1\nb: [true, null, 1.5, x]\nc: 2020-01-01\n80: port\n")
    assert not r.diagnostics
    assert r.docs[0].value == {"a": 1, "b": [True, None, 1.5, "x"], "c": "2020-01-01", "80": "port"}


def test_positions_of_fields_are_one_based_line_and_column() -> None:
    r = load_yaml(POLICY, "web.yaml")
    assert not r.diagnostics
    src = r.docs[0].source
    assert src.start_line == 2
    # a scalar is located at its value
    assert src.positions["spec.ingress[0].from[1].ipBlock.cidr"] == (11, 15)
    assert src.positions["kind"] == (3, 7)
    # a block collection at its key
    assert src.positions["spec.ingress"] == (7, 3)
    assert src.positions["spec.ingress[0].from[0]"] == (9, 7)
    assert r.docs[1].source.start_line == 13
    assert r.docs[1].index == 1


def test_locate_falls_back_to_the_nearest_ancestor() -> None:
    src = load_yaml(POLICY).docs[0].source
    assert src.locate("spec.ingress[0].from[1].ipBlock.except[3]") == (10, 7)
    assert SourceMap(5).locate("spec.x") == (5, 1)


def test_syntax_error_has_the_parser_position() -> None:
    r = load_yaml("a: 1\nb: [1, 2\nc: 3\n", "bad.yaml")
    assert not r.docs
    (d,) = r.diagnostics
    assert d.file == "bad.yaml" and d.line == 3 and d.col >= 1
    assert "YAML syntax error" in d.reason


def test_python_tags_are_refused() -> None:
    r = load_yaml("a: !!python/object/apply:os.system ['true']\n", "t.yaml")
    (d,) = r.diagnostics
    assert d.render() == "t.yaml:1:4: a: YAML tag !!python/object/apply:os.system is not allowed"
    assert not r.docs


def test_local_tags_and_binary_are_refused() -> None:
    assert "!custom" in load_yaml("a: !custom x\n").diagnostics[0].reason
    assert "!!binary" in load_yaml("a: !!binary aGVsbG8=\n").diagnostics[0].reason


def test_explicit_core_tags_are_fine() -> None:
    r = load_yaml("a: !!str 80\nb: !!int '3'\n")
    assert r.docs[0].value == {"a": "80", "b": 3}


def test_duplicate_keys_are_an_error() -> None:
    (d,) = load_yaml("a: 1\nb: 2\na: 3\n").diagnostics
    assert (d.line, d.path) == (3, "a") and "already defined" in d.reason


def test_merge_keys_merge_without_overriding() -> None:
    r = load_yaml("base: &b {x: 1, y: 2}\nobj:\n  <<: *b\n  y: 3\n")
    assert r.docs[0].value["obj"] == {"x": 1, "y": 3}


def test_billion_laughs_is_refused() -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        prev, cur = chr(96 + i), chr(97 + i)
        lines.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 10) + "]")
    r = load_yaml("\n".join(lines) + "\n")
    assert not r.docs
    assert "after expanding aliases" in r.diagnostics[0].reason


def test_recursive_alias_is_refused() -> None:
    r = load_yaml("a: &a [1, *a]\n")
    assert "recursive alias" in r.diagnostics[0].reason


def test_deep_nesting_is_refused_without_crashing() -> None:
    # libyaml's composer recurses in C: this input would crash the interpreter.
    r = load_yaml("[" * 100_000 + "]" * 100_000)
    assert "nested deeper" in r.diagnostics[0].reason


def test_oversized_document_and_file() -> None:
    big = "a: '" + "x" * (MAX_DOC_BYTES + 10) + "'\n"
    r = load_yaml("kind: Small\n---\n" + big, "big.yaml")
    assert [d.value for d in r.docs] == [{"kind": "Small"}]
    (d,) = r.diagnostics
    assert d.line == 3 and "over the limit" in d.reason
    r = load_yaml(b"a: 1\n" * (MAX_FILE_BYTES // 5 + 1), "huge.yaml")
    assert not r.docs and "over the limit" in r.diagnostics[0].reason


def test_bytes_not_utf8_and_control_characters() -> None:
    assert "not UTF-8" in load_yaml(b"a: \xff\n").diagnostics[0].reason
    assert load_yaml(b"\xef\xbb\xbfa: 1\n").docs[0].value == {"a": 1}
    assert "unacceptable character" in load_yaml("a: \x00\n").diagnostics[0].reason


def test_non_finite_numbers_are_refused() -> None:
    assert "finite" in load_yaml("a: .nan\n").diagnostics[0].reason


def test_empty_input_gives_no_documents() -> None:
    r = load_yaml("")
    assert r.docs == [] and r.diagnostics == []
    assert load_yaml("---\n").docs[0].value is None
