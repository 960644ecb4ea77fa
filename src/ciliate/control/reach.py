"""Reachability: the verdict for every ordered pair of pods, from the compiled maps.

Role: ``build_view`` turns typed objects (a store snapshot or manifests) into one
consistent ``ClusterView`` (namespaces, pods with addresses, identities, policies);
``reach_matrix`` walks, for each pair, what the datapath does for a new connection:
egress lookup in the source endpoint's map with the destination's identity, then
ingress lookup in the destination's map with the source's identity
(``mapstate.lookup``), and the proxy's L7 decision when an entry redirects and the
probe carries an HTTP request (its Host is the destination's address,
``explain.request_host``, as in the model datapath). A caller with a full model datapath passes
``verdict`` (e.g. ``datapath.sim.probe``) instead. A pod to itself is always allowed.

Speed: verdicts depend only on (map, peer identity), so pods are grouped into classes
of (identity, compiled map) and each class pair is looked up once (with an HTTP request,
destination classes are per address too, since an L7 rule may name the Host); a 1,000-pod matrix
is a few thousand lookups plus the expansion.

Sans-IO; imports the model, ``desired`` and ``control``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from ciliate.control.explain import Evaluator, namespace_labels, request_host
from ciliate.control.identity import allocate_identities, pod_identity_labels, reserved_identities
from ciliate.control.l7 import HTTP_FORBIDDEN, http_allowed
from ciliate.control.mapstate import lookup
from ciliate.control.policy import PolicyInputs, PolicyResult, compute_policy
from ciliate.desired import Identity, PolicyMap
from ciliate.model.cluster import ClusterConfig
from ciliate.model.core import Namespace, Pod, Service
from ciliate.model.meta import Doc

POLICY_KINDS = ("NetworkPolicy", "CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy")
PROTO_NUM = {"TCP": 6, "UDP": 17, "SCTP": 132, "ICMP": 1}


@dataclass(frozen=True, slots=True)
class ClusterView:
    config: ClusterConfig
    namespaces: tuple[Namespace, ...]
    pods: tuple[Pod, ...]
    policies: tuple[Doc, ...]
    services: tuple[Service, ...] = ()
    endpoint_slices: tuple[Doc, ...] = ()
    pod_ips: Mapping[str, str] = field(default_factory=dict)
    identities: Mapping[int, Identity] = field(default_factory=dict)
    pod_identity: Mapping[str, int] = field(default_factory=dict)

    def inputs(self) -> PolicyInputs:
        return PolicyInputs(
            self.config,
            self.namespaces,
            self.pods,
            self.pod_identity,
            self.identities,
            self.policies,
            self.services,
            self.endpoint_slices,
            self.pod_ips,
        )

    def evaluator(self) -> Evaluator:
        return Evaluator(
            self.config,
            self.namespaces,
            self.pods,
            self.policies,
            self.services,
            self.endpoint_slices,
            self.pod_ips,
        )


def _with_namespace(doc: Doc, default: str = "default") -> Doc:
    m = doc.get("metadata") or {}
    if m.get("namespace") or doc.get("kind") == "CiliumClusterwideNetworkPolicy":
        return doc
    return {**doc, "metadata": {**m, "namespace": default}}


def build_view(config: ClusterConfig, docs: Sequence[Doc]) -> ClusterView:
    """A consistent view from documents: Namespaces (implicit ones added), Pods,
    policies, Services, EndpointSlices. Pods without ``status.podIP`` get addresses
    from the cluster pod CIDR in order (only ipBlock rules look at them)."""
    ns_docs: dict[str, Doc] = {}
    pods: list[Pod] = []
    policies: list[Doc] = []
    services: list[Service] = []
    slices: list[Doc] = []
    for d in docs:
        kind = d.get("kind")
        if kind == "Namespace":
            ns_docs[str((d.get("metadata") or {}).get("name", ""))] = d
        elif kind == "Pod":
            pods.append(Pod.from_doc(_with_namespace(d)))
        elif kind in POLICY_KINDS:
            policies.append(_with_namespace(d))
        elif kind == "Service":
            services.append(Service.from_doc(_with_namespace(d)))
        elif kind == "EndpointSlice":
            slices.append(_with_namespace(d))
    for p in pods:
        ns_docs.setdefault(
            p.meta.namespace,
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": p.meta.namespace}},
        )
    namespaces = tuple(Namespace.from_doc(d) for d in ns_docs.values())
    ns_by_name = {n.meta.name: n for n in namespaces}
    # Addresses: given ones kept, the others allocated after the highest used.
    ips: dict[str, str] = {p.key: p.status.pod_ip for p in pods if p.status.pod_ip}
    used = set(ips.values())
    pool = IPv4Network(config.pod_cidr or "10.10.0.0/16")
    nxt = int(pool.network_address) + 10
    for p in pods:
        if p.key in ips:
            continue
        while str(IPv4Address(nxt)) in used:
            nxt += 1
        ips[p.key] = str(IPv4Address(nxt))
        used.add(ips[p.key])
        nxt += 1
    cluster = config.name or "default"
    labels_of = {
        p.key: pod_identity_labels(
            p, namespace_labels(ns_by_name.get(p.meta.namespace), p.meta.namespace), cluster
        )
        for p in pods
    }
    alloc = allocate_identities(labels_of.values())
    identities: dict[int, Identity] = dict(reserved_identities())
    for labels, num in alloc.items():
        identities[num] = Identity(num, labels)
    return ClusterView(
        config=config,
        namespaces=namespaces,
        pods=tuple(pods),
        policies=tuple(policies),
        services=tuple(services),
        endpoint_slices=tuple(slices),
        pod_ips=ips,
        identities=identities,
        pod_identity={k: alloc[v] for k, v in labels_of.items()},
    )


@dataclass(frozen=True, slots=True)
class Matrix:
    port: int
    protocol: str
    pods: tuple[str, ...]
    allowed: Mapping[str, Mapping[str, bool]]

    def to_json(self) -> dict[str, Any]:
        return {
            "port": self.port,
            "protocol": self.protocol,
            "pods": list(self.pods),
            "matrix": {a: dict(self.allowed[a]) for a in self.pods},
        }

    def table(self) -> str:
        """The netpol e2e truth table: rows from, columns to, ``.`` allowed, ``X`` denied."""
        w = max((len(p) for p in self.pods), default=1)
        head = " " * w + "  " + " ".join(p.ljust(w) for p in self.pods)
        lines = [head.rstrip()]
        for a in self.pods:
            cells = " ".join(("." if self.allowed[a][b] else "X").ljust(w) for b in self.pods)
            lines.append((a.ljust(w) + "  " + cells).rstrip())
        return "\n".join(lines)


PairVerdict = Callable[[str, str], bool]


def map_verdict(
    map_src: PolicyMap | None,
    map_dst: PolicyMap | None,
    src_identity: int,
    dst_identity: int,
    proto: int,
    port: int,
    http: tuple[str, str] | None = None,
    host: str = "",
) -> tuple[bool, int]:
    """(allowed, drop reason or 403) for a new connection between two local endpoints;
    ``host`` is the Host of the HTTP request (``explain.request_host`` of the
    destination)."""
    for pmap, ident, egress in ((map_src, dst_identity, True), (map_dst, src_identity, False)):
        if pmap is None:
            continue
        v = lookup(pmap, ident, egress, proto, port)
        if not v.allowed:
            return False, v.drop_reason
        if v.redirect and http is not None and v.entry is not None:
            rules = v.entry.l7_rules
            if any(r.kind == "http" for r in rules) and http_allowed(rules, *http, host) is None:
                return False, HTTP_FORBIDDEN
    return True, 0


def remote_identity(view: ClusterView, result: PolicyResult, what: str) -> tuple[int, str | None]:
    """(identity, pod key or None) of a pod ``ns/name``, a pod IP, ``host`` or an outside
    IP, as the ipcache would answer (longest CIDR prefix, else world)."""
    if what in view.pod_identity:
        return view.pod_identity[what], what
    if what == "host":
        return 1, None
    for k, ip in view.pod_ips.items():
        if ip == what and k in view.pod_identity:
            return view.pod_identity[k], k
    addr = IPv4Address(what)
    best: tuple[int, int] | None = None
    for net, ident in result.cidr_identities.items():
        if addr in net and (best is None or net.prefixlen > best[0]):
            best = (net.prefixlen, ident.id)
    return (best[1] if best else 2), None


def probe_maps(
    view: ClusterView,
    result: PolicyResult,
    src: str,
    dst: str,
    port: int,
    protocol: str = "TCP",
    http: tuple[str, str] | None = None,
) -> tuple[bool, int]:
    """One connection through the compiled maps: egress at a source pod, ingress at a
    destination pod (world and host endpoints have no map)."""
    si, sk = remote_identity(view, result, src)
    di, dk = remote_identity(view, result, dst)
    if sk is not None and sk == dk:
        return True, 0
    sm = result.endpoints[sk].map if sk is not None and sk in result.endpoints else None
    dm = result.endpoints[dk].map if dk is not None and dk in result.endpoints else None
    host = request_host(_address(view, dst, dk))
    return map_verdict(sm, dm, si, di, PROTO_NUM.get(protocol.upper(), 6), port, http, host)


def _address(view: ClusterView, what: str, pod: str | None) -> IPv4Address | None:
    """The address of a pod (its view address), of an IP given as text, else None."""
    text = view.pod_ips.get(pod) if pod is not None else what
    try:
        return IPv4Address(text) if text else None
    except ValueError:
        return None


def reach_matrix(
    view: ClusterView,
    port: int,
    protocol: str = "TCP",
    http: tuple[str, str] | None = None,
    result: PolicyResult | None = None,
    verdict: PairVerdict | None = None,
) -> Matrix:
    """Every ordered pair of the view's pods, from the compiled maps (or ``verdict``)."""
    keys = tuple(sorted(p.key for p in view.pods))
    if verdict is not None:
        out: dict[str, dict[str, bool]] = {k: {} for k in keys}
        for a in keys:
            for b in keys:
                out[a][b] = a == b or verdict(a, b)
        return Matrix(port, protocol.upper(), keys, out)
    res = result if result is not None else compute_policy(view.inputs())
    proto = PROTO_NUM.get(protocol.upper(), 6)
    # Classes of pods sharing identity and map: one lookup per class pair. A request's
    # Host is the destination's address, so with HTTP a destination class is also per
    # address (an L7 rule may allow one pod's Host and not another's).
    Class = tuple[int, PolicyMap | None, str]  # (identity, map, Host)
    rows: list[Class] = []
    cols: list[Class] = []
    row_index: dict[tuple[int, int, str], int] = {}
    col_index: dict[tuple[int, int, str], int] = {}

    def classify(classes: list[Class], index: dict[tuple[int, int, str], int], c: Class) -> int:
        key = (c[0], id(c[1]), c[2])
        if key not in index:
            index[key] = len(classes)
            classes.append(c)
        return index[key]

    row_of: dict[str, int] = {}
    col_of: dict[str, int] = {}
    for k in keys:
        ep = res.endpoints.get(k)
        ident = view.pod_identity.get(k, 0)
        m = ep.map if ep is not None else None
        host = request_host(_address(view, k, k)) if http is not None else ""
        row_of[k] = classify(rows, row_index, (ident, m, ""))
        col_of[k] = classify(cols, col_index, (ident, m, host))
    cm = [[False] * len(cols) for _ in rows]
    for i, (si, sm, _) in enumerate(rows):
        row = cm[i]
        for j, (di, dm, host) in enumerate(cols):
            row[j] = map_verdict(sm, dm, si, di, proto, port, http, host)[0]
    return Matrix(port, protocol.upper(), keys, expand_classes(keys, row_of, col_of, cm))


def expand_classes(
    keys: Sequence[str],
    row_of: Mapping[str, int],
    col_of: Mapping[str, int],
    verdicts: Sequence[Sequence[bool]],
) -> dict[str, dict[str, bool]]:
    """Pod-by-pod verdicts from class-by-class ones (``verdicts[row class][column
    class]``): pods of one row class share their row; a pod to itself is always allowed
    (it never crosses the datapath)."""
    cols = [col_of[b] for b in keys]
    rows: dict[int, list[bool]] = {}
    out: dict[str, dict[str, bool]] = {}
    for a in keys:
        ca = row_of[a]
        vals = rows.get(ca)
        if vals is None:
            crow = verdicts[ca]
            vals = [crow[c] for c in cols]
            rows[ca] = vals
        row = dict(zip(keys, vals, strict=True))
        row[a] = True
        out[a] = row
    return out


def explain_matrix(
    view: ClusterView, port: int, protocol: str = "TCP", http: tuple[str, str] | None = None
) -> Matrix:
    """The same matrix from the rule-level oracle (slow; for tests and cross-checks)."""
    ev = view.evaluator()
    return reach_matrix(
        view,
        port,
        protocol,
        http,
        verdict=lambda a, b: ev.explain(a, b, port, protocol, http).allowed,
    )
