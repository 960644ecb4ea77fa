"""The services suite's pure parts: the exempted direct path in the kube-proxy layout, the
seeded random position, and the analysis from per-rep p50s to the README table."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repo root holds bench/

from bench import overhead as oh
from bench.suite_services import (
    LABELS,
    MAIN_HEADERS,
    PLAIN_PORT,
    analyse,
    kube_proxy_rules,
    mid_index,
    service_ip,
)


def test_the_direct_baseline_returns_before_kube_services_and_nothing_else_changes() -> None:
    vips = [service_ip(i) for i in range(3)]
    backends = ["10.244.1.20", "10.244.1.21", "10.244.1.22"]
    plain = kube_proxy_rules(vips, backends).splitlines()
    exempt = kube_proxy_rules(vips, backends, exempt_port=PLAIN_PORT).splitlines()
    added = [x for x in exempt if x not in plain]
    assert len(added) == 1 and f"--dport {PLAIN_PORT}" in added[0] and added[0].endswith("RETURN")
    prerouting = [x for x in exempt if x.startswith("-A PREROUTING")]
    assert prerouting[0] == added[0] and prerouting[1].endswith("-j KUBE-SERVICES")


def test_the_random_position_is_seeded_and_never_the_last_service() -> None:
    for size in (10, 100, 1000, 10000):
        assert mid_index(size) == mid_index(size)
        assert 0 <= mid_index(size) < size - 1
    assert mid_index(1) == 0


def _variant(
    vip: list[float], direct: list[float], walk: list[float]
) -> dict[str, dict[str, list[float]]]:
    p50 = {"vip": vip, "vip_mid": [v - 1.0 for v in vip], "direct": direct, "direct_walk": walk}
    return {k: {"p50": p50[k], "p99": [x * 2 for x in p50[k]]} for k in LABELS}


def test_analysis_pairs_overheads_by_rep_and_bounds_a_ratio_within_noise() -> None:
    raw = {
        # ciliate: VIP within noise of direct; direct_walk = direct (the null pair)
        "cil-10": _variant([40.0, 41.0, 40.5], [40.0, 40.9, 40.5], [40.1, 40.9, 40.4]),
        "cil-10000": _variant([40.1, 40.8, 40.6], [40.0, 40.9, 40.5], [40.0, 41.0, 40.5]),
        # iptables: +5 µs at 10, +175 µs at 10 k; a direct connection walks the chain too
        "ipt-10": _variant([46.0, 47.0, 46.5], [41.0, 42.0, 41.5], [41.2, 42.2, 41.7]),
        "ipt-10000": _variant([216.0, 217.0, 216.5], [41.0, 42.0, 41.5], [210.0, 211.0, 210.5]),
    }
    out = analyse(raw, [10, 10000])
    assert out["noise_us"] == pytest.approx(oh.RESOLUTION_US)  # null diffs all ≤ 0.1
    big = out["summary"]["10000"]
    assert big["iptables"]["overhead_us"]["median"] == pytest.approx(175.0)
    assert big["iptables"]["walk_us"]["median"] == pytest.approx(169.0)
    assert big["ciliate"]["overhead_us"]["median"] == pytest.approx(0.1)
    # ciliate's overhead (-0.1, 0.1, 0.1) is within noise: a bound, 175 / max(q3 0.1, 0.1)
    assert big["overhead_ratio"]["kind"] == "lower_bound"
    assert big["overhead_ratio"]["value"] == pytest.approx(1750.0)
    row = dict(zip(MAIN_HEADERS, out["rows"][1], strict=True))
    assert row["services"] == "10,000"
    assert row["overhead ratio iptables/ciliate"] == "≥ 1750×"
    assert row["iptables VIP p50 µs"] == "216" and row["ciliate VIP p50 µs"] == "40.6"
    assert out["table"][1] == row
    # lat(10 k)/lat(10) on the VIP totals, per rep
    assert big["cil_vs_smallest"]["median"] == pytest.approx(40.6 / 40.5)
    # direct-normalised: vip(10 k) / (direct(10 k) + overhead(10)), per rep
    norm = big["cil_vs_smallest_direct_normalised"]
    assert norm["median"] == pytest.approx(40.6 / 40.5) and norm["min"] == pytest.approx(
        40.8 / 41.0
    )


def test_analysis_reports_a_missing_variant_as_na_not_a_number() -> None:
    raw = {"cil-10": _variant([40.0], [39.0], [39.0])}
    out = analyse(raw, [10])
    row = dict(zip(MAIN_HEADERS, out["rows"][0], strict=True))
    assert row["iptables VIP p50 µs"] == "n/a"
    assert row["overhead ratio iptables/ciliate"] == "n/a"
