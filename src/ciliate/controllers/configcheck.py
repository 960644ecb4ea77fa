"""Checks shared by the two cluster file formats (cluster.yaml in ``clusterconfig``,
kind's own file in ``kindconfig``): a collector of located diagnostics, the value
checks with their wording, and what both formats take from kind (the cluster name rule,
node addresses handed out after the bridge's gateway).

Inputs: parsed YAML values and their ``SourceMap``. Outputs: ``Diagnostic``s collected
in ``ConfigChecker.diags`` (every problem of a file, before failing). Pure; must not
import cli, agent, datapath or observe.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from ciliate.errors import Diagnostic
from ciliate.manifest.yaml import SourceMap

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# kind names node containers NAME-control-plane2 ...: its cluster names stay short.
KIND_NAME_MAX = 50


class ConfigChecker:
    """Collects diagnostics for one cluster file, located through its source map."""

    def __init__(self, filename: str, source: SourceMap | None) -> None:
        self.filename = filename
        self.source = source
        self.diags: list[Diagnostic] = []

    def add(self, path: str, reason: str) -> None:
        line, col = self.source.locate(path) if self.source else (0, 0)
        self.diags.append(
            Diagnostic(reason, file=self.filename, line=line, col=col, kind="Cluster", path=path)
        )

    def mapping(self, value: Any, path: str) -> Mapping[str, Any] | None:
        if value is None:
            return None
        if not isinstance(value, Mapping):
            self.add(path, f"must be a mapping, not {type_name(value)}")
            return None
        return value

    def keys(
        self, value: Mapping[str, Any], allowed: frozenset[str], path: str, where: str = ""
    ) -> None:
        """Every key not in ``allowed`` is an unknown field; the reason ends with
        ``where`` (e.g. "in a kind cluster file"), else lists the known fields."""
        for k in value:
            if k not in allowed:
                sub = f"{path}.{k}" if path else str(k)
                tail = where or f"(known: {', '.join(sorted(allowed))})"
                self.add(sub, f'unknown field "{k}" {tail}')

    def string(self, m: Mapping[str, Any], key: str, path: str, required: bool = False) -> str:
        sub = f"{path}.{key}" if path else key
        v = m.get(key)
        if v is None or v == "":
            if required:
                self.add(sub, "required field is missing")
            return ""
        if not isinstance(v, str):
            self.add(sub, f"must be a string, not {type_name(v)}")
            return ""
        return v

    def integer(self, m: Mapping[str, Any], key: str, path: str, lo: int, hi: int) -> int | None:
        sub = f"{path}.{key}"
        v = m.get(key)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int):
            self.add(sub, f"must be an integer, not {type_name(v)}")
            return None
        if not lo <= v <= hi:
            self.add(sub, f"Invalid value: {v}: must be between {lo} and {hi}")
            return None
        return v

    def cidr(self, text: str, path: str) -> IPv4Network | None:
        if not text:
            return None
        try:
            return IPv4Network(text)
        except ValueError as e:
            self.add(path, f'invalid CIDR "{text}": {ip_reason(e)}')
            return None

    def address(self, text: str, path: str) -> IPv4Address | None:
        if not text:
            return None
        try:
            return IPv4Address(text)
        except ValueError as e:
            self.add(path, f'invalid IPv4 address "{text}": {ip_reason(e)}')
            return None

    def choice(self, m: Mapping[str, Any], key: str, path: str, allowed: tuple[str, ...]) -> None:
        v = self.string(m, key, path)
        if v and v not in allowed:
            self.add(
                f"{path}.{key}",
                f'Unsupported value: "{v}": supported values: '
                + ", ".join(f'"{a}"' for a in allowed),
            )


def type_name(v: Any) -> str:
    if isinstance(v, Mapping):
        return "a mapping"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, float):
        return "a number"
    if v is None:
        return "null"
    return "a string"


def ip_reason(e: ValueError) -> str:
    msg = str(e)
    if "has host bits set" in msg:
        return "host bits set"
    return msg.split(" (", 1)[0].rstrip(".") or "malformed"


def is_kind_cluster_name(name: str) -> bool:
    """A name kind accepts for a cluster: a lowercase RFC 1123 label of at most 50."""
    return len(name) <= KIND_NAME_MAX and DNS1123_LABEL.match(name) is not None


def kind_node_addresses(node_network: str) -> Iterator[IPv4Address]:
    """Node addresses as kind hands them out: the node network's hosts from .2 on (.1
    is the docker bridge's gateway)."""
    hosts = IPv4Network(node_network).hosts()
    next(hosts)
    return hosts
