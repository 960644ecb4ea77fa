"""Model ≡ kernel, pair by pair: the same cluster state through both datapaths.

For every scenario the model's matrix (``cli.cmd_policy.compute_reach`` over the store's
documents: the compiled maps walked by ``datapath.sim``) and the kernel's matrix
(``datapath.linux.reach.probe_running``: real connections from inside each source pod's
netns through the eBPF programs the agent loaded) must be identical on every ordered
pair. A difference prints both verdicts of each differing pair, what the probe saw, and
``policy explain`` of the pair (the rule-level oracle, ``control.explain``).

Scenarios:

- the Kubernetes NetworkPolicy e2e cases (``tests/conformance/netpol_cases.py``, reused,
  not copied): namespaces x/y/z with pods a/b/c serving 80/81 on TCP/UDP/SCTP. One
  cluster is brought up once for the module; each case applies its policies (and label
  changes), the agent reconciles the delta, both matrices are taken, and the policies
  are deleted again. The kernel matrix is also checked against the upstream truth table
  on the case's pods. SCTP cases are skipped with the reason when the kernel lacks SCTP;
- the examples: networking101 (no policy), network-policy (apps + each rule, both
  rules, the HTTP-aware rule), ebook (three-tier policies, redis ipBlock).

Run: ``sudo .venv/bin/pytest tests/privileged/test_agreement.py -ra`` (skipped with the
reason when not root or the kernel datapath is unavailable).
"""

from __future__ import annotations

import io
import json
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from _paths import example_file, shared_examples
from ciliate.cli.cmd_policy import compute_reach
from ciliate.cli.context import Context
from ciliate.cli.main import main
from ciliate.control.reach import Matrix, build_view
from ciliate.controllers.clusterconfig import get_cluster_config
from ciliate.datapath.linux import netns as nl
from ciliate.datapath.linux import reach, runtime
from ciliate.datapath.linux.reach import KernelMatrix
from ciliate.store.sqlite import SQLiteStore

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS / "conformance"))

from netpol_cases import ALL_PODS, CASES, Case, Step, static  # noqa: E402
from netpol_cases import Probe as ProbeCase  # noqa: E402
from test_netpol_e2e import base_docs  # noqa: E402

pytestmark = [pytest.mark.privileged, pytest.mark.slow]

Doc = dict[str, Any]
# The examples: the shared folder as the rest of the suite finds it (tests/_paths.py),
# networking101 from the package when it is absent; the others skip, saying where
# they were looked for.
SCENARIO_DATA = TESTS / "scenarios" / "policy"  # client pods for the ebook/HTTP examples
DURATIONS: dict[str, float] = {}


def _skip_without_kernel() -> None:
    reason = runtime.unavailable_reason()
    if reason:
        pytest.skip(f"kernel datapath unavailable: {reason}")


# --- a running cluster --------------------------------------------------------------------


@dataclass
class Live:
    """A kernel cluster that stays up while scenarios change its policies."""

    state: Path
    applied: list[Doc] = field(default_factory=list)

    def cli(self, *argv: str, stdin: str = "") -> str:
        out, err = io.StringIO(), io.StringIO()
        ctx = Context(state_dir=self.state, stdout=out, stderr=err, stdin=io.StringIO(stdin))
        try:
            rc = main(["--state", str(self.state), *argv], ctx)
        finally:
            ctx.close()
        assert rc == 0, f"ciliate {' '.join(argv)} -> {rc}\n{out.getvalue()}\n{err.getvalue()}"
        return out.getvalue()

    def apply(self, docs: Sequence[Doc]) -> None:
        if docs:
            self.cli("apply", "-f", "-", stdin=yaml.safe_dump_all(list(docs)))

    def delete(self, docs: Sequence[Doc]) -> None:
        if docs:
            self.cli("delete", "--ignore-not-found", "-f", "-", stdin=yaml.safe_dump_all(docs))

    def converge(self) -> dict[str, Any]:
        return reach.wait_converged(self.state)

    def docs(self) -> tuple[list[Doc], Any]:
        store = SQLiteStore(self.state / "store.db")
        try:
            return store.list(), get_cluster_config(store)
        finally:
            store.close()

    def pod_ips(self) -> dict[str, str]:
        return {t.key: t.ip for t in reach.targets(self.state)}

    def compare(
        self, label: str, port: int, protocol: str, http: tuple[str, str] | None = None
    ) -> tuple[Matrix, KernelMatrix, list[str]]:
        """Both matrices of the current state and the report of every differing pair."""
        self.converge()
        docs, config = self.docs()
        model = compute_reach(docs, config, port, protocol, http)
        # a pair the model allows and the kernel seems to drop is probed once more,
        # patiently, before it counts as a disagreement (a loaded machine is slow)
        kernel = reach.probe_running(
            self.state, port, protocol, http, confirm=lambda a, b: bool(model.allowed[a][b])
        )
        return model, kernel, disagreements(label, model, kernel, docs, config, http)


def disagreements(
    label: str,
    model: Matrix,
    kernel: KernelMatrix,
    docs: list[Doc],
    config: Any,
    http: tuple[str, str] | None,
) -> list[str]:
    if kernel.unverified:
        return []
    out: list[str] = []
    if set(model.pods) != set(kernel.pods):
        return [f"--- {label}: pods differ: model {model.pods} kernel {kernel.pods}"]
    wrong = [
        (a, b)
        for a in model.pods
        for b in model.pods
        if bool(model.allowed[a][b]) != kernel.allowed[a][b]
    ]
    if not wrong:
        return []
    ev = build_view(config, docs).evaluator()
    out.append(f"--- {label}: {len(wrong)} pair(s) differ")
    out.append("model:\n" + model.table())
    out.append("kernel:\n" + kernel.table())
    for a, b in wrong:
        seen = kernel.details.get(a, {}).get(b, "?")
        out.append(
            f"{a} -> {b}: model {'allowed' if model.allowed[a][b] else 'denied'}, "
            f"kernel {'allowed' if kernel.allowed[a][b] else 'denied'} (probe: {seen})"
        )
        try:
            why = ev.explain(a, b, model.port, model.protocol, http).text()
        except Exception as e:  # the report must not hide the disagreement
            why = f"(explain failed: {e})"
        out.append("  explain: " + why.replace("\n", "\n    "))
    return out


def up_cluster(state: Path, docs: Sequence[Doc] = (), files: Sequence[Path] = ()) -> Live:
    """Create the model's ephemeral cluster in ``state``, apply, and bring it up."""
    reach.create_cluster(state)
    live = Live(state)
    live.apply(list(docs))
    for f in files:
        live.cli("apply", "-f", str(f))
    runtime.up(Context(state_dir=state, stdout=io.StringIO(), stderr=io.StringIO()))
    live.converge()
    return live


def down_cluster(live: Live) -> None:
    """Down, and nothing of the cluster left behind (namespaces, pins)."""
    runtime.down(Context(state_dir=live.state, stdout=io.StringIO(), stderr=io.StringIO()))
    names = runtime.KernelPaths(live.state).names
    assert not nl.list_netns(names.prefix), nl.list_netns(names.prefix)
    assert not names.pin_root.exists(), names.pin_root


def timed(name: str) -> Any:
    """Record a test's duration for the summary printed at the end of the module."""

    class _T:
        def __enter__(self) -> None:
            self.t0 = time.monotonic()

        def __exit__(self, *exc: object) -> None:
            DURATIONS[name] = time.monotonic() - self.t0

    return _T()


@pytest.fixture(scope="module", autouse=True)
def _summary() -> Iterator[None]:
    t0 = time.monotonic()
    yield
    if DURATIONS:
        total = time.monotonic() - t0
        slowest = sorted(DURATIONS.items(), key=lambda kv: -kv[1])[:5]
        print(
            f"\nagreement suite: {len(DURATIONS)} scenarios in {total:.1f}s; slowest: "
            + ", ".join(f"{k[:40]} {v:.1f}s" for k, v in slowest)
        )


# --- the upstream NetworkPolicy e2e cases ------------------------------------------------------

ALL = Case("all pods", ALL_PODS, (Step(static(), ()),))


@pytest.fixture(scope="module")
def xyz(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """x/y/z with a/b/c, up once for every case of the module."""
    _skip_without_kernel()
    state = tmp_path_factory.mktemp("agreement-xyz")
    t0 = time.monotonic()
    live = up_cluster(state, base_docs(ALL, ALL.steps[0]))
    DURATIONS["(x/y/z cluster up)"] = time.monotonic() - t0
    try:
        yield live
    finally:
        down_cluster(live)


def _key(d: Doc) -> tuple[str, str, str]:
    m = d["metadata"]
    return d["kind"], m.get("namespace", ""), m["name"]


def run_case(live: Live, case: Case) -> tuple[list[str], list[str]]:
    """(disagreements, truth-table failures) of every step and probe of ``case``."""
    failures: list[str] = []
    wrong_truth: list[str] = []
    present: list[Doc] = []
    try:
        for si, step in enumerate(case.steps):
            live.apply(base_docs(ALL, step))  # namespace and pod labels of this step
            live.converge()
            policies = step.policies(live.pod_ips())
            keep = {_key(d) for d in policies}
            live.delete([d for d in present if _key(d) not in keep])
            live.apply(policies)
            present = policies
            for probe in step.probes:
                label = f"{case.name} step {si + 1} {probe.port}/{probe.protocol}"
                _, kernel, diff = live.compare(label, probe.port, probe.protocol)
                failures += diff
                if kernel.unverified:
                    continue
                expected = probe.expect(case.pods)
                if expected is None:  # a scenario without a truth table: agreement only
                    continue
                bad = [
                    (a, b)
                    for a in case.pods
                    for b in case.pods
                    if a != b and expected.m[(a, b)] != kernel.allowed[a][b]
                ]
                for a, b in bad:
                    wrong_truth.append(
                        f"{label}: {a} -> {b} expected "
                        f"{'allowed' if expected.m[(a, b)] else 'denied'}, kernel "
                        f"{'allowed' if kernel.allowed[a][b] else 'denied'}"
                    )
    finally:
        live.delete(present)
        live.apply(base_docs(ALL, ALL.steps[0]))  # labels back to the defaults
        live.converge()
    return failures, wrong_truth


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_netpol_e2e_agreement(xyz: Live, case: Case) -> None:
    with timed(case.name):
        failures, wrong_truth = run_case(xyz, case)
    assert not failures, "model and kernel disagree:\n" + "\n".join(failures)
    assert not wrong_truth, "kernel differs from the upstream truth table:\n" + "\n".join(
        wrong_truth
    )
    sctp = {p.protocol for s in case.steps for p in s.probes} == {"SCTP"}
    if sctp:
        target = reach.targets(xyz.state)[0]
        reason = reach.sctp_unavailable(target.netns)
        if reason:
            pytest.skip(f"SCTP not verified in the kernel: {reason}")


def test_cli_reach_kernel_on_the_running_cluster(xyz: Live) -> None:
    """Without -f, ``reach --datapath kernel`` probes the cluster that is up (no policy:
    every pair allowed) and agrees with ``reach`` on the same state directory."""
    kernel = json.loads(xyz.cli("reach", "--datapath", "kernel", "--port", "81", "-o", "json"))
    model = json.loads(xyz.cli("reach", "--port", "81", "-o", "json"))
    assert kernel == model
    assert kernel["pods"] == list(ALL_PODS)
    assert all(v for row in kernel["matrix"].values() for v in row.values())


# --- Cilium's policies on the same cluster (agreement only: no upstream truth table) ------

NS_LABEL = "k8s:io.kubernetes.pod.namespace"


def agreement_only(_pods: Sequence[str]) -> None:
    return None


def cnp(name: str, ns: str | None, selector: Doc, **spec: Any) -> Doc:
    """A CiliumNetworkPolicy (``ns``) or, with ``ns=None``, a clusterwide one."""
    meta: Doc = {"name": name} if ns is None else {"name": name, "namespace": ns}
    return {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumClusterwideNetworkPolicy" if ns is None else "CiliumNetworkPolicy",
        "metadata": meta,
        "spec": {"endpointSelector": selector, **spec},
    }


def ports(*items: tuple[int | str, str], end: int | None = None) -> list[Doc]:
    out = [{"port": str(p), "protocol": proto} for p, proto in items]
    if end is not None:
        for o in out:
            o["endPort"] = end
    return [{"ports": out}]


def _cilium_cases() -> list[Case]:
    def tcp(*ps: int) -> tuple[ProbeCase, ...]:
        return tuple(ProbeCase(p, "TCP", agreement_only) for p in ps)

    def one(name: str, docs: Any, probes: tuple[ProbeCase, ...]) -> Case:
        pol = docs if callable(docs) else static(*docs)
        return Case(name, ALL_PODS, (Step(pol, probes),))

    a, b, c = ({"matchLabels": {"pod": n}} for n in "abc")
    return [
        one(
            "CNP ingressDeny from namespace y beats an allow from all",
            [cnp("deny-y", "x", a, ingress=[{"fromEntities": ["all"]}],
                 ingressDeny=[{"fromEndpoints": [{"matchLabels": {NS_LABEL: "y"}}]}])],
            tcp(80, 81),
        ),
        one(
            "CNP egressDeny to own namespace on port 81 only",
            [cnp("no-81", "x", {}, egress=[{"toEntities": ["all"]}],
                 egressDeny=[{"toEndpoints": [{}], "toPorts": ports((81, "TCP"))}])],
            tcp(80, 81),
        ),
        one(
            "CCNP clusterwide: pod=a accepts only pod=b of any namespace",
            [cnp("a-from-b", None, a, ingress=[{"fromEndpoints": [
                {"matchLabels": {"pod": "b"}, "matchExpressions": [
                    {"key": NS_LABEL, "operator": "Exists"}]}]}])],
            tcp(80),
        ),
        one(
            "CNP fromEntities cluster (x) and world (y)",
            [cnp("cluster", "x", {}, ingress=[{"fromEntities": ["cluster"]}]),
             cnp("world", "y", {}, ingress=[{"fromEntities": ["world"]}])],
            tcp(80),
        ),
        one(
            "CNP toPorts protocol ANY on port 80",
            [cnp("any-80", "x", b, ingress=[{"fromEndpoints": [{}], "toPorts": ports((80, "ANY"))}])],
            (*tcp(80, 81), ProbeCase(80, "UDP", agreement_only)),
        ),
        one(
            "CNP an empty ingress rule selects nothing but makes x/c default-deny",
            [cnp("empty", "x", c, ingress=[{}])],
            tcp(80),
        ),
        one(
            "CNP named port and endPort range on UDP",
            [cnp("named", "y", a, ingress=[{"fromEntities": ["cluster"],
                                             "toPorts": ports(("serve-81-tcp", "TCP"))}]),
             cnp("range", "z", {}, ingress=[{"fromEntities": ["cluster"],
                                             "toPorts": ports((80, "UDP"), end=81)}])],
            (*tcp(80, 81), ProbeCase(81, "UDP", agreement_only)),
        ),
        one(
            "CNP fromCIDR of a pod's address (CIDR rules and cluster identities)",
            lambda ips: [cnp("cidr", "x", a, ingress=[{"fromCIDR": [f"{ips['y/a']}/32"]}])],
            tcp(80),
        ),
        one(
            "CNP matchExpressions NotIn across namespaces, egress side",
            [cnp("not-b", "z", {}, egress=[{"toEndpoints": [{"matchExpressions": [
                {"key": NS_LABEL, "operator": "Exists"},
                {"key": "pod", "operator": "NotIn", "values": ["b"]}]}]}])],
            tcp(80),
        ),
    ]  # fmt: skip


CILIUM_CASES = tuple(_cilium_cases())


@pytest.mark.parametrize("case", CILIUM_CASES, ids=[c.name for c in CILIUM_CASES])
def test_cilium_policy_agreement(xyz: Live, case: Case) -> None:
    with timed(case.name):
        failures, _ = run_case(xyz, case)
    assert not failures, "model and kernel disagree:\n" + "\n".join(failures)


# --- the examples ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    port: int
    protocol: str = "TCP"
    http: tuple[str, str] | None = None


def check_examples(
    state: Path,
    base: Sequence[Path],
    variants: Mapping[str, Sequence[Path]],
    probes: Sequence[Probe],
) -> list[str]:
    """Bring ``base`` up once; for each variant apply its files (one batch), compare
    every probe, delete them again."""
    reach.create_cluster(state)
    live = Live(state)
    try:
        if base:
            live.cli("apply", *(a for f in base for a in ("-f", str(f))))
        runtime.up(Context(state_dir=state, stdout=io.StringIO(), stderr=io.StringIO()))
        failures: list[str] = []
        for name, files in variants.items():
            args = [a for f in files for a in ("-f", str(f))]
            if args:
                live.cli("apply", *args)
            try:
                for p in probes:
                    req = f" {p.http[0]} {p.http[1]}" if p.http else ""
                    _, _, diff = live.compare(
                        f"{name} {p.port}/{p.protocol}{req}", p.port, p.protocol, p.http
                    )
                    failures += diff
            finally:
                if args:
                    live.cli("delete", "--ignore-not-found", *args)
    finally:
        down_cluster(live)
    return failures


def _need(*paths: Path) -> None:
    for p in paths:
        if not p.exists():
            pytest.skip(f"example not found: {p}")


def test_networking101_agreement(tmp_path: Path) -> None:
    _skip_without_kernel()
    wl = example_file("networking101/workloads.yaml")
    _need(wl)
    with timed("networking101"):
        failures = check_examples(
            tmp_path, [wl], {"no policy": []}, [Probe(80), Probe(80, "UDP"), Probe(8080)]
        )
    assert not failures, "\n".join(failures)


def test_network_policy_examples_agreement(tmp_path: Path) -> None:
    _skip_without_kernel()
    np = shared_examples() / "network-policy"
    _need(np / "apps.yaml")
    ing, egr = np / "ingress-backend-rule.yaml", np / "egress-frontend-rule.yaml"
    with timed("network-policy"):
        failures = check_examples(
            tmp_path,
            [np / "apps.yaml"],
            {
                "no policy": [],
                "ingress-backend-rule": [ing],
                "egress-frontend-rule": [egr],
                "both rules": [ing, egr],
            },
            [Probe(80), Probe(53, "UDP")],
        )
    assert not failures, "\n".join(failures)


def test_http_aware_rule_agreement(tmp_path: Path) -> None:
    """The HTTP-aware rule through both datapaths, every pair on every probe: the kernel
    hands the connections its redirect entries select to the node's L7 proxy
    (``bpf/lib/proxy.h``, ``servers/proxy.py``), which decides each request with the
    model's matcher (``control.l7``) on the entry the same lookup chose; ``GET
    /private`` is answered 403 in both, a plain connection is accepted in both."""
    _skip_without_kernel()
    np = shared_examples() / "network-policy"
    pods = SCENARIO_DATA / "frontends.yaml"
    _need(np / "http-aware-rule.yaml", pods)
    rule = np / "http-aware-rule.yaml"
    reach.create_cluster(tmp_path)
    live = Live(tmp_path)
    try:
        live.cli("apply", "-f", str(pods), "-f", str(rule))
        runtime.up(Context(state_dir=tmp_path, stdout=io.StringIO(), stderr=io.StringIO()))
        with timed("http-aware-rule"):
            failures: list[str] = []
            probes = (
                Probe(80),
                Probe(80, http=("GET", "/public")),
                Probe(80, http=("GET", "/private")),
                Probe(81),
                Probe(80, "UDP"),
            )
            for p in probes:
                failures += live.compare(f"{p}", p.port, p.protocol, p.http)[2]
        assert not failures, "\n".join(failures)
    finally:
        down_cluster(live)


def test_ebook_three_tier_agreement(tmp_path: Path) -> None:
    _skip_without_kernel()
    eb = shared_examples() / "ebook"
    clients = SCENARIO_DATA / "three-tier-clients.yaml"
    _need(eb / "three-tier-policies.yaml", clients)
    with timed("ebook three-tier"):
        failures = check_examples(
            tmp_path,
            [eb / "three-tier-policies.yaml", clients],
            {"three-tier-policies": []},
            [Probe(6379), Probe(8080), Probe(80), Probe(53, "UDP")],
        )
    assert not failures, "\n".join(failures)


def test_ebook_redis_ipblock_agreement(tmp_path: Path) -> None:
    """The redis ipBlock policy, with the ebook's Multus pod (a macvlan second network)
    among the peers: its primary address is what the policy sees."""
    _skip_without_kernel()
    eb = shared_examples() / "ebook"
    clients = SCENARIO_DATA / "redis-clients.yaml"
    _need(eb / "redis-ingress-ipblock.yaml", clients)
    multus = [eb / "multus-macvlan.yaml"] if (eb / "multus-macvlan.yaml").exists() else []
    with timed("ebook redis ipBlock"):
        failures = check_examples(
            tmp_path,
            [clients, *multus],
            {"no policy": [], "redis-ingress-ipblock": [eb / "redis-ingress-ipblock.yaml"]},
            [Probe(6379), Probe(6380), Probe(9999)],
        )
    assert not failures, "\n".join(failures)


# --- the CLI -------------------------------------------------------------------------------


def test_cli_reach_datapath_kernel(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``ciliate reach --datapath kernel -f ... -o json`` prints byte for byte what
    ``ciliate reach -f ... -o json`` prints (same generated pod names: the ephemeral
    cluster is the model's), and leaves nothing behind."""
    _skip_without_kernel()
    np = shared_examples() / "network-policy"
    _need(np / "apps.yaml", np / "ingress-backend-rule.yaml")
    files = ["-f", str(np / "apps.yaml"), "-f", str(np / "ingress-backend-rule.yaml")]
    downed: list[Path] = []
    real_down = runtime.down

    def down(ctx: Any, timeout: float = 20.0) -> list[str]:
        downed.append(Path(ctx.state_dir))
        return real_down(ctx, timeout)

    monkeypatch.setattr(reach.runtime, "down", down)

    def run(*argv: str) -> str:
        out, err = io.StringIO(), io.StringIO()
        ctx = Context(state_dir=tmp_path / "unused", stdout=out, stderr=err)
        rc = main(["reach", *files, "--port", "80", "-o", "json", *argv], ctx)
        assert rc == 0, err.getvalue()
        return out.getvalue()

    with timed("cli reach --datapath kernel"):
        kernel = run("--datapath", "kernel")
    model = run()
    assert kernel == model
    doc = json.loads(kernel)
    assert list(doc) == ["port", "protocol", "pods", "matrix"] and len(doc["pods"]) == 8
    assert not all(v for row in doc["matrix"].values() for v in row.values())  # a policy bites
    assert len(downed) == 1 and not downed[0].exists()  # state directory removed
    names = runtime.KernelPaths(downed[0]).names
    assert not nl.list_netns(names.prefix) and not names.pin_root.exists()
