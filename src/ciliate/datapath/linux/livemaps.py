"""Live maps: the pinned eBPF maps of a running cluster, read for ``ciliate bpf ...``.

Role: the kernel's answer to the same ``MapSource`` protocol the model's map reader
serves, so ``bpf map dump``/``lookup`` read either. ``canonical_map_name`` accepts map
names as users type them; ``PinnedMaps`` opens a node's pins through the eBPF
engineer's ``maps.KernelMaps`` (which knows the shared per-endpoint policy map).

Inputs: ``ClusterNames`` (pin directories), a node and a map name, key bytes. Outputs:
raw key/value bytes; ``NotFoundError`` for a node without pins or a missing map.
``runtime.map_source`` hands these out when the cluster is up (and re-exports them).
Must not import cli, agent or runtime (runtime imports this module).
"""

from __future__ import annotations

from typing import Any, Protocol

from ciliate.datapath.linux.kernelfiles import optional_module
from ciliate.datapath.linux.topology import ClusterNames
from ciliate.desired import MapName, parse_policy_map_name, policy_map_name
from ciliate.errors import DatapathError, NotFoundError


class MapSource(Protocol):
    def dump(self, node: str, map_name: str) -> list[tuple[bytes, bytes]]: ...

    def lookup(self, node: str, map_name: str, key: bytes) -> bytes | None: ...


def canonical_map_name(name: str) -> str:
    """Map names as users type them (the same rules as the model's map reader): a pin
    path's basename, ``cilium_policy_NNNNN`` (<=1.15) and ``cilium_ipcache_v2`` (1.19)."""
    name = name.rstrip("/").rsplit("/", 1)[-1]
    ep = parse_policy_map_name(name)
    if ep is None and name.startswith("cilium_policy_") and name[14:].isdigit():
        ep = int(name[14:])
    if ep is not None:
        return policy_map_name(ep)
    return MapName.IPCACHE.value if name == "cilium_ipcache_v2" else name


class PinnedMaps:
    """Reads the live kernel maps of a running cluster through their pins (with the eBPF
    engineer's ``maps.KernelMaps``, which knows the shared per-endpoint policy map)."""

    def __init__(self, names: ClusterNames) -> None:
        self.names = names

    def _maps(self, node: str) -> Any:
        kmaps = optional_module("ciliate.datapath.linux.maps")
        cls = getattr(kmaps, "KernelMaps", None)
        if cls is None:
            raise DatapathError("the kernel map reader (datapath.linux.maps) is missing")
        pin = self.names.pin_dir(node) / "tc" / "globals"
        if not pin.exists():
            raise NotFoundError(f"node {node} has no pinned maps ({pin})")
        return cls(pin)

    def dump(self, node: str, map_name: str) -> list[tuple[bytes, bytes]]:
        m = self._maps(node)
        try:
            return [(bytes(k), bytes(v)) for k, v in m.dump(canonical_map_name(map_name))]
        except FileNotFoundError as e:
            raise NotFoundError(str(e)) from e
        finally:
            m.close()

    def lookup(self, node: str, map_name: str, key: bytes) -> bytes | None:
        m = self._maps(node)
        try:
            value = m.lookup(canonical_map_name(map_name), key)
            return None if value is None else bytes(value)
        except FileNotFoundError as e:
            raise NotFoundError(str(e)) from e
        finally:
            m.close()
