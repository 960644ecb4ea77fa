"""The upstream NetworkPolicy e2e truth tables, checked three independent ways:

1. the model datapath (``datapath.sim.probe`` over the DesiredState the control engine
   computes: the compiled per-endpoint policy maps walked packet by packet),
2. the compiled maps looked up directly (``reach.reach_matrix`` with ``mapstate.lookup``),
3. the rule-level oracle (``control.explain``), which never reads the maps.

A failure prints the expected and actual tables and the explanation of every wrong pair.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from netpol_cases import CASES, Case, Reach, Step

from ciliate.cli.cmd_policy import compute_reach, ephemeral_docs
from ciliate.control.reach import Matrix, build_view, explain_matrix, reach_matrix

Doc = dict[str, Any]
PORTS = (80, 81)
PROTOS = ("TCP", "UDP", "SCTP")


def pod_doc(key: str, labels: Mapping[str, str]) -> Doc:
    ns, name = key.split("/")
    ports = [
        {"containerPort": p, "protocol": proto, "name": f"serve-{p}-{proto.lower()}"}
        for p in PORTS
        for proto in PROTOS
    ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": dict(labels)},
        "spec": {"containers": [{"name": "cont", "image": "agnhost", "ports": ports}]},
    }


def base_docs(case: Case, step: Step) -> list[Doc]:
    docs: list[Doc] = []
    for ns in "xyz":
        labels = {"ns": ns, **step.ns_labels.get(ns, {})}
        docs.append(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels}}
        )
    for key in case.pods:
        labels = step.pod_labels.get(key) or {"pod": key.split("/")[1]}
        docs.append(pod_doc(key, labels))
    return docs


def render(pods: Sequence[str], table: Mapping[tuple[str, str], bool]) -> str:
    w = max(len(p) for p in pods)
    lines = [" " * w + "  " + " ".join(p.ljust(w) for p in pods)]
    for a in pods:
        lines.append(
            a.ljust(w) + "  " + " ".join(("." if table[(a, b)] else "X").ljust(w) for b in pods)
        )
    return "\n".join(lines)


def check(name: str, expected: Reach, got: Matrix, explain: Any) -> list[str]:
    wrong = [
        (a, b)
        for a in expected.pods
        for b in expected.pods
        if a != b and expected.m[(a, b)] != got.allowed[a][b]  # loopback ignored (upstream)
    ]
    if not wrong:
        return []
    actual = {(a, b): got.allowed[a][b] for a in expected.pods for b in expected.pods}
    out = [
        f"--- {name}: {len(wrong)} wrong pair(s)",
        "expected:",
        render(expected.pods, expected.m),
        "actual:",
        render(expected.pods, actual),
    ]
    for a, b in wrong:
        out.append(explain(a, b))
    return out


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_netpol_e2e(case: Case) -> None:
    failures: list[str] = []
    for si, step in enumerate(case.steps):
        reconciled, cfg = ephemeral_docs(base_docs(case, step))
        ips = {
            f"{d['metadata']['namespace']}/{d['metadata']['name']}": d["status"]["podIP"]
            for d in reconciled
            if d.get("kind") == "Pod"
        }
        docs = reconciled + step.policies(ips)
        view = build_view(cfg, docs)
        ev = view.evaluator()
        for probe in step.probes:
            expected = probe.expect(case.pods)
            label = f"step {si + 1} {probe.port}/{probe.protocol}"

            def why(a: str, b: str, probe: Any = probe, ev: Any = ev) -> str:
                return ev.explain(a, b, probe.port, probe.protocol).text()

            for how, got in (
                ("model datapath", compute_reach(docs, cfg, probe.port, probe.protocol, None)),
                ("compiled maps", reach_matrix(view, probe.port, probe.protocol)),
                ("explain oracle", explain_matrix(view, probe.port, probe.protocol)),
            ):
                assert set(got.pods) == set(case.pods), (how, got.pods)
                failures += check(f"{label} [{how}]", expected, got, why)
    assert not failures, "\n".join(failures)
