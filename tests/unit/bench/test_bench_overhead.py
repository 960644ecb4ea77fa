"""bench/overhead.py: paired service-lookup overheads and the iptables/ciliate ratio rule
(exact, lower bound when ours is within noise, n/a) -- no kernel, no timing."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repo root holds bench/

from bench import overhead as oh

NAN = math.nan


def test_paired_differences_pair_by_rep_and_drop_missing_reps() -> None:
    assert oh.paired_differences([51.0, NAN, 53.0, 50.0], [50.0, 50.0, NAN, 49.5]) == [1.0, 0.5]
    assert oh.paired_differences([], []) == []


def test_noise_floor_is_the_upper_quartile_of_null_differences_never_below_resolution() -> None:
    assert oh.noise_floor([0.2, -0.6, 0.4, -0.2, NAN]) == pytest.approx(0.45)
    assert oh.noise_floor([0.01, -0.02]) == oh.RESOLUTION_US
    assert oh.noise_floor([]) == oh.RESOLUTION_US


def test_resolved_overhead_gives_the_median_of_per_rep_ratios_with_spread() -> None:
    theirs = [170.0, 180.0, 175.0, 160.0, 190.0]
    ours = [2.0, 2.0, 2.5, 1.6, 2.0]
    c = oh.compare(theirs, ours, noise=0.2)
    assert c.kind is oh.Kind.EXACT
    assert c.value == pytest.approx(90.0)  # ratios 85, 90, 70, 100, 95
    assert (c.q1, c.q3) == (pytest.approx(85.0), pytest.approx(95.0))
    assert c.text() == "90.0× [85.0–95.0]"


def test_overhead_within_noise_gives_a_lower_bound_from_its_upper_quartile() -> None:
    # the median is 0.05 µs: dividing by it would claim 3,500x; the bound uses q3 = 0.3
    theirs = [175.0, 175.0, 175.0, 175.0, 175.0]
    ours = [-0.4, 0.05, 0.3, 0.05, 0.6]
    c = oh.compare(theirs, ours, noise=0.2)
    assert c.kind is oh.Kind.LOWER_BOUND
    assert c.value == pytest.approx(175.0 / 0.3)
    assert c.text() == "≥ 583×" and math.isnan(c.q1)
    assert "within noise" in c.why


def test_a_negative_overhead_is_bounded_by_the_noise_not_divided_by() -> None:
    c = oh.compare([100.0, 110.0, 120.0], [-0.5, -0.3, -0.4], noise=0.25)
    assert c.kind is oh.Kind.LOWER_BOUND
    assert c.value == pytest.approx(110.0 / 0.25)


def test_no_claim_when_their_overhead_is_noise_or_nothing_was_paired() -> None:
    assert oh.compare([0.1, 0.05], [0.02, 0.01], noise=0.2).kind is oh.Kind.NONE
    c = oh.compare([NAN, 5.0], [1.0, NAN], noise=0.2)
    assert c.kind is oh.Kind.NONE and c.text() == "n/a"
    assert set(c.as_dict()) == {"kind", "value", "q1", "q3", "text", "why"}
