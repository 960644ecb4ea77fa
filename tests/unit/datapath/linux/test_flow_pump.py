"""The agent's flow pump (``nodeprograms.FlowPump``) without a kernel: a fake ring buffer
hands it batches of events; every decodable, wanted event becomes one line of the node's
flow log, and an event that does not decode costs only itself, not its batch."""

from __future__ import annotations

import threading
from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from ciliate.datapath.flowlog import read_flows
from ciliate.datapath.linux.events import RawEvent, parse_event
from ciliate.datapath.linux.eventsynth import build_packet, build_tcp, build_trace, build_verdict
from ciliate.datapath.linux.nodeprograms import FlowPump
from ciliate.desired import DesiredState

WEB, CLIENT = IPv4Address("10.0.1.37"), IPv4Address("10.0.2.14")


class _Reader:
    def __init__(self, batches: list[list[RawEvent]]) -> None:
        self.batches = batches
        self.drained = threading.Event()
        self.closed = False

    def events(self, timeout_ms: int = 0) -> list[RawEvent]:
        if self.batches:
            return self.batches.pop(0)
        self.drained.set()
        self.drained.wait(timeout_ms / 1000)
        return []

    def close(self) -> None:
        self.closed = True


class _Impl:
    def __init__(self, reader: _Reader) -> None:
        self.reader = reader

    def events(self) -> _Reader:
        return self.reader


class _Progs:
    def __init__(self, reader: _Reader) -> None:
        self.impl: Any = _Impl(reader)


def _event(sport: int) -> RawEvent:
    pkt = build_packet(CLIENT, WEB, 6, build_tcp(sport, 8080))
    return parse_event(build_trace(0, 1547, 41190, 48213, 1547, 0, 105, pkt))


def _unenforced_verdict() -> RawEvent:
    pkt = build_packet(CLIENT, WEB, 6, build_tcp(1, 8080))
    rec = build_verdict(1547, 41190, 0, egress=True, proto=6, dport=8080, match_type=1,
                        payload=pkt)  # fmt: skip
    return parse_event(rec)


def test_pump_writes_one_line_per_flow_and_skips_only_the_bad_event(tmp_path: Path) -> None:
    state = DesiredState(cluster="default", nodes={}, identities={})
    broken = replace(_event(9), payload=None)  # type: ignore[arg-type]
    reader = _Reader(
        [
            [_event(1), _event(2), _unenforced_verdict()],
            [_event(3), broken, _event(4)],
        ]
    )
    pump = FlowPump(_Progs(reader), "kind-worker", state, tmp_path)  # type: ignore[arg-type]
    pump.start()
    assert reader.drained.wait(10)
    pump.close()
    assert reader.closed
    ports = [f.ports[0] for f in read_flows(tmp_path)]
    assert sorted(ports) == [1, 2, 3, 4]
    assert pump.count == 4
