"""A node's pinned BPF maps, read and written with the control plane's codecs.

Role: ``KernelMaps(pin_dir)`` turns ``desired.MapChange``s into bpf() map updates and
deletes (``apply``), reconciles a whole ``NodeState`` against what the kernel holds
(``sync_node``: the agent's restart path, adopting the pinned maps without flushing them),
and reads maps back in Cilium's byte layouts (``dump``, ``lookup``) for ``ciliate bpf ...``.
It also writes the node's ``cilium_runtime_config`` and reads ``cilium_metrics``, and bumps
``cilium_policy_rev`` after every batch that changed policy entries: established flows
are checked against the policy again when their conntrack entry is older than that
revision (bpf/lib/conntrack.h), so a deny applies to flows already in conntrack.

Byte layouts come from ``ciliate.codec`` (Cilium's structs, cilium.md §3). Two maps are
stored differently from Cilium, on purpose (docs/decisions/0002-bpf-maps.md), and are
presented in Cilium's shape by ``dump``/``lookup``:

1. policy: one shared LPM map ``cilium_policy_v2`` keyed by
   ``{prefixlen + 32, u32 endpoint_id, <Cilium's policy_key after its prefixlen>}``;
   ``cilium_policy_v2_NNNNN`` names the per-endpoint view with Cilium's 12-byte key.
2. Maglev: one shared HASH ``cilium_lb4_maglev`` keyed ``{u16 rev_nat_index, u16 pad,
   u32 slot}`` -> u32 backend ID; the view keyed by rev_nat_index returns the M-entry array.

Inputs: MapChange / NodeState values (typed), map names and key bytes. Outputs: kernel map
state and bytes. Must not import the control plane engines or the store.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from ciliate import codec
from ciliate.datapath.linux import bpf
from ciliate.desired import MapChange, MapName, NodeState, node_maps, parse_policy_map_name

RUNTIME_CONFIG = "cilium_runtime_config"
POLICY_REV = "cilium_policy_rev"  # u32: bumped after each batch of policy map changes
METRICS = "cilium_metrics"
EVENTS = "cilium_events"
CT_TCP = "cilium_ct4_global"
CT_ANY = "cilium_ct_any4_global"
AFFINITY = "cilium_lb4_affinity"

RUNTIME_F_POLICY = 0x1
RUNTIME_F_LB = 0x2

# Layouts of the structs only ciliate has (checked against bpf/ by the layout test, with
# the codec's STRUCT_LAYOUTS).
LOCAL_STRUCT_LAYOUTS: dict[str, list[tuple[str, int, int]]] = {
    "runtime_config": [
        ("node_ip", 0, 4),
        ("host_ip", 4, 4),
        ("host_ifindex", 8, 4),
        ("vxlan_ifindex", 12, 4),
        ("flags", 16, 4),
        ("maglev_m", 20, 4),
        ("host_mac", 24, 8),
    ],
    # the shared policy map's key: Cilium's policy_key with the endpoint ID after prefixlen
    "policy_key": [
        ("prefixlen", 0, 4),
        ("endpoint_id", 4, 4),
        ("sec_label", 8, 4),
        ("egress", 12, 1),
        ("protocol", 13, 1),
        ("dport", 14, 2),
    ],
    "lb4_maglev_key": [("rev_nat_index", 0, 2), ("slot", 4, 4)],
    "metrics_key": [("reason", 0, 1), ("dir", 1, 1)],
    "metrics_value": [("count", 0, 8), ("bytes", 8, 8)],
}
LOCAL_STRUCT_SIZES = {
    "runtime_config": 32,
    "policy_key": 16,
    "lb4_maglev_key": 8,
    "metrics_key": 8,
    "metrics_value": 16,
}

_RUNTIME = struct.Struct("<4s4sIIII6s2x")
_EP_PREFIX = struct.Struct("<II")
_MAGLEV_KEY = struct.Struct("<HxxI")
_U32 = struct.Struct("<I")
_MAGLEV = MapName.LB4_MAGLEV.value


@dataclass(frozen=True, slots=True)
class RuntimeConfig:
    """What Cilium compiles into node_config.h, as one ARRAY entry filled by the agent."""

    node_ip: IPv4Address
    host_ip: IPv4Address  # the CiliumInternalIP on cilium_host
    host_ifindex: int
    vxlan_ifindex: int
    host_mac: str = "00:00:00:00:00:00"
    policy: bool = False  # enforce cilium_policy_v2 (else every endpoint allows all)
    lb: bool = True  # service translation in cil_from_container / cil_from_netdev
    maglev_m: int = 0

    @classmethod
    def from_node(cls, node: NodeState, *, policy: bool = True, lb: bool = True) -> RuntimeConfig:
        devs = {d.name: d for d in node.devices}
        host = devs.get("cilium_host")
        vxlan = devs.get("cilium_vxlan")
        m = next((len(t) for t in node.maglev.values()), 0)
        return cls(
            node_ip=node.internal_ip,
            host_ip=node.cilium_internal_ip,
            host_ifindex=host.ifindex if host else 0,
            vxlan_ifindex=vxlan.ifindex if vxlan else 0,
            host_mac=host.mac if host else "00:00:00:00:00:00",
            policy=policy,
            lb=lb,
            maglev_m=m,
        )

    def build(self) -> bytes:
        flags = (RUNTIME_F_POLICY if self.policy else 0) | (RUNTIME_F_LB if self.lb else 0)
        return _RUNTIME.pack(
            self.node_ip.packed,
            self.host_ip.packed,
            self.host_ifindex,
            self.vxlan_ifindex,
            flags,
            self.maglev_m,
            codec.mac_to_bytes(self.host_mac),
        )

    @classmethod
    def parse(cls, data: bytes) -> RuntimeConfig:
        node_ip, host_ip, hidx, vidx, flags, m, mac = _RUNTIME.unpack(data)
        return cls(
            IPv4Address(node_ip),
            IPv4Address(host_ip),
            hidx,
            vidx,
            codec.mac_from_bytes(mac),
            bool(flags & RUNTIME_F_POLICY),
            bool(flags & RUNTIME_F_LB),
            m,
        )


Encoder = Callable[[Any], bytes]

# map name -> (key encoder, value encoder taking (key, value))
_CODECS: dict[str, tuple[Encoder, Callable[[Any, Any], bytes]]] = {
    MapName.LXC.value: (codec.build_endpoint_key, lambda _k, v: codec.build_endpoint_info(v)),
    MapName.IPCACHE.value: (
        codec.build_ipcache_key,
        lambda _k, v: codec.build_remote_endpoint_info(v),
    ),
    MapName.LB4_SERVICES.value: (codec.build_lb4_key, lambda _k, v: codec.build_lb4_service(v)),
    MapName.LB4_BACKENDS.value: (codec.build_u32_key, lambda _k, v: codec.build_lb4_backend(v)),
    MapName.LB4_REVERSE_NAT.value: (
        codec.build_u16_key,
        lambda _k, v: codec.build_lb4_reverse_nat(v),
    ),
}


def policy_shared_key(endpoint_id: int, cilium_key: bytes) -> bytes:
    """Cilium's 12-byte policy_key of one endpoint -> the shared map's 16-byte key."""
    (prefixlen,) = _U32.unpack_from(cilium_key, 0)
    return _EP_PREFIX.pack(prefixlen + 32, endpoint_id) + cilium_key[4:]


def policy_cilium_key(shared_key: bytes) -> tuple[int, bytes]:
    """The shared map's key -> (endpoint ID, Cilium's 12-byte policy_key)."""
    prefixlen, ep = _EP_PREFIX.unpack_from(shared_key, 0)
    return ep, _U32.pack(prefixlen - 32) + shared_key[8:]


class KernelMaps:
    """The maps pinned in one node's pin directory (``.../<node>/tc/globals``)."""

    def __init__(self, pin_dir: str | Path) -> None:
        self.pin_dir = Path(pin_dir)
        self._open: dict[str, bpf.Map] = {}
        self._ep_of: dict[str, int | None] = {}  # map name -> endpoint ID of a policy view

    # --- plumbing ---------------------------------------------------------------------

    def map(self, name: str) -> bpf.Map:
        """The open map for a pinned name (per-endpoint policy names -> the shared map)."""
        if parse_policy_map_name(name) is not None:
            name = MapName.POLICY.value
        m = self._open.get(name)
        if m is None:
            path = self.pin_dir / name
            if not path.exists():
                raise FileNotFoundError(f"map {name} is not pinned under {self.pin_dir}")
            m = bpf.Map.pinned(path)
            self._open[name] = m
        return m

    def names(self) -> list[str]:
        return sorted(p.name for p in self.pin_dir.iterdir()) if self.pin_dir.exists() else []

    def close(self) -> None:
        for m in {id(m): m for m in self._open.values()}.values():
            m.close()
        self._open.clear()

    # --- encoding ---------------------------------------------------------------------

    def encode(self, map_name: str, key: Any, value: Any) -> tuple[bytes, bytes | None]:
        """Bytes of one typed entry in Cilium's layout (value None = a delete)."""
        if parse_policy_map_name(map_name) is not None:
            k = codec.build_policy_key(key)
            return k, (None if value is None else codec.build_policy_entry(key, value))
        enc = _CODECS.get(map_name)
        if enc is None:
            raise KeyError(f"no codec for map {map_name}")
        kb = enc[0](key)
        return kb, (None if value is None else enc[1](key, value))

    # --- writes -----------------------------------------------------------------------

    def apply(self, changes: Iterable[MapChange]) -> int:
        """Write every change (upsert or delete); returns the number of map operations.
        After the whole batch, a batch that touched policy entries bumps the policy
        revision (established flows are then checked against the new entries)."""
        ops = 0
        policy = False
        for ch in changes:
            ops += self._apply_one(ch.map, ch.key, ch.value)
            # _apply_one resolved (and cached) whether the name is an endpoint's policy map
            policy = policy or self._ep_of.get(ch.map) is not None
        if policy:
            self.bump_policy_rev()
        return ops

    def bump_policy_rev(self) -> int:
        """Advance the node's policy revision (single writer: the agent); returns it. A
        node loaded before the map existed has none: nothing to bump."""
        try:
            m = self.map(POLICY_REV)
        except FileNotFoundError:
            return 0
        raw = m.lookup(_U32.pack(0))
        rev = ((_U32.unpack(raw)[0] if raw else 0) + 1) & 0xFFFFFFFF or 1
        m.update(_U32.pack(0), _U32.pack(rev))
        return rev

    def policy_rev(self) -> int:
        try:
            raw = self.map(POLICY_REV).lookup(_U32.pack(0))
        except FileNotFoundError:
            return 0
        return _U32.unpack(raw)[0] if raw else 0

    def _apply_one(self, map_name: str, key: Any, value: Any) -> int:
        if map_name == _MAGLEV:
            return self._apply_maglev(int(key), value)
        m = self._open.get(map_name)  # fast path: per-endpoint names are cached too
        if m is None:
            m = self._open[map_name] = self.map(map_name)
        ep = self._ep_of.get(map_name, -1)
        if ep == -1:
            ep = self._ep_of[map_name] = parse_policy_map_name(map_name)
        if ep is not None:
            kb = policy_shared_key(ep, codec.build_policy_key(key))
            if value is None:
                m.delete(kb)
            else:
                m.update(kb, codec.build_policy_entry(key, value))
            return 1
        kb, vb = self.encode(map_name, key, value)
        if vb is None:
            m.delete(kb)
        else:
            m.update(kb, vb)
        return 1

    def _apply_maglev(self, rev_nat: int, table: tuple[int, ...] | None) -> int:
        m = self.map(MapName.LB4_MAGLEV.value)
        if table is None:
            cfg = self.runtime_config()
            if cfg is not None and cfg.maglev_m:
                # every table has M slots: delete them by key, no walk of the whole map
                return sum(m.delete(_MAGLEV_KEY.pack(rev_nat, i)) for i in range(cfg.maglev_m))
            n = 0
            for k in list(m.keys()):
                if _MAGLEV_KEY.unpack(k)[0] == rev_nat:
                    n += m.delete(k)
            return n
        for slot, backend in enumerate(table):
            m.update(_MAGLEV_KEY.pack(rev_nat, slot), _U32.pack(backend))
        cfg = self.runtime_config()
        if cfg is not None and cfg.maglev_m != len(table):
            # the program hashes into [0, M): M must match the tables written
            self.set_runtime_config(
                RuntimeConfig(
                    cfg.node_ip,
                    cfg.host_ip,
                    cfg.host_ifindex,
                    cfg.vxlan_ifindex,
                    cfg.host_mac,
                    cfg.policy,
                    cfg.lb,
                    len(table),
                )
            )
        return len(table)

    def sync_node(self, node: NodeState) -> int:
        """Make the kernel maps hold exactly the node's desired entries: write what
        differs, delete what is not desired. Entries already right are not touched, so
        adopting a running datapath after an agent restart disturbs nothing. Returns the
        number of map operations."""
        ops = 0
        desired_maps = node_maps(node)
        # the shared policy map: all endpoints at once
        want_policy: dict[bytes, bytes] = {}
        for name, contents in desired_maps.items():
            ep = parse_policy_map_name(name)
            if ep is None:
                continue
            for k, v in contents.items():
                kb, vb = self.encode(name, k, v)
                assert vb is not None
                want_policy[policy_shared_key(ep, kb)] = vb
        policy_ops = self._sync_raw(MapName.POLICY.value, want_policy)
        if policy_ops:
            self.bump_policy_rev()
        ops += policy_ops
        for name in _CODECS:
            want: dict[bytes, bytes] = {}
            for k, v in desired_maps.get(name, {}).items():
                kb, vb = self.encode(name, k, v)
                assert vb is not None
                want[kb] = vb
            ops += self._sync_raw(name, want)
        want_mg: dict[bytes, bytes] = {}
        for rev, table in node.maglev.items():
            for slot, backend in enumerate(table):
                want_mg[_MAGLEV_KEY.pack(rev, slot)] = _U32.pack(backend)
        ops += self._sync_raw(MapName.LB4_MAGLEV.value, want_mg)
        return ops

    def _sync_raw(self, name: str, want: Mapping[bytes, bytes]) -> int:
        m = self.map(name)
        ops = 0
        for k in list(m.keys()):
            if k not in want:
                ops += m.delete(k)
        for k, v in want.items():
            if m.lookup(k) != v:
                m.update(k, v)
                ops += 1
        return ops

    def set_runtime_config(self, cfg: RuntimeConfig) -> None:
        self.map(RUNTIME_CONFIG).update(_U32.pack(0), cfg.build())

    def runtime_config(self) -> RuntimeConfig | None:
        raw = self.map(RUNTIME_CONFIG).lookup(_U32.pack(0))
        if raw is None or raw == bytes(len(raw)):
            return None
        return RuntimeConfig.parse(raw)

    # --- reads ------------------------------------------------------------------------

    def dump(self, map_name: str) -> list[tuple[bytes, bytes]]:
        """Every entry as (key bytes, value bytes) in Cilium's layout, sorted by key."""
        ep = parse_policy_map_name(map_name)
        if ep is not None:
            out = []
            for k, v in self.map(MapName.POLICY.value).items():
                owner, ck = policy_cilium_key(k)
                if owner == ep:
                    out.append((ck, v))
            return sorted(out)
        if map_name == MapName.LB4_MAGLEV.value:
            tables: dict[int, dict[int, int]] = {}
            for k, v in self.map(map_name).items():
                rev, slot = _MAGLEV_KEY.unpack(k)
                tables.setdefault(rev, {})[slot] = _U32.unpack(v)[0]
            return sorted(
                (
                    codec.build_u16_key(rev),
                    codec.build_maglev_table(tuple(t.get(i, 0) for i in range(len(t)))),
                )
                for rev, t in tables.items()
            )
        return sorted(self.map(map_name).items())

    def lookup(self, map_name: str, key: bytes) -> bytes | None:
        """One entry by key bytes, as ``bpftool map lookup`` answers (LPM maps: the
        longest matching prefix)."""
        ep = parse_policy_map_name(map_name)
        if ep is not None:
            return self.map(MapName.POLICY.value).lookup(policy_shared_key(ep, key))
        if map_name == MapName.LB4_MAGLEV.value:
            rev = codec.parse_u16_key(key)
            for k, v in self.dump(map_name):
                if codec.parse_u16_key(k) == rev:
                    return v
            return None
        return self.map(map_name).lookup(key)

    def metrics(self) -> dict[tuple[int, int], tuple[int, int]]:
        """cilium_metrics summed over CPUs: (reason, direction) -> (packets, bytes);
        reason 0 is "forwarded", direction 1 ingress / 2 egress."""
        out: dict[tuple[int, int], tuple[int, int]] = {}
        for k, v in self.map(METRICS).items():
            reason, direction = k[0], k[1]
            count = total = 0
            for off in range(0, len(v), 16):
                c, b = struct.unpack_from("<QQ", v, off)
                count += c
                total += b
            out[(reason, direction)] = (count, total)
        return out
