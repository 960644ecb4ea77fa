"""The L7 proxy's rules file: what the agent tells a node's proxy, as JSON.

Role: the agent compiles policy into per-endpoint maps (``desired.PolicyMap``); the
kernel redirects a connection to the node's proxy when the chosen entry has a proxy
port (``bpf/lib/proxy.h``). The proxy must then apply *that entry's* L7 rules, so it
needs the same map and the same lookup: ``compute_rules(node)`` keeps, for every local
endpoint whose map holds at least one redirect entry, its whole map (a deny or a more
specific allow of another identity changes which entry the lookup chooses), keyed by
the endpoint's IP. The proxy runs ``control.mapstate.lookup`` on it -- the lookup both
datapaths use -- and ``control.l7.http_allowed`` on the entry's rules, the model's
matcher, so model and kernel cannot disagree on a request.

``RulesCache`` keeps the per-endpoint documents between reconcile rounds and
recomputes only the endpoints whose policy map changed (``MapChange``s of
``cilium_policy_v2_NNNNN``), so a cluster without L7 policy pays one set lookup per
change. ``write_rules`` replaces the file atomically (rename); ``load_rules`` is the
proxy's side.

File: ``{"version": 1, "node": NAME, "endpoints": {IP: {"id", "identity", "pod",
"labels", "entries": [[identity, egress, proto, dport, prefix, deny, proxy_port,
auth, [l7 rules], [[kind, namespace, name], ...]], ...]}}, "pods": {IP: "ns/name"}}``;
``pods`` names every endpoint of a node that runs a proxy, so its L7 records name the
local peers too (kept up to date only for those nodes).

Inputs: ``desired.NodeState`` and ``MapChange``s; outputs: JSON files and
``EndpointRules``. Must not import cli, agent or the control engine.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ciliate.desired import (
    EndpointState,
    L7Rule,
    MapChange,
    NodeState,
    PolicyEntry,
    PolicyKey,
    PolicyMap,
    Provenance,
    parse_policy_map_name,
)

VERSION = 1
Doc = dict[str, Any]


def _rule_doc(r: L7Rule) -> Doc:
    d: Doc = {"kind": r.kind}
    for k in ("method", "path", "host", "match_name", "match_pattern"):
        v = getattr(r, k)
        if v:
            d[k] = v
    if r.headers:
        d["headers"] = list(r.headers)
    return d


def _rule_of(d: Mapping[str, Any]) -> L7Rule:
    return L7Rule(
        kind=str(d.get("kind", "http")),
        method=str(d.get("method", "")),
        path=str(d.get("path", "")),
        host=str(d.get("host", "")),
        headers=tuple(str(h) for h in d.get("headers", ())),
        match_name=str(d.get("match_name", "")),
        match_pattern=str(d.get("match_pattern", "")),
    )


def has_redirect(pmap: PolicyMap) -> bool:
    return any(e.proxy_port for e in pmap.values())


def endpoint_doc(ep: EndpointState, pmap: PolicyMap) -> Doc:
    entries = [
        [
            k.identity, int(k.egress), k.protocol, k.dport, k.port_prefix_len,
            int(e.deny), e.proxy_port, e.auth_type,
            [_rule_doc(r) for r in e.l7_rules],
            [[p.kind, p.namespace, p.name] for p in e.provenance],
        ]
        for k, e in sorted(pmap.items())
    ]  # fmt: skip
    return {
        "id": ep.id,
        "identity": ep.identity,
        "pod": ep.pod,
        "labels": list(ep.labels),
        "entries": entries,
    }


@dataclass(frozen=True, slots=True)
class EndpointRules:
    """One endpoint as the proxy sees it."""

    id: int
    identity: int
    pod: str
    labels: tuple[str, ...]
    policy: Mapping[PolicyKey, PolicyEntry]


def parse_endpoint(d: Mapping[str, Any]) -> EndpointRules:
    pmap: dict[PolicyKey, PolicyEntry] = {}
    for row in d.get("entries", ()):
        ident, egress, proto, dport, plen, deny, pport, auth, l7, prov = row
        key = PolicyKey(int(ident), bool(egress), int(proto), int(dport), int(plen))
        pmap[key] = PolicyEntry(
            deny=bool(deny),
            proxy_port=int(pport),
            auth_type=int(auth),
            l7_rules=tuple(_rule_of(r) for r in l7),
            provenance=tuple(Provenance(str(k), str(ns), str(n)) for k, ns, n in prov),
        )
    return EndpointRules(
        int(d["id"]),
        int(d["identity"]),
        str(d.get("pod", "")),
        tuple(str(x) for x in d.get("labels", ())),
        pmap,
    )


def compute_rules(node: NodeState) -> dict[str, Doc]:
    """IP -> endpoint document, for the node's endpoints that redirect to the proxy."""
    out: dict[str, Doc] = {}
    for ep_id, pmap in node.policy.items():
        ep = node.endpoints.get(ep_id)
        if ep is not None and has_redirect(pmap):
            out[str(ep.ip)] = endpoint_doc(ep, pmap)
    return out


class RulesCache:
    """Per node: the endpoint documents, recomputed only where policy changed."""

    def __init__(self) -> None:
        self.nodes: dict[str, dict[int, tuple[str, Doc]]] = {}
        self.pods: dict[str, dict[str, str]] = {}  # node -> IP -> pod, proxied nodes only

    def _names(self, node: NodeState) -> bool:
        """Refresh the pod names of a proxied node; True when they changed."""
        if not self.needs_proxy(node.name):
            return self.pods.pop(node.name, None) is not None
        names = {str(ep.ip): ep.pod for ep in node.endpoints.values() if ep.pod}
        if self.pods.get(node.name) == names:
            return False
        self.pods[node.name] = names
        return True

    def load(self, nodes: Iterable[NodeState]) -> set[str]:
        """A full computation (agent start). Returns every node name."""
        self.nodes = {}
        self.pods = {}
        names = set()
        for node in nodes:
            names.add(node.name)
            docs = self.nodes.setdefault(node.name, {})
            for ip, d in compute_rules(node).items():
                docs[int(d["id"])] = (ip, d)
            self._names(node)
        return names

    def update(self, nodes: Mapping[str, NodeState], changes: Iterable[MapChange]) -> set[str]:
        """Recompute the endpoints whose policy map changed, and drop endpoints and nodes
        that are gone. Returns the names of the nodes whose document changed."""
        touched: set[tuple[str, int]] = set()
        for c in changes:
            ep_id = parse_policy_map_name(c.map)
            if ep_id is not None:
                touched.add((c.node, ep_id))
        for name, docs in self.nodes.items():  # endpoints re-addressed or removed
            node = nodes.get(name)
            for ep_id, (ip, _) in docs.items():
                ep = node.endpoints.get(ep_id) if node is not None else None
                if ep is None or str(ep.ip) != ip:
                    touched.add((name, ep_id))
        changed: set[str] = set()
        for name, ep_id in touched:
            docs = self.nodes.setdefault(name, {})
            old = docs.get(ep_id)
            node = nodes.get(name)
            ep = node.endpoints.get(ep_id) if node is not None else None
            pmap = node.policy.get(ep_id) if node is not None else None
            if ep is not None and pmap is not None and has_redirect(pmap):
                new = (str(ep.ip), endpoint_doc(ep, pmap))
                if new != old:
                    docs[ep_id] = new
                    changed.add(name)
            elif old is not None:
                del docs[ep_id]
                changed.add(name)
        for name in [n for n in self.nodes if n not in nodes]:
            del self.nodes[name]
            self.pods.pop(name, None)
        # pod names: only nodes that run a proxy now or did (a cluster without L7 policy
        # pays nothing per round)
        for name in {n for n, d in self.nodes.items() if d} | set(self.pods):
            node = nodes.get(name)
            if node is not None and self._names(node):
                changed.add(name)
        return changed

    def document(self, node: str) -> Doc:
        docs = self.nodes.get(node, {})
        return {
            "version": VERSION,
            "node": node,
            "endpoints": {ip: d for ip, d in sorted(docs.values(), key=lambda t: t[0])},
            "pods": dict(sorted(self.pods.get(node, {}).items())),
        }

    def needs_proxy(self, node: str) -> bool:
        return bool(self.nodes.get(node))


def write_rules(path: Path, doc: Doc) -> bool:
    """Replace ``path`` atomically; False when it already holds ``doc``."""
    text = json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n"
    try:
        if path.read_text() == text:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return True


def load_document(path: Path) -> tuple[dict[str, EndpointRules], dict[str, str]]:
    """(IP -> rules, IP -> pod); an absent file is no rules. A malformed file raises
    ValueError naming the file and the reason."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return {}, {}
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}:{e.colno}: {e.msg}") from e
    if not isinstance(doc, dict) or doc.get("version") != VERSION:
        raise ValueError(f"{path}: version: expected {VERSION}")
    try:
        rules = {str(ip): parse_endpoint(d) for ip, d in (doc.get("endpoints") or {}).items()}
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: endpoints: {e!r}") from e
    pods = doc.get("pods") or {}
    if not isinstance(pods, dict):
        raise ValueError(f"{path}: pods: expected an object")
    return rules, {str(k): str(v) for k, v in pods.items()}


def load_rules(path: Path) -> dict[str, EndpointRules]:
    """IP -> rules (``load_document`` without the pod names)."""
    return load_document(path)[0]
