"""The prober on its own: what it calls allowed and denied must be right, or the
agreement suite proves nothing. Probes run in a private namespace this module creates
(loopback, and a veth pair whose far end never answers ARP), removed afterwards.

The matrix's JSON and table shape need no privileges and run everywhere.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from ciliate.datapath.linux.reach import KernelMatrix

NS = f"ciliate-agrprobe-{os.getpid()}"
SILENT = "10.77.0.2"  # routed to a veth end without an address: ARP never answered


def test_matrix_json_and_table_shape() -> None:
    pods = ("x/a", "x/b")
    m = KernelMatrix(80, "TCP", pods, {"x/a": {"x/a": True, "x/b": False},
                                       "x/b": {"x/a": True, "x/b": True}})  # fmt: skip
    assert m.to_json() == {
        "port": 80,
        "protocol": "TCP",
        "pods": ["x/a", "x/b"],
        "matrix": {"x/a": {"x/a": True, "x/b": False}, "x/b": {"x/a": True, "x/b": True}},
    }
    assert m.table().splitlines()[1].split() == ["x/a", ".", "X"]
    unknown = KernelMatrix(
        80,
        "SCTP",
        pods,
        {"x/a": {"x/a": True, "x/b": None}, "x/b": {"x/a": None, "x/b": True}},
        unverified="SCTP: no sockets",
    )
    doc = unknown.to_json()
    assert doc["unverified"] == "SCTP: no sockets" and doc["matrix"]["x/a"]["x/b"] is None
    assert "?" in unknown.table() and "not probed: SCTP: no sockets" in unknown.table()


# --- privileged: probes in a namespace of our own ----------------------------------------


@pytest.fixture(scope="module")
def ns() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root (probes run in a private network namespace)")
    from ciliate.datapath.linux import netns as nl

    try:
        nl.ensure_netns(NS)
        ipr = nl.open_rtnl(NS)
        try:
            nl.ensure_up(ipr, "lo")
            nl.ensure_veth(ipr, nl.LinkSpec("agrp0"), nl.LinkSpec("agrp1"))
            nl.add_address(ipr, nl.link_index(ipr, "agrp0"), "10.77.0.1/24")
            nl.ensure_up(ipr, "agrp0")
            nl.ensure_up(ipr, "agrp1")
        finally:
            ipr.close()
    except Exception as e:
        nl.delete_netns(NS)
        pytest.skip(f"cannot create a namespace with veth here: {e}")
    try:
        yield NS
    finally:
        nl.delete_netns(NS)


@pytest.mark.privileged
def test_tcp_and_udp_response_through_a_probe_listener(ns: str) -> None:
    from ciliate.datapath.linux.probe import Listeners, Target, probe

    me = Target("t/me", "127.0.0.1", ns)
    with Listeners() as ls:
        assert ls.ensure(me, 8081, "TCP") and ls.ensure(me, 8081, "UDP")
        assert not ls.ensure(me, 8081, "TCP")  # taken: a workload would be serving it
        assert probe(me, me, 8081, "TCP", 1.0).allowed
        out = probe(me, me, 8081, "UDP", 1.0)
        assert out.allowed and out.detail == "response"


@pytest.mark.privileged
def test_refused_counts_as_delivered(ns: str) -> None:
    from ciliate.datapath.linux.probe import Target, probe

    me = Target("t/me", "127.0.0.1", ns)
    tcp = probe(me, me, 8099, "TCP", 1.0)
    assert tcp.allowed and tcp.detail == "refused"
    udp = probe(me, me, 8099, "UDP", 1.0)  # ICMP port unreachable came back
    assert udp.allowed and udp.detail == "refused"


@pytest.mark.privileged
def test_silence_is_denied_within_the_timeout(ns: str) -> None:
    from ciliate.datapath.linux.probe import Target, probe, probe_pairs

    me = Target("t/me", "127.0.0.1", ns)
    silent = Target("t/silent", SILENT, ns)
    for proto in ("TCP", "UDP"):
        out = probe(me, silent, 80, proto, 0.3)
        assert not out.allowed and out.detail in ("timeout", "EHOSTUNREACH"), out
    got = probe_pairs([(me, silent), (me, me)], 8099, "TCP", 0.3)
    assert [o.allowed for o in got] == [False, True]  # input order kept


@pytest.mark.privileged
def test_sctp_availability_matches_the_kernel(ns: str) -> None:
    from ciliate.datapath.linux.probe import sctp_unavailable

    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM, 132).close()
        have = True
    except OSError:
        have = False
    reason = sctp_unavailable(ns)
    assert (reason is None) == have, reason
