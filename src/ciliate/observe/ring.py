"""A bounded, thread-safe ring of flows with a monotonic sequence (Hubble's ring buffer).

Role: the agent (or the model datapath) ``append``s every flow; readers ask for the
``last(n)`` flows, the flows ``since(t)``, or follow with a cursor: ``read_after(seq)``
returns the flows appended after ``seq`` and the new cursor, and ``wait_after`` blocks
until there are some. When a reader falls further behind than the capacity, the
overwritten flows are gone; ``lost_after(seq)`` says how many (Hubble reports them as
LostEvent HUBBLE_RING_BUFFER).

The default capacity is 4095 flows, Hubble's default (2^n − 1). Sequence numbers start
at 1 and never repeat, so a cursor stays meaningful across wrap-around. Pure: only the
standard library's ``threading``/``collections`` (no I/O, no clock reads).

Imports ``observe.flow`` and the standard library (``threading`` for the lock); no I/O.
Must not import the datapaths or the CLI.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable

from ciliate.observe.flow import Flow

DEFAULT_CAPACITY = 4095


class FlowRing:
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._flows: deque[Flow] = deque(maxlen=capacity)
        self._last_seq = 0  # sequence of the newest flow (0 = none yet)
        self._cond = threading.Condition()

    # --- writing ----------------------------------------------------------------------

    def append(self, flow: Flow) -> int:
        """Add a flow (evicting the oldest when full); return its sequence number."""
        with self._cond:
            self._flows.append(flow)
            self._last_seq += 1
            self._cond.notify_all()
            return self._last_seq

    def extend(self, flows: Iterable[Flow]) -> int:
        with self._cond:
            for f in flows:
                self._flows.append(f)
                self._last_seq += 1
            self._cond.notify_all()
            return self._last_seq

    # --- reading ----------------------------------------------------------------------

    @property
    def last_seq(self) -> int:
        """The sequence of the newest flow; a follower starting now uses it as cursor."""
        with self._cond:
            return self._last_seq

    @property
    def first_seq(self) -> int:
        """The sequence of the oldest flow still held (last_seq + 1 when empty)."""
        with self._cond:
            return self._last_seq - len(self._flows) + 1

    def __len__(self) -> int:
        with self._cond:
            return len(self._flows)

    def snapshot(self) -> list[Flow]:
        """All flows held, oldest first."""
        with self._cond:
            return list(self._flows)

    def last(self, n: int) -> list[Flow]:
        """The newest ``n`` flows, oldest first (``hubble observe --last n``)."""
        if n <= 0:
            return []
        with self._cond:
            k = min(n, len(self._flows))
            return [self._flows[i] for i in range(len(self._flows) - k, len(self._flows))]

    def first(self, n: int) -> list[Flow]:
        """The oldest ``n`` flows held (``--first n``)."""
        with self._cond:
            return [self._flows[i] for i in range(min(max(n, 0), len(self._flows)))]

    def since(self, time_ns: int, until_ns: int | None = None) -> list[Flow]:
        """Flows with ``time_ns <= flow.time_ns`` (``< until_ns`` when given)."""
        with self._cond:
            return [
                f
                for f in self._flows
                if f.time_ns >= time_ns and (until_ns is None or f.time_ns < until_ns)
            ]

    def read_after(self, seq: int) -> tuple[list[Flow], int]:
        """Flows appended after cursor ``seq`` and the new cursor (follow mode).

        A cursor older than the ring's window gets what is still held (see
        ``lost_after`` for how many were missed).
        """
        with self._cond:
            return self._read_after_locked(seq)

    def _read_after_locked(self, seq: int) -> tuple[list[Flow], int]:
        held = len(self._flows)
        first = self._last_seq - held + 1
        start = max(seq + 1, first)
        if start > self._last_seq:
            # Nothing new (or a cursor from a ring that restarted): resume at the newest.
            return [], self._last_seq
        offset = start - first
        return [self._flows[i] for i in range(offset, held)], self._last_seq

    def lost_after(self, seq: int) -> int:
        """How many flows after ``seq`` were overwritten before being read."""
        with self._cond:
            first = self._last_seq - len(self._flows) + 1
            return max(0, first - (seq + 1))

    def wait_after(self, seq: int, timeout: float | None = None) -> tuple[list[Flow], int]:
        """Like ``read_after`` but blocks until a flow arrives or ``timeout`` passes."""
        with self._cond:
            self._cond.wait_for(lambda: self._last_seq > seq, timeout)
            return self._read_after_locked(seq)
