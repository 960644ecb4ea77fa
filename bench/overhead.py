"""Paired overheads: what a service lookup adds to a connection, and how two datapaths'
overheads compare, without dividing by noise.

Role: the pure statistics of the services suite (goal G5 of issue 6: "≥ 20× lower CRR
latency overhead than iptables at 10 k"). A variant's run measures, interleaved
connection by connection, the service address (VIP) and the same backends directly;
per rep, ``overhead = p50(VIP) − p50(direct)``. Over reps: median and IQR.

Comparing two overheads (``compare``), in this order:

1. no paired rep, or ``theirs`` not above the noise: ``n/a`` (nothing to claim);
2. ``ours`` resolved -- its lower quartile above the noise: the per-rep ratios
   theirs/ours, median [IQR] (``exact``);
3. otherwise ``ours`` is within noise of zero: a **lower bound**, the median of
   ``theirs`` over the upper bound of ``ours`` -- its upper quartile, but never less than
   the noise (``≥ N×``). Dividing by a near-zero median would print a fake huge number.

The noise is measured, not assumed (``noise_floor``): in a ciliate variant two direct
targets reach the same backends on two ports, two identical paths, and their per-rep p50
difference is what the method cannot resolve. Its upper quartile, at least
``RESOLUTION_US``, is the floor.

Inputs: per-rep p50 values (µs). Outputs: lists, floats, ``Comparison``. No I/O.
Must not import ciliate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from bench.netlab import fmt, quantile, summarize

# The smallest difference of p50s this method claims to resolve: a few hundred samples per
# target give medians good to ~0.1 µs here even when two identical paths agree better.
RESOLUTION_US = 0.1


def paired_differences(xs: Sequence[float], base: Sequence[float]) -> list[float]:
    """Per-rep ``x − base`` (the same rep's run, so slow drift cancels); a rep with a
    missing value on either side drops out."""
    return [x - b for x, b in zip(xs, base, strict=False) if not (math.isnan(x) or math.isnan(b))]


def noise_floor(null_diffs: Sequence[float], resolution: float = RESOLUTION_US) -> float:
    """The overhead the method cannot tell from zero: the upper quartile of |difference|
    between two identical paths, at least ``resolution``."""
    vals = [abs(x) for x in null_diffs if not math.isnan(x)]
    return max(quantile(vals, 0.75), resolution) if vals else resolution


class Kind(Enum):
    EXACT = "exact"
    LOWER_BOUND = "lower_bound"
    NONE = "n/a"


@dataclass(frozen=True, slots=True)
class Comparison:
    """theirs/ours overhead ratio: exact (median of per-rep ratios with IQR), a lower
    bound, or n/a; ``why`` says which rule applied."""

    kind: Kind
    value: float
    q1: float
    q3: float
    why: str

    def text(self) -> str:
        if self.kind is Kind.EXACT:
            return f"{fmt(self.value)}× [{fmt(self.q1)}–{fmt(self.q3)}]"
        if self.kind is Kind.LOWER_BOUND:
            return f"≥ {fmt(self.value)}×"
        return "n/a"

    def as_dict(self) -> dict[str, float | str]:
        return {"kind": self.kind.value, "value": self.value, "q1": self.q1, "q3": self.q3,
                "text": self.text(), "why": self.why}  # fmt: skip


def compare(theirs: Sequence[float], ours: Sequence[float], noise: float) -> Comparison:
    """theirs/ours for per-rep overheads (µs, paired by rep); the rules of the module
    docstring, numbered the same."""
    pairs = [(t, o) for t, o in zip(theirs, ours, strict=False)
             if not (math.isnan(t) or math.isnan(o))]  # fmt: skip
    nan = math.nan
    if not pairs:  # 1.
        return Comparison(Kind.NONE, nan, nan, nan, "no rep measured both")
    t_sum = summarize([t for t, _ in pairs])
    o_sum = summarize([o for _, o in pairs])
    if t_sum.median <= noise:  # 1.
        return Comparison(Kind.NONE, nan, nan, nan,
                          f"their overhead {fmt(t_sum.median)} µs is within noise ({fmt(noise)} µs)")  # fmt: skip
    if o_sum.q1 > noise:  # 2.
        r = summarize([t / o for t, o in pairs])
        return Comparison(Kind.EXACT, r.median, r.q1, r.q3,
                          f"our overhead resolved: q1 {fmt(o_sum.q1)} µs > noise {fmt(noise)} µs")  # fmt: skip
    bound = max(o_sum.q3, noise)  # 3.
    return Comparison(Kind.LOWER_BOUND, t_sum.median / bound, nan, nan,
                      f"our overhead within noise of zero (median {fmt(o_sum.median)} µs, "
                      f"q3 {fmt(o_sum.q3)} µs, noise {fmt(noise)} µs): "
                      f"{fmt(t_sum.median)} µs / {fmt(bound)} µs")  # fmt: skip
