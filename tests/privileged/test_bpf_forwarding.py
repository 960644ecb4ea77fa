"""The eBPF programs forward for real: ARP, same-node redirect, VXLAN across nodes, host
traffic, pinned maps readable by bpftool in Cilium's layouts, events decoded to flows,
and a reload that adopts the pinned maps without flushing them.

Each test checks the programs' own evidence (events on cilium_events, cilium_metrics), not
only that a ping came back, so a packet the kernel routed around the programs fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network

import pytest
from bpf_lab import Lab, connect, running_lab

from ciliate import codec
from ciliate.datapath.linux.events import EventReader, FlowEnricher, RawEvent, parse_event
from ciliate.datapath.linux.loader import NodeBPF
from ciliate.desired import EndpointKey, IPCacheKey
from ciliate.observe.flow import ICMPv4, TrafficDirection, Verdict
from ciliate.observe.jsonpb import to_json
from ciliate.observe.reasons import TraceObservationPoint

pytestmark = [pytest.mark.privileged]

TO_ENDPOINT, TO_OVERLAY = 0, 4


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with running_lab() as lab:
        yield lab


@pytest.fixture(scope="module")
def readers(lab: Lab) -> Iterator[dict[str, EventReader]]:
    rs = {}
    for name, node in lab.nodes.items():
        assert node.bpf is not None
        rs[name] = node.bpf.events()
    yield rs
    for r in rs.values():
        r.close()


def drain(readers: dict[str, EventReader]) -> None:
    for r in readers.values():
        r.poll(0)


def collect(reader: EventReader) -> list[RawEvent]:
    out: list[RawEvent] = []
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        batch = reader.poll(50)
        out.extend(parse_event(r) for r in batch)
        if not batch and out:
            break
    return out


def test_programs_attached_under_cilium_names(lab: Lab) -> None:
    out = lab.run("na", "bpftool", "net", "show").stdout
    a1 = lab.pods["a1"]
    assert f"{a1.lxc}(" in out and "clsact/ingress cil_from_container" in out
    for line in (
        "cilium_vxlan(",
        "clsact/ingress cil_from_overlay",
        "clsact/egress cil_to_overlay",
        "clsact/egress cil_from_host",
        "clsact/ingress cil_to_host",
        "clsact/ingress cil_from_netdev",
    ):
        assert line in out
    node = lab.nodes["na"].bpf
    assert node is not None
    assert node.attached(a1.lxc) == {"ingress": "cil_from_container"}
    # attaching again is a no-op (one filter, same program)
    node.attach(a1.lxc, "ingress", "cil_from_container")
    assert node.attached(a1.lxc) == {"ingress": "cil_from_container"}


def test_arp_for_the_gateway_is_answered_with_the_lxc_mac(lab: Lab) -> None:
    a2 = lab.pods["a2"]
    r = lab.run("a2", "arping", "-c", "1", "-w", "2", "-I", "eth0", "10.77.1.1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert a2.lxc_mac.upper() in r.stdout
    # the neighbour table of the pod then holds the gateway at the lxc MAC (arp -a)
    lab.ping("a2", "10.77.1.11", count=1)
    neigh = lab.run("a2", "ip", "neigh", "show", "10.77.1.1").stdout
    assert a2.lxc_mac.lower() in neigh.lower()


def test_same_node_ping_is_redirected_by_cil_from_container(
    lab: Lab, readers: dict[str, EventReader]
) -> None:
    node = lab.nodes["na"].bpf
    assert node is not None
    before = node.maps.metrics().get((0, 1), (0, 0))[0]
    drain(readers)
    assert lab.ping("a1", "10.77.1.12")
    events = collect(readers["na"])
    to_a2 = [e for e in events if e.subtype == TO_ENDPOINT and e.dst_id == 102]
    assert to_a2, events
    ev = to_a2[0]
    assert (ev.src_label, ev.dst_label, ev.reason) == (30001, 30002, 0)  # state new
    assert ev.ifindex == lab.pods["a2"].lxc_ifindex
    replies = [e for e in events if e.subtype == TO_ENDPOINT and e.dst_id == 101]
    assert replies and replies[0].reason == 2  # state reply
    assert node.maps.metrics()[(0, 1)][0] >= before + 4  # every packet counted as forwarded


def test_cross_node_ping_goes_through_vxlan_with_the_source_identity_as_vni(
    lab: Lab, readers: dict[str, EventReader]
) -> None:
    drain(readers)
    assert lab.ping("a1", "10.77.2.11")
    on_a = collect(readers["na"])
    on_b = collect(readers["nb"])
    out = [e for e in on_a if e.subtype == TO_OVERLAY and e.source == 101]
    assert out and out[0].vxlan and out[0].ifindex == lab.nodes["na"].vxlan_ifindex
    # on the far side the overlay's receive path took the identity from the VNI
    delivered = [e for e in on_b if e.subtype == TO_ENDPOINT and e.dst_id == 201]
    assert delivered, on_b
    assert delivered[0].vxlan
    assert delivered[0].src_label == lab.pods["a1"].identity


def packets(lab: Lab, node: str, dev: str, way: str = "rx") -> int:
    out = json.loads(lab.run(node, "ip", "-j", "-s", "link", "show", dev).stdout)[0]
    return int(out["stats64"][way]["packets"])


def rx_packets(lab: Lab, node: str, dev: str) -> int:
    return packets(lab, node, dev, "rx")


def test_vxlan_for_a_local_pod_is_built_and_taken_apart_without_the_device(
    lab: Lab, readers: dict[str, EventReader]
) -> None:
    """Native VXLAN (decision 0011): pod traffic to another node is encapsulated by the
    program and decapsulated on the far eth0's ingress, and never crosses the kernel's
    VXLAN device on either side; what is not for a local pod (here the node's own
    cilium_host address) still goes through the device."""
    before_b = rx_packets(lab, "nb", "cilium_vxlan")
    before_tx = packets(lab, "na", "cilium_vxlan", "tx")
    drain(readers)
    assert lab.ping("a1", "10.77.2.11", count=3)
    delivered = [e for e in collect(readers["nb"]) if e.subtype == TO_ENDPOINT and e.dst_id == 201]
    assert delivered and delivered[0].vxlan
    assert delivered[0].src_label == lab.pods["a1"].identity  # from the VNI
    assert rx_packets(lab, "nb", "cilium_vxlan") == before_b
    assert packets(lab, "na", "cilium_vxlan", "tx") == before_tx
    before_a = rx_packets(lab, "na", "cilium_vxlan")
    assert lab.ping("b1", "10.77.1.1", count=2)  # pod -> remote cilium_host
    assert rx_packets(lab, "na", "cilium_vxlan") >= before_a + 2


def test_a_packet_too_big_to_encapsulate_natively_takes_the_device(lab: Lab) -> None:
    """Above the path MTU once encapsulated (a pod route without the tunnel's 1450, a
    1500-byte packet that may be fragmented): the program leaves it to cilium_vxlan, which fragments
    the outer packet; the far node reassembles it and its device takes it (the native
    receive never touches fragments)."""
    pod = ["nsenter", f"--net=/run/netns/{lab.pods['a1'].netns}"]
    route = ["ip", "route", "change", "default", "via", "10.77.1.1", "dev", "eth0"]
    subprocess.run([*pod, *route, "mtu", "1500"], check=True)
    try:
        before_tx = packets(lab, "na", "cilium_vxlan", "tx")
        before_rx = rx_packets(lab, "nb", "cilium_vxlan")
        r = lab.run("a1", "ping", "-c", "2", "-M", "dont", "-s", "1472", "-W", "1", "10.77.2.11")
        assert r.returncode == 0, r.stdout + r.stderr
        assert packets(lab, "na", "cilium_vxlan", "tx") >= before_tx + 2
        assert rx_packets(lab, "nb", "cilium_vxlan") >= before_rx + 2
    finally:
        subprocess.run([*pod, *route, "mtu", "1450"], check=True)


_SINK = (
    "import hashlib, socket, sys\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('0.0.0.0', 9123)); s.listen(1); print('ready', flush=True)\n"
    "c, _ = s.accept(); h = hashlib.sha256()\n"
    "while (b := c.recv(1 << 16)):\n"
    "    h.update(b)\n"
    "print(h.hexdigest(), flush=True)\n"
)


def test_a_bulk_tcp_stream_across_nodes_arrives_intact(lab: Lab) -> None:
    """16 MiB pod -> remote pod: the sender's TCP hands 64 KiB GSO packets to the tunnel,
    the native receive path decapsulates them whole; every byte arrives, in order."""
    data = os.urandom(16 << 20)
    ns = lab.pods["b1"].netns
    sink = subprocess.Popen(["nsenter", f"--net=/run/netns/{ns}", "python3", "-c", _SINK],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
        sock = connect(lab, "a1", "10.77.2.11", 9123, timeout=10)
        assert isinstance(sock, socket.socket)
        with sock:
            sock.sendall(data)
        digest = sink.stdout.readline().strip()
    finally:
        sink.kill()
        sink.wait(5)
    assert digest == hashlib.sha256(data).hexdigest()


def test_host_and_node_traffic(lab: Lab) -> None:
    assert lab.ping("na", "10.77.1.11", count=1)  # host -> local pod (cil_from_host)
    assert lab.ping("na", "10.77.2.11", count=1)  # host -> remote pod (VNI host)
    assert lab.ping("a1", "192.168.77.1", count=1)  # pod -> own node
    assert lab.ping("b1", "10.77.1.1", count=1)  # pod -> remote cilium_host (to-host)


def test_bpftool_lookup_answers_with_the_codec_bytes(lab: Lab) -> None:
    a2 = lab.pods["a2"]
    key = codec.build_endpoint_key(EndpointKey(IPv4Address(a2.ip)))
    assert key.hex()[:8] == "0a4d010c" and key[16] == 1  # IP then family, as in the blog
    value = lab.bpftool_lookup("na", "cilium_lxc", key)
    assert value is not None
    info = codec.parse_endpoint_info(value)
    assert info.lxc_id == 102 and int.from_bytes(value[6:8], "little") == 102
    assert info.mac == a2.pod_mac and info.node_mac == a2.lxc_mac
    assert info.ifindex == a2.lxc_ifindex and info.sec_id == a2.identity
    ikey = codec.build_ipcache_key(IPCacheKey(IPv4Network("10.77.2.11/32")))
    assert ikey[:1] == b"\x40" and ikey[7] == 1  # prefix length 64, family IPv4
    ival = lab.bpftool_lookup("na", "cilium_ipcache", ikey)
    assert ival is not None
    assert int.from_bytes(ival[0:4], "little") == 30003
    assert ival[4:8] == IPv4Address("192.168.77.2").packed
    assert lab.bpftool_lookup("na", "cilium_lxc", bytes(20)) is None


def test_kernel_maps_dump_and_lookup(lab: Lab) -> None:
    node = lab.nodes["na"].bpf
    assert node is not None
    entries = dict(node.maps.dump("cilium_lxc"))
    key = codec.build_endpoint_key(EndpointKey(IPv4Address("10.77.1.11")))
    assert codec.parse_endpoint_info(entries[key]).lxc_id == 101
    assert node.maps.lookup("cilium_lxc", key) == entries[key]
    # LPM: a /32 lookup of an address only covered by 0.0.0.0/0 answers world
    k = codec.build_ipcache_key(IPCacheKey(IPv4Network("8.8.8.8/32")))
    v = node.maps.lookup("cilium_ipcache", k)
    assert v is not None and codec.parse_remote_endpoint_info(v).sec_identity == 2
    cfg = node.maps.runtime_config()
    assert cfg is not None and cfg.vxlan_ifindex == lab.nodes["na"].vxlan_ifindex


def test_events_decode_to_hubble_flows(lab: Lab, readers: dict[str, EventReader]) -> None:
    drain(readers)
    assert lab.ping("a2", "10.77.2.11", count=1)
    enricher = FlowEnricher(lab.desired(), "na")
    flows = [enricher.to_flow(e, time.time_ns()) for e in collect(readers["na"])]
    req = [f for f in flows if isinstance(f.l4, ICMPv4) and f.l4.type == 8]
    assert req, flows
    f = req[0]
    assert f.verdict is Verdict.FORWARDED
    assert f.trace_observation_point is TraceObservationPoint.TO_OVERLAY
    assert f.traffic_direction is TrafficDirection.EGRESS and f.is_reply is False
    assert f.source is not None and f.source.pod_name == "a2" and f.source.id == 102
    assert f.destination is not None and f.destination.pod_name == "b1"
    assert f.destination.id == 0  # remote endpoint: no local endpoint ID
    assert f.node_name == "lab/na"
    assert readers["na"].lost() == 0
    doc = to_json(f)["flow"]
    assert doc["IP"] == {"source": "10.77.1.12", "destination": "10.77.2.11", "ipVersion": "IPv4"}
    assert doc["trace_observation_point"] == "TO_OVERLAY"
    assert doc["Summary"] == "ICMPv4 EchoRequest"
    assert doc["source"]["identity"] == 30002


def test_reload_adopts_pinned_maps_without_flushing(lab: Lab) -> None:
    node = lab.nodes["na"]
    assert node.bpf is not None
    before = node.bpf.maps.dump("cilium_lxc")
    # a second process (a restarted agent) loads the same node: maps are adopted
    again = NodeBPF(lab.tag, node.name, node.netns)
    try:
        again.load()
        assert again.maps.dump("cilium_lxc") == before
        again.attach(lab.pods["a1"].lxc, "ingress", "cil_from_container")
        assert lab.ping("a1", "10.77.1.12", count=1)
    finally:
        again.close()
    assert node.bpf.maps.dump("cilium_lxc") == before


def test_forwarding_survives_the_agent_closing_every_handle(lab: Lab) -> None:
    """kill -9 of the agent closes its fds: the tc filters hold the programs and the pins
    hold the maps, so traffic keeps flowing with nobody in userspace."""
    for node in lab.nodes.values():
        assert node.bpf is not None
        node.bpf.close()
    assert lab.ping("a1", "10.77.1.12", count=1)
    assert lab.ping("a1", "10.77.2.11", count=1)
    node = lab.nodes["na"].bpf
    assert node is not None
    assert node.attached(lab.pods["a1"].lxc) == {"ingress": "cil_from_container"}


def test_fragmented_packets_are_forwarded(lab: Lab) -> None:
    """4000-byte pings: the later fragments carry no ICMP header (ports unknown)."""
    for dst in ("10.77.1.12", "10.77.2.11"):
        r = lab.run("a1", "ping", "-c", "1", "-s", "4000", "-W", "1", dst)
        assert r.returncode == 0, r.stdout + r.stderr


def test_an_incompatible_pinned_map_is_replaced_on_load(lab: Lab) -> None:
    """A pin left by a different layout (an upgrade) is replaced, the others adopted."""
    from ciliate.datapath.linux import bpf

    node = lab.nodes["nb"]
    assert node.bpf is not None
    pin = node.bpf.pin_dir
    lxc_before = NodeBPF(lab.tag, node.name, node.netns).maps.dump("cilium_lxc")
    # replace cilium_lb4_reverse_nat's pin by a map of another value size
    (pin / "cilium_lb4_reverse_nat").unlink()
    fd = _create_map(1, 2, 8, 16)  # a HASH with 8-byte values instead of 6
    try:
        bpf.obj_pin(fd, pin / "cilium_lb4_reverse_nat")
    finally:
        import os

        os.close(fd)
    again = NodeBPF(lab.tag, node.name, node.netns)
    try:
        again.load()
        info = again.maps.map("cilium_lb4_reverse_nat").info
        assert (info.key_size, info.value_size) == (2, 6)
        assert again.maps.dump("cilium_lxc") == lxc_before  # adopted, not flushed
    finally:
        again.close()


def _create_map(map_type: int, key_size: int, value_size: int, max_entries: int) -> int:
    import ctypes
    import struct

    from ciliate.datapath.linux import bpf

    attr = ctypes.create_string_buffer(128)
    struct.pack_into("<IIII", attr, 0, map_type, key_size, value_size, max_entries)
    return bpf._bpf(0, attr)  # BPF_MAP_CREATE


def test_conntrack_entries_use_ciliums_tuple_naming(lab: Lab) -> None:
    """ipv4_ct_tuple as Cilium (and the model) name it: the address fields are named for
    the reply (daddr holds the client), the ports for the original direction."""
    assert lab.ping("a1", "10.77.1.12", count=1)
    node = lab.nodes["na"].bpf
    assert node is not None
    tuples = [codec.parse_ct_tuple(k) for k, _ in node.maps.dump("cilium_ct_any4_global")]
    icmp = [t for t in tuples if t.nexthdr == 1 and t.saddr == IPv4Address("10.77.1.12")]
    assert icmp and icmp[0].daddr == IPv4Address("10.77.1.11") and icmp[0].flags == 0
    entries = dict(node.maps.dump("cilium_ct_any4_global"))
    e = codec.parse_ct_entry(entries[codec.build_ct_tuple(icmp[0])])
    assert e.src_sec_id == 30001 and e.lifetime > 0
    # the echo reply went through the same entry (its first reply-direction report time
    # is set); there are no packet counters, as in Cilium's default (no CT accounting)
    assert e.last_rx_report > 0
