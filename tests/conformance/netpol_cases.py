"""The Kubernetes NetworkPolicy e2e scenarios as data (truth tables).

Restated from the public upstream suite (kubernetes test/e2e/network/netpol, "Netpol"
SIG-network tests for TCP, UDP and SCTP) and the NetworkPolicy API documentation:
namespaces x, y, z; pods a, b, c labelled ``pod=<name>``, each serving TCP, UDP and SCTP
on ports 80 and 81 with container ports named ``serve-<port>-<proto>``; every test
lists the pods it creates, the policies, and the expected verdict of every ordered pair
(loopback pairs are ignored, as upstream does).

Each ``Case`` has ``Step``s: the policies present (a function of the pod IPs, for the
ipBlock tests), optional label changes, and the probes with their expected tables.
Expectations are written with the upstream vocabulary: start from "all allowed", then
``peer`` (namespace/pod patterns), ``all_ingress``, ``all_egress``, ``pair``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Doc = dict[str, Any]
NS_NAME = "kubernetes.io/metadata.name"
ALL_PODS = tuple(f"{n}/{p}" for n in "xyz" for p in "abc")


# --- expectations ----------------------------------------------------------------------


class Reach:
    """A truth table over ``pods``: (from, to) -> allowed."""

    def __init__(self, pods: Sequence[str], default: bool = True) -> None:
        self.pods = tuple(pods)
        self.m = {(a, b): default for a in self.pods for b in self.pods}

    @staticmethod
    def _hit(pod: str, ns: str | None, name: str | None) -> bool:
        pns, _, pname = pod.partition("/")
        return (ns is None or ns == pns) and (name is None or name == pname)

    def peer(
        self,
        from_ns: str | None,
        from_pod: str | None,
        to_ns: str | None,
        to_pod: str | None,
        v: bool,
    ) -> Reach:
        for a, b in self.m:
            if self._hit(a, from_ns, from_pod) and self._hit(b, to_ns, to_pod):
                self.m[(a, b)] = v
        return self

    def all_ingress(self, pod: str, v: bool) -> Reach:
        for a in self.pods:
            if (a, pod) in self.m:
                self.m[(a, pod)] = v
        return self

    def all_egress(self, pod: str, v: bool) -> Reach:
        for b in self.pods:
            if (pod, b) in self.m:
                self.m[(pod, b)] = v
        return self

    def pair(self, a: str, b: str, v: bool) -> Reach:
        if (a, b) in self.m:
            self.m[(a, b)] = v
        return self


@dataclass(frozen=True)
class Probe:
    port: int
    protocol: str
    expect: Callable[[Sequence[str]], Reach]


@dataclass(frozen=True)
class Step:
    policies: Callable[[Mapping[str, str]], list[Doc]]  # pod IPs -> policy documents
    probes: tuple[Probe, ...]
    ns_labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    pod_labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Case:
    name: str
    pods: tuple[str, ...]
    steps: tuple[Step, ...]


# --- policy builders (the upstream Gen*/SetSpec* helpers, restated) -----------------------


def sel(**labels: str) -> dict[str, Any]:
    return {"matchLabels": dict(labels)}


def expr(key: str, op: str, *values: str) -> dict[str, Any]:
    e: dict[str, Any] = {"key": key, "operator": op}
    if values:
        e["values"] = list(values)
    return {"matchExpressions": [e]}


def netpol(
    name: str,
    ns: str,
    pod_selector: dict[str, Any] | None = None,
    ingress: list[dict[str, Any]] | None = None,
    egress: list[dict[str, Any]] | None = None,
) -> Doc:
    """``ingress``/``egress`` not None: that type is set (an empty list = deny all)."""
    spec: dict[str, Any] = {"podSelector": pod_selector or {}}
    types: list[str] = []
    if ingress is not None:
        types.append("Ingress")
        spec["ingress"] = ingress
    if egress is not None:
        types.append("Egress")
        spec["egress"] = egress
    spec["policyTypes"] = types
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


def port(p: int | str | None = None, protocol: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if p is not None:
        out["port"] = p
    if protocol is not None:
        out["protocol"] = protocol
    return out


def nspeer(
    ns_sel: dict[str, Any] | None = None, pod_sel: dict[str, Any] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if ns_sel is not None:
        out["namespaceSelector"] = ns_sel
    if pod_sel is not None:
        out["podSelector"] = pod_sel
    return out


def large_cidr(ip: str) -> str:
    """The /4 holding ``ip`` (upstream's makeLargeCIDRForIP)."""
    first = int(ip.split(".")[0]) & 0xF0
    return f"{first}.0.0.0/4"


def static(*docs: Doc) -> Callable[[Mapping[str, str]], list[Doc]]:
    return lambda _ips: list(docs)


def tcp(port_: int, expect: Callable[[Sequence[str]], Reach]) -> Probe:
    return Probe(port_, "TCP", expect)


def allowed(pods: Sequence[str]) -> Reach:
    return Reach(pods)


# --- the cases -----------------------------------------------------------------------------

X, Y, Z = "x", "y", "z"


def _cases() -> list[Case]:
    c: list[Case] = []

    def one(name: str, pods: str, policies: Sequence[Doc], probes: Sequence[Probe]) -> None:
        c.append(Case(name, tuple(pods.split()), (Step(static(*policies), tuple(probes)),)))

    one(
        "should support a 'default-deny-ingress' policy",
        "x/a x/b y/a y/b",
        [netpol("deny-ingress", X, ingress=[])],
        [tcp(80, lambda p: Reach(p).peer(None, None, X, None, False))],
    )
    one(
        "should support a 'default-deny-all' policy",
        "x/a x/b y/a",
        [netpol("deny-all", X, ingress=[], egress=[])],
        [
            tcp(
                80,
                lambda p: (
                    Reach(p).peer(None, None, X, None, False).peer(X, None, None, None, False)
                ),
            )
        ],
    )
    one(
        "should enforce policy to allow traffic from pods within server namespace based on PodSelector",
        "x/a x/b x/c y/a",
        [
            netpol(
                "x-a-allows-x-b", X, sel(pod="a"), ingress=[{"from": [nspeer(None, sel(pod="b"))]}]
            )
        ],
        [tcp(80, lambda p: Reach(p).all_ingress("x/a", False).pair("x/b", "x/a", True))],
    )
    c.append(
        Case(
            "should enforce policy to allow ingress traffic for a target",
            ("x/a", "x/b", "y/a"),
            (
                Step(
                    static(
                        netpol("deny-all", X, ingress=[]),
                        netpol(
                            "allow-all-to-a",
                            X,
                            sel(pod="a"),
                            ingress=[{"from": [nspeer({}, {})]}],
                        ),
                    ),
                    (
                        tcp(
                            80,
                            lambda p: Reach(p).all_ingress("x/a", True).all_ingress("x/b", False),
                        ),
                    ),
                ),
            ),
        )
    )
    one(
        "should enforce policy to allow ingress traffic from pods in all namespaces",
        "x/a x/b y/a z/a",
        [netpol("allow-from-another-ns", X, sel(pod="a"), ingress=[{"from": [nspeer(sel())]}])],
        [tcp(80, allowed)],
    )
    one(
        "should enforce policy to allow traffic only from a different namespace, based on NamespaceSelector",
        "x/a x/b y/a z/a",
        [
            netpol(
                "allow-client-a-via-ns-selector",
                X,
                sel(pod="a"),
                ingress=[{"from": [nspeer(sel(**{NS_NAME: Y}))]}],
            )
        ],
        [
            tcp(
                80,
                lambda p: Reach(p).peer(X, None, X, "a", False).peer(Z, None, X, "a", False),
            )
        ],
    )
    one(
        "should enforce policy based on PodSelector with MatchExpressions",
        "x/a x/b y/a",
        [
            netpol(
                "x-a-allows-x-b",
                X,
                sel(pod="a"),
                ingress=[{"from": [nspeer(None, expr("pod", "In", "b"))]}],
            )
        ],
        [tcp(80, lambda p: Reach(p).all_ingress("x/a", False).pair("x/b", "x/a", True))],
    )
    one(
        "should enforce policy based on NamespaceSelector with MatchExpressions",
        "x/a x/b y/a z/a",
        [
            netpol(
                "allow-ns-y-match-selector",
                X,
                sel(pod="a"),
                ingress=[{"from": [nspeer(expr(NS_NAME, "In", Y))]}],
            )
        ],
        [
            tcp(
                80,
                lambda p: Reach(p).peer(X, None, X, "a", False).peer(Z, None, X, "a", False),
            )
        ],
    )
    one(
        "should enforce policy based on PodSelector or NamespaceSelector",
        "x/a x/b x/c y/a",
        [
            netpol(
                "allow-ns-y-match-selector",
                X,
                sel(pod="a"),
                ingress=[{"from": [nspeer(expr(NS_NAME, "NotIn", X)), nspeer(None, sel(pod="b"))]}],
            )
        ],
        [tcp(80, lambda p: Reach(p).pair("x/a", "x/a", False).pair("x/c", "x/a", False))],
    )
    one(
        "should enforce policy based on PodSelector and NamespaceSelector",
        "x/a x/b y/a y/b z/b",
        [
            netpol(
                "allow-ns-y-podselector-and-nsselector",
                X,
                sel(pod="a"),
                ingress=[{"from": [nspeer(expr(NS_NAME, "NotIn", X), sel(pod="b"))]}],
            )
        ],
        [
            tcp(
                80,
                lambda p: (
                    Reach(p)
                    .all_ingress("x/a", False)
                    .pair("y/b", "x/a", True)
                    .pair("z/b", "x/a", True)
                ),
            )
        ],
    )
    one(
        "should enforce policy based on Multiple PodSelectors and NamespaceSelectors",
        "x/a x/b y/a y/b y/c",
        [
            netpol(
                "allow-ns-y-z-pod-b-c",
                X,
                sel(pod="a"),
                ingress=[
                    {"from": [nspeer(expr(NS_NAME, "NotIn", X), expr("pod", "In", "b", "c"))]}
                ],
            )
        ],
        [
            tcp(
                80,
                lambda p: Reach(p).peer(X, None, X, "a", False).pair("y/a", "x/a", False),
            )
        ],
    )
    one(
        "should enforce policy based on any PodSelectors",
        "x/a x/b x/c",
        [
            netpol(
                "allow-ns-x-pod-b-c",
                X,
                sel(pod="a"),
                ingress=[{"from": [nspeer(None, sel(pod="b")), nspeer(None, sel(pod="c"))]}],
            )
        ],
        [
            tcp(
                80,
                lambda p: (
                    Reach(p)
                    .all_ingress("x/a", False)
                    .pair("x/b", "x/a", True)
                    .pair("x/c", "x/a", True)
                ),
            )
        ],
    )
    one(
        "should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector and NamespaceSelector",
        "x/a x/b y/a y/b z/a",
        [
            netpol(
                "allow-ns-y-pod-a-via-namespace-pod-selector",
                X,
                sel(pod="a"),
                ingress=[{"from": [nspeer(sel(**{NS_NAME: Y}), sel(pod="a"))]}],
            )
        ],
        [tcp(80, lambda p: Reach(p).all_ingress("x/a", False).pair("y/a", "x/a", True))],
    )
    port81_y = netpol(
        "allow-client-a-via-ns-selector",
        X,
        sel(pod="a"),
        ingress=[{"from": [nspeer(sel(**{NS_NAME: Y}))], "ports": [port(81, "TCP")]}],
    )

    def only_y(p: Sequence[str]) -> Reach:
        return (
            Reach(p)
            .peer(X, None, X, "a", False)
            .peer(Y, None, X, "a", True)
            .peer(Z, None, X, "a", False)
        )

    one(
        "should enforce policy based on Ports", "x/a x/b y/a y/b z/a", [port81_y], [tcp(81, only_y)]
    )
    c.append(
        Case(
            "should enforce multiple, stacked policies with overlapping podSelectors",
            ("x/a", "x/b", "y/a", "y/b", "z/a"),
            (
                Step(
                    static(port81_y),
                    (tcp(81, only_y), tcp(80, lambda p: Reach(p).all_ingress("x/a", False))),
                ),
                Step(
                    static(
                        port81_y,
                        netpol(
                            "allow-client-a-via-ns-selector-80",
                            X,
                            sel(pod="a"),
                            ingress=[
                                {"from": [nspeer(sel(**{NS_NAME: Y}))], "ports": [port(80, "TCP")]}
                            ],
                        ),
                    ),
                    (tcp(80, only_y),),
                ),
            ),
        )
    )
    one(
        "should support allow-all policy",
        "x/a x/b y/a",
        [netpol("allow-all", X, {}, ingress=[{}])],
        [tcp(80, allowed), tcp(81, allowed)],
    )
    one(
        "should allow ingress access on one named port",
        "x/a x/b y/a",
        [netpol("allow-all", X, {}, ingress=[{"ports": [port("serve-81-tcp")]}])],
        [tcp(81, allowed), tcp(80, lambda p: Reach(p).peer(None, None, X, None, False))],
    )
    one(
        "should allow ingress access from namespace on one named port",
        "x/a x/b y/a z/a",
        [
            netpol(
                "allow-client-a-via-ns-selector-80",
                X,
                sel(pod="a"),
                ingress=[
                    {
                        "from": [nspeer(sel(**{NS_NAME: Y}))],
                        "ports": [port("serve-80-tcp", "TCP")],
                    }
                ],
            )
        ],
        [
            tcp(
                80,
                lambda p: Reach(p).peer(X, None, X, "a", False).peer(Z, None, X, "a", False),
            ),
            tcp(81, lambda p: Reach(p).all_ingress("x/a", False)),
        ],
    )
    one(
        "should allow egress access on one named port",
        "x/a y/a",
        [netpol("allow-egress", X, {}, egress=[{"ports": [port("serve-80-tcp")]}])],
        [tcp(80, allowed), tcp(81, lambda p: Reach(p).peer(X, None, None, None, False))],
    )
    c.append(
        Case(
            "should enforce updated policy",
            ("x/a", "y/a"),
            (
                Step(
                    static(netpol("allow-all-mutate-to-deny-all", X, {}, ingress=[{}])),
                    (tcp(81, allowed),),
                ),
                Step(
                    static(netpol("allow-all-mutate-to-deny-all", X, {}, ingress=[])),
                    (tcp(81, lambda p: Reach(p).peer(None, None, X, None, False)),),
                ),
            ),
        )
    )
    ns2 = netpol(
        "allow-client-a-via-ns-selector",
        X,
        sel(pod="a"),
        ingress=[{"from": [nspeer(sel(ns2="updated"))]}],
    )
    c.append(
        Case(
            "should allow ingress access from updated namespace",
            ("x/a", "y/a"),
            (
                Step(static(ns2), (tcp(80, lambda p: Reach(p).all_ingress("x/a", False)),)),
                Step(
                    static(ns2),
                    (
                        tcp(
                            80,
                            lambda p: (
                                Reach(p).all_ingress("x/a", False).peer(Y, None, None, None, True)
                            ),
                        ),
                    ),
                    ns_labels={Y: {"ns2": "updated"}},
                ),
            ),
        )
    )
    pod2 = netpol(
        "allow-client-a-via-pod-selector",
        X,
        sel(pod="a"),
        ingress=[{"from": [nspeer(None, sel(pod="b", pod2="updated"))]}],
    )
    c.append(
        Case(
            "should allow ingress access from updated pod",
            ("x/a", "x/b"),
            (
                Step(static(pod2), (tcp(80, lambda p: Reach(p).all_ingress("x/a", False)),)),
                Step(
                    static(pod2),
                    (
                        tcp(
                            80,
                            lambda p: Reach(p).all_ingress("x/a", False).pair("x/b", "x/a", True),
                        ),
                    ),
                    pod_labels={"x/b": {"pod": "b", "pod2": "updated"}},
                ),
            ),
        )
    )
    one(
        "should deny ingress from pods on other namespaces",
        "x/a x/b y/a z/a",
        [netpol("deny-empty-policy", X, {}, ingress=[{"from": [nspeer(None, sel())]}])],
        [
            tcp(
                80,
                lambda p: Reach(p).peer(Y, None, X, None, False).peer(Z, None, X, None, False),
            )
        ],
    )
    iso = netpol("deny-ingress-via-label-selector", X, sel(target="isolated"), ingress=[])
    c.append(
        Case(
            "should deny ingress access to updated pod",
            ("x/a", "y/a"),
            (
                Step(static(iso), (tcp(80, allowed),)),
                Step(
                    static(iso),
                    (tcp(80, lambda p: Reach(p).all_ingress("x/a", False)),),
                    pod_labels={"x/a": {"pod": "a", "target": "isolated"}},
                ),
            ),
        )
    )
    one(
        "should deny egress from pods based on PodSelector",
        "x/a x/b y/a",
        [netpol("deny-egress-pod-a", X, sel(pod="a"), egress=[])],
        [tcp(80, lambda p: Reach(p).all_egress("x/a", False))],
    )
    one(
        "should deny egress from all pods in a namespace",
        "x/a x/b y/a",
        [netpol("deny-egress-ns-x", X, {}, egress=[])],
        [tcp(80, lambda p: Reach(p).peer(X, None, None, None, False))],
    )
    one(
        "should work with Ingress, Egress specified together",
        "x/a x/b x/c y/a",
        [
            netpol(
                "allow-client-a-via-pod-selector",
                X,
                sel(pod="a"),
                ingress=[{"from": [nspeer(None, sel(pod="b"))]}],
                egress=[{"ports": [port(80)]}],
            )
        ],
        [
            tcp(80, lambda p: Reach(p).all_ingress("x/a", False).pair("x/b", "x/a", True)),
            tcp(
                81,
                lambda p: (
                    Reach(p)
                    .all_ingress("x/a", False)
                    .all_egress("x/a", False)
                    .pair("x/b", "x/a", True)
                ),
            ),
        ],
    )
    xa = nspeer(sel(**{NS_NAME: X}), sel(pod="a"))
    one(
        "should support denying of egress traffic on the client side (even if the server explicitly allows this traffic)",
        "x/a y/a y/b",
        [
            netpol(
                "allow-to-ns-y-pod-a",
                X,
                sel(pod="a"),
                egress=[{"to": [nspeer(sel(**{NS_NAME: Y}), sel(pod="a"))]}],
            ),
            netpol("allow-from-xa-on-ya-match-selector", Y, sel(pod="a"), ingress=[{"from": [xa]}]),
            netpol("allow-from-xa-on-yb-match-selector", Y, sel(pod="b"), ingress=[{"from": [xa]}]),
        ],
        [
            tcp(
                80,
                lambda p: (
                    Reach(p)
                    .peer(X, "a", None, None, False)
                    .peer(None, None, Y, "a", False)
                    .peer(X, "a", Y, "a", True)
                    .peer(None, None, Y, "b", False)
                ),
            )
        ],
    )
    one(
        "should enforce egress policy allowing traffic to a server in a different namespace based on PodSelector and NamespaceSelector",
        "x/a y/a y/b",
        [
            netpol(
                "allow-to-ns-y-pod-a",
                X,
                sel(pod="a"),
                egress=[{"to": [nspeer(sel(**{NS_NAME: Y}), sel(pod="a"))]}],
            )
        ],
        [tcp(80, lambda p: Reach(p).all_egress("x/a", False).pair("x/a", "y/a", True))],
    )
    c.append(
        Case(
            "should enforce ingress policy allowing any port traffic to a server on a specific protocol",
            ("x/a", "y/a"),
            (
                Step(
                    static(
                        netpol(
                            "allow-ingress-by-proto",
                            X,
                            sel(pod="a"),
                            ingress=[{"ports": [port(None, "TCP")]}],
                        )
                    ),
                    (
                        tcp(80, allowed),
                        Probe(80, "UDP", lambda p: Reach(p).peer(None, None, X, "a", False)),
                    ),
                ),
            ),
        )
    )
    only80 = netpol("allow-ingress-port-80", X, {}, ingress=[{"ports": [port(80)]}])
    c.append(
        Case(
            "should enforce multiple ingress policies with ingress allow-all policy taking precedence",
            ("x/a", "y/a"),
            (
                Step(
                    static(only80), (tcp(81, lambda p: Reach(p).peer(None, None, X, None, False)),)
                ),
                Step(
                    static(only80, netpol("allow-ingress", X, {}, ingress=[{}])),
                    (tcp(81, allowed),),
                ),
            ),
        )
    )
    only80e = netpol("allow-egress-port-80", X, {}, egress=[{"ports": [port(80)]}])
    c.append(
        Case(
            "should enforce multiple egress policies with egress allow-all policy taking precedence",
            ("x/a", "y/a"),
            (
                Step(
                    static(only80e), (tcp(81, lambda p: Reach(p).peer(X, None, None, None, False)),)
                ),
                Step(
                    static(only80e, netpol("allow-egress", X, {}, egress=[{}])), (tcp(81, allowed),)
                ),
            ),
        )
    )
    c.append(
        Case(
            "should stop enforcing policies after they are deleted",
            ("x/a", "y/a"),
            (
                Step(
                    static(netpol("deny-all", X, {}, ingress=[], egress=[])),
                    (
                        tcp(
                            80,
                            lambda p: (
                                Reach(p)
                                .peer(X, None, None, None, False)
                                .peer(None, None, X, None, False)
                            ),
                        ),
                    ),
                ),
                Step(static(), (tcp(80, allowed),)),
            ),
        )
    )
    c.append(
        Case(
            "should allow egress access to server in CIDR block",
            ("x/a", "y/a", "y/b"),
            (
                Step(
                    lambda ips: [
                        netpol(
                            "allow-client-a-via-cidr-egress-rule",
                            X,
                            sel(pod="a"),
                            egress=[{"to": [{"ipBlock": {"cidr": f"{ips['y/b']}/32"}}]}],
                        )
                    ],
                    (
                        tcp(
                            80, lambda p: Reach(p).all_egress("x/a", False).pair("x/a", "y/b", True)
                        ),
                    ),
                ),
            ),
        )
    )

    def except_policy(ips: Mapping[str, str]) -> list[Doc]:
        return [
            netpol(
                "allow-client-a-via-cidr-egress-rule",
                X,
                sel(pod="a"),
                egress=[
                    {
                        "to": [
                            {
                                "ipBlock": {
                                    "cidr": large_cidr(ips["x/b"]),
                                    "except": [f"{ips['x/b']}/32"],
                                }
                            }
                        ]
                    }
                ],
            )
        ]

    c.append(
        Case(
            "should enforce except clause while egress access to server in CIDR block",
            ("x/a", "x/b", "x/c"),
            (Step(except_policy, (tcp(80, lambda p: Reach(p).pair("x/a", "x/b", False)),)),),
        )
    )
    c.append(
        Case(
            "should ensure an IP overlapping both IPBlock.CIDR and IPBlock.Except is allowed",
            ("x/a", "x/b", "x/c"),
            (
                Step(except_policy, (tcp(80, lambda p: Reach(p).pair("x/a", "x/b", False)),)),
                Step(
                    # UpdatePolicy replaces the policy of the same name.
                    lambda ips: [
                        netpol(
                            "allow-client-a-via-cidr-egress-rule",
                            X,
                            sel(pod="a"),
                            egress=[{"to": [{"ipBlock": {"cidr": f"{ips['x/b']}/32"}}]}],
                        )
                    ],
                    (
                        tcp(
                            80, lambda p: Reach(p).all_egress("x/a", False).pair("x/a", "x/b", True)
                        ),
                    ),
                ),
            ),
        )
    )
    egress_a = netpol("allow-egress-for-target", X, sel(pod="a"), egress=[{}])
    c.append(
        Case(
            "should enforce policies to check ingress and egress policies can be controlled independently based on PodSelector",
            ("x/a", "x/b", "y/a"),
            (
                Step(static(egress_a), (tcp(80, allowed),)),
                Step(
                    static(
                        egress_a,
                        netpol("deny-ingress-via-label-selector", X, sel(pod="a"), ingress=[]),
                    ),
                    (tcp(80, lambda p: Reach(p).all_ingress("x/a", False)),),
                ),
            ),
        )
    )
    one(
        "should not mistakenly treat 'protocol: SCTP' as 'protocol: TCP', even if the plugin doesn't support SCTP",
        "x/a y/a",
        [
            netpol("deny-ingress", X, {}, ingress=[]),
            netpol(
                "allow-only-sctp-ingress-on-port-81",
                X,
                sel(pod="a"),
                ingress=[{"ports": [port(81, "SCTP")]}],
            ),
        ],
        [tcp(81, lambda p: Reach(p).peer(None, None, X, None, False))],
    )
    one(
        "should properly isolate pods that are selected by a policy allowing SCTP, even if the plugin doesn't support SCTP",
        "x/a y/a",
        [
            netpol(
                "allow-only-sctp-ingress-on-port-80",
                X,
                sel(pod="a"),
                ingress=[{"ports": [port(80, "SCTP")]}],
            )
        ],
        [tcp(81, lambda p: Reach(p).all_ingress("x/a", False))],
    )
    one(
        "should not allow access by TCP when a policy specifies only UDP",
        "x/a y/a",
        [
            netpol(
                "allow-only-udp-ingress-on-port-81",
                X,
                sel(pod="a"),
                ingress=[{"ports": [port(81, "UDP")]}],
            )
        ],
        [tcp(81, lambda p: Reach(p).all_ingress("x/a", False))],
    )
    one(
        "should enforce policy to allow traffic based on NamespaceSelector with MatchLabels using default ns label",
        "x/a x/b y/a z/a",
        [
            netpol(
                "allow-client-a-via-ns-selector-for-immutable-ns-label",
                X,
                sel(pod="a"),
                ingress=[{"from": [nspeer(sel(**{NS_NAME: Y}))]}],
            )
        ],
        [
            tcp(
                80,
                lambda p: Reach(p).peer(X, None, X, "a", False).peer(Z, None, X, "a", False),
            )
        ],
    )
    one(
        "should enforce policy based on NamespaceSelector with MatchExpressions using default ns label",
        "x/a x/b y/a z/a",
        [
            netpol(
                "allow-ns-y-match-selector-for-immutable-ns-label",
                X,
                sel(pod="a"),
                egress=[{"to": [nspeer(expr(NS_NAME, "NotIn", Y))]}],
            )
        ],
        [tcp(80, lambda p: Reach(p).peer(X, "a", Y, None, False))],
    )
    # --- UDP and SCTP variants ---------------------------------------------------------
    for proto in ("UDP", "SCTP"):
        one(
            f"[{proto}] should support a 'default-deny-ingress' policy",
            "x/a x/b y/a y/b",
            [netpol("deny-all", X, {}, ingress=[])],
            [Probe(80, proto, lambda p: Reach(p).peer(None, None, X, None, False))],
        )
        one(
            f"[{proto}] should enforce policy based on Ports",
            "x/a x/b y/a z/a",
            [
                netpol(
                    "allow-ingress-on-port-81-ns-x",
                    X,
                    sel(pod="a"),
                    ingress=[{"from": [nspeer(sel(**{NS_NAME: Y}))], "ports": [port(81, proto)]}],
                )
            ],
            [
                Probe(
                    81,
                    proto,
                    lambda p: Reach(p).peer(X, None, X, "a", False).peer(Z, None, X, "a", False),
                )
            ],
        )
        one(
            f"[{proto}] should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector and NamespaceSelector",
            "x/a x/b y/a",
            [
                netpol(
                    "allow-ns-y-pod-a-via-namespace-pod-selector",
                    X,
                    sel(pod="a"),
                    ingress=[{"from": [nspeer(sel(**{NS_NAME: Y}), sel(pod="a"))]}],
                )
            ],
            [
                Probe(
                    80,
                    proto,
                    lambda p: Reach(p).all_ingress("x/a", False).pair("y/a", "x/a", True),
                )
            ],
        )
    # --- beyond the upstream list: endPort (API docs) ------------------------------------
    one(
        "endPort: a port range allows every port in it (API docs)",
        "x/a y/a",
        [
            netpol(
                "allow-80-to-81",
                X,
                sel(pod="a"),
                ingress=[{"ports": [{"port": 80, "endPort": 81, "protocol": "TCP"}]}],
            )
        ],
        [tcp(80, allowed), tcp(81, allowed), tcp(82, lambda p: Reach(p).all_ingress("x/a", False))],
    )
    return c


CASES: tuple[Case, ...] = tuple(_cases())
