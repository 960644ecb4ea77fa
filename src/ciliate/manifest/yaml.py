"""Safe multi-document YAML loading with source positions.

Role: turn the text (or bytes) of one manifest file into plain JSON-compatible values
(dict / list / str / int / float / bool / None), one per YAML document, each with a
``SourceMap`` from field paths (``spec.ingress[0].from[1].ipBlock.cidr``) to 1-based
(line, col). Every problem becomes a ``Diagnostic`` with file:line:col; nothing here
raises on any input (a hypothesis test feeds it arbitrary text and bytes).

Safety, in the spirit of ``yaml.safe_load`` but stricter, because manifests come from
users and a bad one must never take the CLI down:

1. Only the core schema tags are accepted (str, int, float, bool, null, map, seq, plus
   timestamps and merge keys that Kubernetes' YAML reader also understands); any other
   tag (``!!python/object``, ``!custom``) is refused.
2. Size caps: 5 MiB per file, 1 MiB per document, nesting depth 100, and 100 000 nodes
   per document counted *after* alias expansion (the "billion laughs" bomb).
3. Nesting depth is measured on the event stream before composing, because libyaml's
   composer recurses in C and a deeply nested flow sequence would crash the process.

Like sigs.k8s.io/yaml (YAML -> JSON), timestamps stay strings, mapping keys become
strings, and a key repeated in one mapping is an error.

Inputs: text or bytes and a file name. Outputs: ``YamlResult``. Imports only
``ciliate.errors`` of ciliate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from ciliate.errors import Diagnostic

MAX_FILE_BYTES = 5 * 1024 * 1024
MAX_DOC_BYTES = 1024 * 1024
MAX_DEPTH = 100
MAX_NODES = 100_000

_T = "tag:yaml.org,2002:"
_SCALAR_TAGS = frozenset(_T + t for t in ("str", "int", "float", "bool", "null", "timestamp"))
_MAP_TAG = _T + "map"
_SEQ_TAG = _T + "seq"
_MERGE_TAG = _T + "merge"

try:  # libyaml is much faster; the pure-Python loader is the same grammar.
    _Loader: type[Any] = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Loader = yaml.SafeLoader


@dataclass(frozen=True, slots=True)
class SourceMap:
    """Where each field of one document sits in its file.

    ``positions`` maps a field path to the (line, col) of its value when the value is a
    scalar or flow collection, else of its key; "" is the document itself.
    """

    start_line: int
    positions: Mapping[str, tuple[int, int]] = field(default_factory=dict)

    def locate(self, path: str) -> tuple[int, int]:
        """The position of ``path``, or of its nearest ancestor that has one."""
        p = path
        while True:
            if p in self.positions:
                return self.positions[p]
            if not p:
                return (self.start_line, 1)
            p = _parent(p)

    def lines_under(self, prefix: str) -> dict[str, int]:
        """Field path -> line for every path under ``prefix`` (used for provenance)."""
        out: dict[str, int] = {}
        for p, (line, _col) in self.positions.items():
            if p == prefix or p.startswith(prefix + ".") or p.startswith(prefix + "["):
                out[p] = line
        return out


def _parent(path: str) -> str:
    """``a.b[2].c`` -> ``a.b[2]`` -> ``a.b`` -> ``a`` -> ``""``."""
    if path.endswith("]"):
        return path[: path.rindex("[")]
    dot = path.rfind(".")
    return path[:dot] if dot >= 0 else ""


def join_path(base: str, key: str | int) -> str:
    """Append a map key or a list index to a field path."""
    if isinstance(key, int):
        return f"{base}[{key}]"
    return f"{base}.{key}" if base else key


@dataclass(frozen=True, slots=True)
class YamlDoc:
    value: Any  # JSON-compatible
    source: SourceMap
    index: int  # 0-based position of the document in its file


@dataclass(slots=True)
class YamlResult:
    docs: list[YamlDoc] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)


class _Refused(Exception):
    """A document is refused; carries the diagnostic. Internal to this module."""

    def __init__(self, diag: Diagnostic) -> None:
        super().__init__(diag.reason)
        self.diag = diag


def load_yaml(data: str | bytes, filename: str = "<input>") -> YamlResult:
    """Parse every document of ``data``; never raises."""
    result = YamlResult()
    try:
        _load(data, filename, result)
    except Exception as e:  # the contract is "never crash": report anything unforeseen
        result.diagnostics.append(
            Diagnostic(f"cannot read YAML: {type(e).__name__}: {e}", file=filename)
        )
    return result


def _load(data: str | bytes, filename: str, result: YamlResult) -> None:
    size = len(data) if isinstance(data, bytes) else len(data.encode("utf-8", "surrogatepass"))
    if size > MAX_FILE_BYTES:
        result.diagnostics.append(
            Diagnostic(
                f"file is {size} bytes, over the limit of {MAX_FILE_BYTES} bytes",
                file=filename,
                line=1,
                col=1,
            )
        )
        return
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            result.diagnostics.append(
                Diagnostic(f"not UTF-8 text: byte {e.start}: {e.reason}", file=filename)
            )
            return
    else:
        text = data.removeprefix("\ufeff")
    if not _depth_ok(text, filename, result):
        return
    loader = _Loader(text)
    try:
        index = 0
        while loader.check_node():
            node = loader.get_node()
            if node is None:  # pragma: no cover - check_node said there is one
                break
            _add_document(node, index, filename, result)
            index += 1
    except yaml.YAMLError as e:
        result.diagnostics.append(_yaml_error(e, filename))
    finally:
        loader.dispose()


def _depth_ok(text: str, filename: str, result: YamlResult) -> bool:
    """Check nesting depth on the event stream (non-recursive) before composing.

    Syntax errors found here are reported here, with the parser's position.
    """
    depth = 0
    try:
        for ev in yaml.parse(text, Loader=_Loader):
            if isinstance(ev, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    m = ev.start_mark
                    result.diagnostics.append(
                        Diagnostic(
                            f"document nested deeper than {MAX_DEPTH} levels",
                            file=filename,
                            line=m.line + 1 if m else 0,
                            col=m.column + 1 if m else 0,
                        )
                    )
                    return False
            elif isinstance(ev, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError as e:
        result.diagnostics.append(_yaml_error(e, filename))
        return False
    return True


def _yaml_error(e: yaml.YAMLError, filename: str) -> Diagnostic:
    if isinstance(e, yaml.MarkedYAMLError):
        mark = e.problem_mark or e.context_mark
        context = str(e.context or "")
        cm = e.context_mark
        if context and cm is not None and mark is not None and cm.line != mark.line:
            context += f" (started at line {cm.line + 1}, column {cm.column + 1})"
        reason = ": ".join(x for x in (context, str(e.problem or "")) if x)
        reason = reason or str(e).splitlines()[0]
        return Diagnostic(
            f"YAML syntax error: {reason}",
            file=filename,
            line=mark.line + 1 if mark else 0,
            col=mark.column + 1 if mark else 0,
        )
    if isinstance(e, yaml.reader.ReaderError):
        return Diagnostic(
            f"YAML syntax error: unacceptable character #x{e.character:04x} at position "
            f"{e.position}: {e.reason}",
            file=filename,
        )
    return Diagnostic(f"YAML syntax error: {e}", file=filename)


def _add_document(node: yaml.Node, index: int, filename: str, result: YamlResult) -> None:
    start = node.start_mark.line + 1
    span = node.end_mark.index - node.start_mark.index
    if span > MAX_DOC_BYTES:
        result.diagnostics.append(
            Diagnostic(
                f"document is {span} characters, over the limit of {MAX_DOC_BYTES}",
                file=filename,
                line=start,
                col=node.start_mark.column + 1,
            )
        )
        return
    builder = _Builder(filename)
    try:
        value = builder.build(node, "", 0, scalar_pos=True)
    except _Refused as r:
        result.diagnostics.append(r.diag)
        return
    result.docs.append(YamlDoc(value, SourceMap(start, builder.positions), index))


class _Builder:
    """Node graph -> JSON-compatible values, recording positions, counting nodes."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.positions: dict[str, tuple[int, int]] = {}
        self.count = 0
        self._open: set[int] = set()  # nodes being built: an alias to one is a cycle
        self._scalars = yaml.constructor.SafeConstructor()

    def _refuse(self, node: yaml.Node, reason: str, path: str) -> _Refused:
        return _Refused(
            Diagnostic(
                reason,
                file=self.filename,
                line=node.start_mark.line + 1,
                col=node.start_mark.column + 1,
                path=path,
            )
        )

    def build(self, node: yaml.Node, path: str, depth: int, scalar_pos: bool) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise self._refuse(node, f"more than {MAX_NODES} values after expanding aliases", "")
        if id(node) in self._open:
            raise self._refuse(node, "recursive alias (a value contains itself)", _parent(path))
        if depth > MAX_DEPTH:
            raise self._refuse(node, f"nested deeper than {MAX_DEPTH} levels", "")
        flow = isinstance(node, yaml.ScalarNode) or bool(getattr(node, "flow_style", False))
        if path not in self.positions or (scalar_pos and flow):
            self.positions[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, path)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQ_TAG:
                raise self._refuse(node, f"YAML tag {_show_tag(node.tag)} is not allowed", path)
            self._open.add(id(node))
            try:
                return [
                    self.build(item, join_path(path, i), depth + 1, scalar_pos=True)
                    for i, item in enumerate(node.value)
                ]
            finally:
                self._open.discard(id(node))
        if isinstance(node, yaml.MappingNode):
            if node.tag != _MAP_TAG:
                raise self._refuse(node, f"YAML tag {_show_tag(node.tag)} is not allowed", path)
            self._open.add(id(node))
            try:
                return self._mapping(node, path, depth)
            finally:
                self._open.discard(id(node))
        raise self._refuse(node, "unsupported YAML node", path)  # pragma: no cover

    def _scalar(self, node: yaml.ScalarNode, path: str) -> Any:
        tag = node.tag
        if tag not in _SCALAR_TAGS:
            raise self._refuse(node, f"YAML tag {_show_tag(tag)} is not allowed", path)
        if tag in (_T + "str", _T + "timestamp"):
            # Kubernetes reads YAML through JSON: timestamps stay the text they were.
            return str(node.value)
        try:
            value = self._scalars.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError) as e:
            raise self._refuse(node, f"invalid {tag.removeprefix(_T)}: {e}", path) from None
        if isinstance(value, float) and not math.isfinite(value):
            raise self._refuse(node, f"{node.value!r} is not a finite number", path)
        return value

    def _mapping(self, node: yaml.MappingNode, path: str, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        merged: dict[str, Any] = {}
        for knode, vnode in node.value:
            if knode.tag == _MERGE_TAG:
                # "<<: *base" or "<<: [*a, *b]": keys given here win over merged ones.
                sources = vnode.value if isinstance(vnode, yaml.SequenceNode) else [vnode]
                for src in sources:
                    v = self.build(src, path, depth + 1, scalar_pos=False)
                    if not isinstance(v, dict):
                        raise self._refuse(vnode, "merge key needs a mapping", path)
                    for k, x in v.items():
                        merged.setdefault(k, x)
                continue
            if not isinstance(knode, yaml.ScalarNode):
                raise self._refuse(knode, "mapping keys must be scalars", path)
            key = self._scalar(knode, path)
            skey = _key_text(key)
            sub = join_path(path, skey)
            if skey in out:
                raise self._refuse(knode, f'mapping key "{skey}" already defined', sub)
            # A block collection is located at its key, a scalar at its value.
            self.positions[sub] = (knode.start_mark.line + 1, knode.start_mark.column + 1)
            out[skey] = self.build(vnode, sub, depth + 1, scalar_pos=True)
        for k, x in merged.items():
            out.setdefault(k, x)
        return out


def _key_text(key: Any) -> str:
    # sigs.k8s.io/yaml turns non-string keys into their JSON text.
    if key is None:
        return "null"
    if isinstance(key, bool):
        return "true" if key else "false"
    return str(key)


def _show_tag(tag: str) -> str:
    return "!!" + tag.removeprefix(_T) if tag.startswith(_T) else tag
