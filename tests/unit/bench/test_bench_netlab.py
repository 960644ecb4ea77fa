"""The statistics and parsers of bench/netlab.py (no kernel, no timing)."""

from __future__ import annotations

import json
import math
import os
import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repo root holds bench/

from bench import netlab as nl
from bench.suite_datapath import (
    METRICS,
    Target,
    iptables_policy,
    policies_manifest,
    summarize_results,
)
from bench.suite_services import kube_proxy_rules, service_ip


def test_quantile_interpolates_like_numpy_linear() -> None:
    xs = [4.0, 1.0, 3.0, 2.0]
    assert nl.quantile(xs, 0.0) == 1.0
    assert nl.quantile(xs, 1.0) == 4.0
    assert nl.quantile(xs, 0.5) == 2.5
    assert nl.quantile(xs, 0.25) == pytest.approx(1.75)
    assert nl.median([5.0]) == 5.0
    assert math.isnan(nl.median([]))
    with pytest.raises(ValueError):
        nl.quantile(xs, 1.5)


def test_summarize_ignores_missing_runs() -> None:
    s = nl.summarize([3.0, math.nan, 1.0, 2.0])
    assert (s.n, s.median, s.lo, s.hi) == (3, 2.0, 1.0, 3.0)
    assert s.q1 == pytest.approx(1.5) and s.q3 == pytest.approx(2.5)
    assert nl.summarize([]).n == 0 and math.isnan(nl.summarize([]).median)
    assert set(s.as_dict()) == {"n", "median", "q1", "q3", "min", "max"}


def test_ratios_never_invent_a_number() -> None:
    assert nl.ratio(3.0, 2.0) == 1.5
    assert math.isnan(nl.ratio(1.0, 0.0))
    assert math.isnan(nl.ratio(math.nan, 1.0))
    # per-rep pairs; a rep with a missing value drops out rather than skewing the median
    assert nl.paired_ratios([2.0, math.nan, 6.0], [1.0, 1.0, 3.0]) == [2.0, 2.0]


def test_drift_guard() -> None:
    assert nl.drift_ok(3.0, 3.2)
    assert not nl.drift_ok(3.0, 3.4)  # 13 % apart
    assert nl.drift_ok(3.3, 3.0)  # relative to the smaller, symmetric
    assert not nl.drift_ok(math.nan, 3.0)
    assert not nl.drift_ok(0.0, 0.0)


def test_rep_loop_retries_a_drifted_rep_then_flags_it() -> None:
    calls: list[int] = []

    def body(rep: int) -> tuple[float, float]:
        calls.append(rep)
        return (1.0, 2.0) if rep == 1 else (1.0, 1.05)

    out = list(nl.rep_loop(3, body, lambda r: r, retries=2))
    assert [(rep, noisy) for rep, _, noisy in out] == [(0, False), (1, True), (2, False)]
    assert calls == [0, 1, 1, 1, 2]


SOCKPERF = """\
sockperf: [Valid Duration] RunTime=1.548 sec; SentMessages=79040; ReceivedMessages=79040
sockperf: ====> avg-latency=9.775 (std-dev=110.516)
sockperf: ---> percentile 99.000 =   17.748
sockperf: ---> percentile 90.000 =    3.033
sockperf: ---> percentile 50.000 =    2.834
"""


def test_parse_sockperf() -> None:
    rr = nl.parse_sockperf(SOCKPERF)
    assert rr.p50 == 2.834 and rr.p99 == 17.748
    assert rr.rr_per_s == pytest.approx(79040 / 1.548)
    bad = nl.parse_sockperf("sockperf: ERROR: connect failed")
    assert math.isnan(bad.p50) and math.isnan(bad.rr_per_s)


def test_parse_iperf3() -> None:
    doc = {"end": {"sum_received": {"bits_per_second": 4.5e9},
                   "sum_sent": {"bits_per_second": 4.6e9, "retransmits": 7}}}  # fmt: skip
    s = nl.parse_iperf3(json.dumps(doc))
    assert s.gbps == 4.5 and s.retransmits == 7
    assert math.isnan(nl.parse_iperf3('{"error": "unable to connect"}').gbps)
    assert math.isnan(nl.parse_iperf3("").gbps)


def test_fmt_and_tables() -> None:
    assert nl.fmt(3.04123) == "3.04"
    assert nl.fmt(46.61) == "46.6"
    assert nl.fmt(1234.5) == "1234"
    assert nl.fmt(math.nan) == "n/a"
    text = nl.table(["a", "b"], [["x", "1"], ["yy", "22"]])
    assert text.splitlines() == ["a    b", "x    1", "yy  22"]
    md = nl.markdown_table(["a", "b"], [["x", "1"]])
    assert md.splitlines() == ["| a | b |", "|---|---|", "| x | 1 |"]


def test_in_netns_pins_and_enters() -> None:
    assert nl.in_netns("n1", ["true"], cpu=1) == [
        "taskset", "-c", "1", "nsenter", "--net=/run/netns/n1", "--", "true"]  # fmt: skip
    assert nl.in_netns("/proc/1/ns/net", ["true"])[:2] == ["nsenter", "--net=/proc/1/ns/net"]


def test_iptables_policy_is_established_first_and_allows_last() -> None:
    text = iptables_policy("10.0.0.2", "10.0.0.1", [11111], 1000)
    chain = [line for line in text.splitlines() if line.startswith("-A BENCH-POD-SRV")]
    assert len(chain) == 1 + 999 + 1 + 1
    assert "ESTABLISHED" in chain[0] and chain[-1].endswith("-j DROP")
    assert "--dport 11111" in chain[-2]


def test_policies_select_the_server_and_allow_the_client_once_on_the_measured_ports() -> None:
    docs = [json.loads(d) for d in policies_manifest(5).split("\n---\n")]
    assert len(docs) == 5
    assert all(d["spec"]["endpointSelector"] == {"matchLabels": {"app": "srv"}} for d in docs)
    ports = [p["port"] for d in docs for r in d["spec"]["ingress"] for tp in r["toPorts"]
             for p in tp["ports"]]  # fmt: skip
    assert ports.count("11111") == 1 and len(set(ports)) == len(ports)


def test_the_throughput_ratio_is_to_the_baseline_stream_next_to_the_variant() -> None:
    """Single-stream throughput drifts over a rep: its ratio uses the group baseline's
    stream measured right next to the variant's (gbps_pair), while latency ratios stay
    per rep against the baseline's own runs."""
    veth = Target("veth", "same", "ns-a", "10.0.0.1")
    cil = Target("cil-0", "same", "ns-b", "10.0.0.2")

    def runs(**vals: list[float]) -> dict[str, list[float]]:
        return {m: vals.get(m, [1.0, 1.0, 1.0]) for m in METRICS}

    raw = {
        # the rep's baseline (mean of its first and last run) drifted up...
        "veth": runs(gbps=[22.0, 24.0, 23.0], gbps_pair=[22.0, 24.0, 23.0], rr_p50=[2.0] * 3),
        # ...the stream next to the variant saw the machine as the variant did
        "cil-0": runs(gbps=[19.0, 19.0, 19.0], gbps_pair=[20.0, 21.0, 20.0], rr_p50=[2.2] * 3),
    }
    summary = summarize_results([veth, cil], raw, 3, False, 0, {}, 0)["summary"]
    assert summary["cil-0"]["ratio_gbps"]["median"] == pytest.approx(0.95)
    assert summary["cil-0"]["ratio_rr_p50"]["median"] == pytest.approx(1.1)
    assert summary["veth"]["ratio_gbps"]["median"] == pytest.approx(1.0)
    assert "ratio_gbps_pair" not in summary["cil-0"]


def test_kube_proxy_layout() -> None:
    vips = [service_ip(i) for i in range(3)]
    assert vips == ["10.96.0.10", "10.96.0.11", "10.96.0.12"]
    assert service_ip(300) == "10.96.1.54"
    text = kube_proxy_rules(vips, ["10.244.1.20", "10.244.1.21", "10.244.1.22"])
    lines = text.splitlines()
    svc_rules = [x for x in lines if x.startswith("-A KUBE-SERVICES") and "cluster IP" in x]
    assert [x.split()[3] for x in svc_rules] == [f"{v}/32" for v in vips]  # the target last
    assert text.endswith("COMMIT\n") and text.count("COMMIT") == 2
    # per service: 1/3 then 1/2 then the last endpoint unconditionally
    probs = [x.split("--probability ")[1].split()[0] for x in lines if "--probability" in x]
    assert probs[:2] == ["0.33333333333", "0.50000000000"]
    dnat = [x for x in lines if "DNAT --to-destination" in x]
    assert len(dnat) == 9
    chains = [x for x in lines if x.startswith(":KUBE-SVC-") or x.startswith(":KUBE-SEP-")]
    assert len(chains) == len(set(chains)) == 3 + 9
    assert all(len(c.split()[0]) == len(":KUBE-SVC-") + 16 for c in chains)


class _InterruptedCluster:
    """A cluster whose teardown is hit by a second ^C (the user pressing it again)."""

    def __init__(self) -> None:
        self.down_finished = False

    def down(self) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        self.down_finished = True


def test_a_signal_during_cleanup_does_not_cut_it_short() -> None:
    before = signal.getsignal(signal.SIGINT)
    lab = nl.Lab("unit")
    cluster = _InterruptedCluster()
    lab.clusters.append(cluster)  # type: ignore[arg-type]
    with lab:
        pass
    assert cluster.down_finished
    assert not lab.tmp.exists()  # the rest of the cleanup ran too
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored
