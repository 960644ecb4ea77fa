"""Injected time: the control plane and the model datapath never read the clock themselves."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch (wall clock)."""
        ...

    def monotonic(self) -> float:
        """Seconds of a monotonic clock (conntrack lifetimes)."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class FakeClock:
    """A clock that moves only when told to (tests, the model datapath)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._t = start
        self._m = 1000.0

    def now(self) -> float:
        return self._t

    def monotonic(self) -> float:
        return self._m

    def advance(self, seconds: float) -> None:
        self._t += seconds
        self._m += seconds
