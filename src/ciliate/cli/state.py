"""Where the CLI's Cilium views read from: the DesiredState computed from the store,
and the map bytes (``MapSource``) of the model or, when the cluster is up, the kernel.

``load_desired(ctx)`` lists every document of the store and runs the control engine.
``map_source(ctx)`` returns the kernel's maps when ``ciliate.datapath.linux.runtime``
offers them (``map_source(ctx) -> MapSource | None``), else the model's: the bytes of
the DesiredState entries, encoded with ``ciliate.codec``, so that ``bpf map lookup``
prints the same bytes in both modes.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ciliate import codec
from ciliate.cli.context import Context
from ciliate.desired import DesiredState, MapName, node_maps, parse_policy_map_name, policy_map_name
from ciliate.errors import NotFoundError
from ciliate.model.cluster import ClusterConfig


class MapSource(Protocol):
    def dump(self, node: str, map_name: str) -> list[tuple[bytes, bytes]]:
        """Every (key, value) of a node's map; NotFoundError for an unknown node/map."""
        ...

    def lookup(self, node: str, map_name: str, key: bytes) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class MapCodec:
    key_size: int
    value_size: int  # 0 = variable (maglev inner arrays)
    build_key: Callable[[Any], bytes]
    parse_key: Callable[[bytes], Any]
    build_value: Callable[[Any, Any], bytes]  # (key, value)
    parse_value: Callable[[bytes], Any]


MAP_CODECS: dict[str, MapCodec] = {
    MapName.LXC.value: MapCodec(
        20, 48, codec.build_endpoint_key, codec.parse_endpoint_key,
        lambda _k, v: codec.build_endpoint_info(v), codec.parse_endpoint_info,
    ),
    MapName.IPCACHE.value: MapCodec(
        24, 12, codec.build_ipcache_key, codec.parse_ipcache_key,
        lambda _k, v: codec.build_remote_endpoint_info(v), codec.parse_remote_endpoint_info,
    ),
    MapName.LB4_SERVICES.value: MapCodec(
        12, 12, codec.build_lb4_key, codec.parse_lb4_key,
        lambda _k, v: codec.build_lb4_service(v), codec.parse_lb4_service,
    ),
    MapName.LB4_BACKENDS.value: MapCodec(
        4, 12, codec.build_u32_key, codec.parse_u32_key,
        lambda _k, v: codec.build_lb4_backend(v), codec.parse_lb4_backend,
    ),
    MapName.LB4_REVERSE_NAT.value: MapCodec(
        2, 6, codec.build_u16_key, codec.parse_u16_key,
        lambda _k, v: codec.build_lb4_reverse_nat(v), codec.parse_lb4_reverse_nat,
    ),
    MapName.LB4_MAGLEV.value: MapCodec(
        2, 0, codec.build_u16_key, codec.parse_u16_key,
        lambda _k, v: codec.build_maglev_table(v), codec.parse_maglev_table,
    ),
}  # fmt: skip

POLICY_CODEC = MapCodec(
    12, 12, codec.build_policy_key, codec.parse_policy_key,
    codec.build_policy_entry, codec.parse_policy_entry,
)  # fmt: skip


def canonical_map_name(name: str) -> str:
    """Pinned names as users type them: a path's basename; ``cilium_policy_NNNNN`` is
    the ≤1.15 name of ``cilium_policy_v2_NNNNN``; ``cilium_ipcache_v2`` the 1.19 one."""
    name = name.rstrip("/").rsplit("/", 1)[-1]
    ep = parse_policy_map_name(name)
    if ep is not None:
        return policy_map_name(ep)
    if name == "cilium_ipcache_v2":
        return MapName.IPCACHE.value
    return name


def codec_for(map_name: str) -> MapCodec:
    name = canonical_map_name(map_name)
    if parse_policy_map_name(name) is not None:
        return POLICY_CODEC
    got = MAP_CODECS.get(name)
    if got is None:
        raise NotFoundError(f"unknown map {map_name!r}")
    return got


class ModelMapSource:
    """Map bytes of a DesiredState."""

    def __init__(self, state: DesiredState) -> None:
        self.state = state

    def _map(self, node: str, map_name: str) -> Mapping[Any, Any]:
        ns = self.state.nodes.get(node)
        if ns is None:
            raise NotFoundError(
                f"node {node!r} not found (nodes: {', '.join(sorted(self.state.nodes))})"
            )
        maps = node_maps(ns)
        name = canonical_map_name(map_name)
        if name not in maps:
            if parse_policy_map_name(name) is not None:
                raise NotFoundError(f"map {map_name!r} not found on node {node}: no such endpoint")
            codec_for(name)  # unknown name -> NotFoundError
            return {}
        return maps[name]

    def dump(self, node: str, map_name: str) -> list[tuple[bytes, bytes]]:
        c = codec_for(map_name)
        m = self._map(node, map_name)
        return [(c.build_key(k), c.build_value(k, v)) for k, v in m.items()]

    def lookup(self, node: str, map_name: str, key: bytes) -> bytes | None:
        c = codec_for(map_name)
        m = self._map(node, map_name)
        try:
            k = c.parse_key(key)
        except ValueError:
            return None
        if k not in m:
            return None
        # The key must also round-trip: bytes that parse but are not canonical (bits
        # beyond the prefix, a wrong family) do not match a hash/LPM entry exactly.
        if c.build_key(k) != key:
            return None
        return c.build_value(k, m[k])


def load_config(ctx: Context) -> ClusterConfig:
    from ciliate.controllers.clusterconfig import get_cluster_config

    return get_cluster_config(ctx.store())


PINS_FILE = "control-ids.json"


def read_pins(state_dir: Path) -> dict[str, Any] | None:
    """The IDs handed out by earlier runs (``Engine.export_pins``), if any."""
    try:
        data = json.loads((state_dir / PINS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_pins(state_dir: Path, pins: Mapping[str, Any]) -> None:
    """Atomically replace the pins file (a reader sees the old or the new one)."""
    try:
        tmp = state_dir / f".{PINS_FILE}.{os.getpid()}"
        tmp.write_text(json.dumps(pins, sort_keys=True))
        os.replace(tmp, state_dir / PINS_FILE)
    except OSError:
        return  # a read-only state dir only costs ID stability


def load_desired(ctx: Context) -> DesiredState:
    """The DesiredState of the store in ``ctx`` (computed, never stored). IDs handed
    out by earlier runs are kept (``control-ids.json`` in the state directory), so an
    endpoint keeps its ID while other pods come and go."""
    store = ctx.store()
    config = load_config(ctx)
    pins = read_pins(ctx.state_dir)
    # Imported here: the control engine costs ~0.15 s of imports that commands never
    # computing the DesiredState (apply, get, delete) should not pay.
    from ciliate.control.engine import Engine

    engine = Engine(config, pins=pins)
    state = engine.load(store.list())
    new_pins = engine.export_pins()
    if new_pins != pins:
        write_pins(ctx.state_dir, new_pins)
    return state


def map_source(ctx: Context, state: DesiredState | None = None) -> MapSource:
    """The kernel's maps when the cluster runs in kernel mode, else the model's."""
    try:
        runtime = importlib.import_module("ciliate.datapath.linux.runtime")
    except ImportError:
        runtime = None
    if runtime is not None and hasattr(runtime, "map_source"):
        src = runtime.map_source(ctx)
        if src is not None:
            return src  # type: ignore[no-any-return]
    return ModelMapSource(state if state is not None else load_desired(ctx))
