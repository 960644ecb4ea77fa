"""KernelMaps' byte side without a kernel: every entry the control plane computes for
networking101 encodes to the sizes the C structs have, the shared policy map's key
round-trips to Cilium's per-endpoint key, and the runtime config round-trips."""

from __future__ import annotations

import io
from ipaddress import IPv4Address

import pytest

from _paths import example_file
from ciliate import codec
from ciliate.cli.context import Context
from ciliate.cli.main import main
from ciliate.cli.state import load_desired
from ciliate.datapath.linux.maps import (
    LOCAL_STRUCT_SIZES,
    KernelMaps,
    RuntimeConfig,
    policy_cilium_key,
    policy_shared_key,
)
from ciliate.desired import DesiredState, PolicyKey, node_maps, parse_policy_map_name

KEY_VALUE_SIZES = {
    "cilium_lxc": (20, 48),
    "cilium_ipcache": (24, 12),
    "cilium_lb4_services_v2": (12, 12),
    "cilium_lb4_backends_v3": (4, 12),
    "cilium_lb4_reverse_nat": (2, 6),
}


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> DesiredState:
    d = tmp_path_factory.mktemp("maps")

    def run(*argv: str) -> None:
        out = io.StringIO()
        rc = main(list(argv), Context(state_dir=d, stdout=out, stderr=out))
        assert rc == 0, out.getvalue()

    run("cluster", "create", "-f", str(example_file("cluster.yaml")))
    run("apply", "-f", str(example_file("networking101/workloads.yaml")))
    return load_desired(Context(state_dir=d, stdout=io.StringIO(), stderr=io.StringIO()))


def test_every_desired_entry_encodes_to_the_c_sizes(state: DesiredState) -> None:
    km = KernelMaps("/nonexistent")
    seen = set()
    for node in state.nodes.values():
        for name, contents in node_maps(node).items():
            for k, v in contents.items():
                if name == "cilium_lb4_maglev":
                    continue
                kb, vb = km.encode(name, k, v)
                assert vb is not None
                if parse_policy_map_name(name) is not None:
                    assert (len(kb), len(vb)) == (12, 12)
                    shared = policy_shared_key(parse_policy_map_name(name) or 0, kb)
                    assert len(shared) == LOCAL_STRUCT_SIZES["policy_key"]
                    seen.add("policy")
                else:
                    assert (len(kb), len(vb)) == KEY_VALUE_SIZES[name], name
                    seen.add(name)
    assert {"cilium_lxc", "cilium_ipcache", "policy"} <= seen


def test_policy_shared_key_round_trips_and_shifts_the_prefix() -> None:
    key = PolicyKey(identity=48213, egress=False, protocol=6, dport=8080, port_prefix_len=16)
    ck = codec.build_policy_key(key)
    shared = policy_shared_key(1547, ck)
    assert int.from_bytes(shared[0:4], "little") == int.from_bytes(ck[0:4], "little") + 32
    assert int.from_bytes(shared[4:8], "little") == 1547
    assert shared[8:] == ck[4:]
    assert policy_cilium_key(shared) == (1547, ck)
    assert codec.parse_policy_key(policy_cilium_key(shared)[1]) == key


def test_runtime_config_round_trips(state: DesiredState) -> None:
    node = next(iter(state.nodes.values()))
    cfg = RuntimeConfig.from_node(node)
    raw = cfg.build()
    assert len(raw) == LOCAL_STRUCT_SIZES["runtime_config"]
    assert RuntimeConfig.parse(raw) == cfg
    assert cfg.node_ip == node.internal_ip and cfg.host_ip == node.cilium_internal_ip
    host = next(d for d in node.devices if d.name == "cilium_host")
    vxlan = next(d for d in node.devices if d.name == "cilium_vxlan")
    assert (cfg.host_ifindex, cfg.vxlan_ifindex, cfg.host_mac) == (
        host.ifindex,
        vxlan.ifindex,
        host.mac,
    )
    assert raw[0:4] == IPv4Address(str(node.internal_ip)).packed  # network order


def test_unknown_map_has_no_codec() -> None:
    with pytest.raises(KeyError):
        KernelMaps("/nonexistent").encode("cilium_nope", 1, 2)
