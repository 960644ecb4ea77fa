"""NodePrograms.sync orders policy writes so a sync interrupted (or observed) half-way
never allows what the old or the new state denies: desired denies first, then undesired
allows deleted, then the diff-sync (new allows in, old denies out)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from ciliate import codec
from ciliate.datapath.linux.maps import KernelMaps, policy_shared_key
from ciliate.datapath.linux.nodeprograms import NodePrograms
from ciliate.desired import MapChange, MapName, PolicyEntry, PolicyKey

EP = 7
ALLOW_ALL = PolicyKey(identity=0, egress=False)
DENY_X = PolicyKey(identity=1234, egress=False)
OLD_ALLOW = PolicyKey(identity=555, egress=False, protocol=6, dport=80, port_prefix_len=16)
OLD_DENY = PolicyKey(identity=666, egress=False)


def _kv(key: PolicyKey, entry: PolicyEntry) -> tuple[bytes, bytes]:
    kb = codec.build_policy_key(key)
    return policy_shared_key(EP, kb), codec.build_policy_entry(key, entry)


class FakeMap:
    def __init__(self, entries: dict[bytes, bytes]) -> None:
        self.entries = entries

    def keys(self) -> list[bytes]:
        return list(self.entries)

    def lookup(self, k: bytes) -> bytes | None:
        return self.entries.get(k)

    def delete(self, k: bytes) -> bool:
        return self.entries.pop(k, None) is not None


class FakeMaps:
    """Records the order of operations; encodes like the real KernelMaps."""

    def __init__(self, entries: dict[bytes, bytes]) -> None:
        self.policy = FakeMap(entries)
        self.ops: list[tuple[str, Any]] = []
        self._real = KernelMaps("/nonexistent")

    def encode(self, name: str, key: Any, value: Any) -> tuple[bytes, bytes | None]:
        return self._real.encode(name, key, value)

    def map(self, name: str) -> FakeMap:
        assert name == MapName.POLICY.value
        return self.policy

    def apply(self, changes: list[MapChange]) -> int:
        for c in changes:
            k, v = _kv(c.key, c.value)  # type: ignore[arg-type]
            self.policy.entries[k] = v
            self.ops.append(("write", c.key))
        return len(changes)

    def sync_node(self, node: Any) -> int:
        self.ops.append(("sync", sorted(self.policy.entries)))
        return 0


def _programs(maps: FakeMaps) -> NodePrograms:
    progs = NodePrograms.__new__(NodePrograms)
    progs.node = "n1"
    progs.impl = SimpleNamespace(maps=maps)
    return progs


def test_policy_sync_order_never_opens() -> None:
    kernel = dict([_kv(OLD_ALLOW, PolicyEntry()), _kv(OLD_DENY, PolicyEntry(deny=True))])
    maps = FakeMaps(kernel)
    want = {ALLOW_ALL: PolicyEntry(), DENY_X: PolicyEntry(deny=True)}
    node = SimpleNamespace(name="n1", policy={EP: want})
    _programs(maps).sync(node)  # type: ignore[arg-type]
    # 1. the new deny, 2. the old allow gone, the old deny still there, 3. the diff-sync
    assert maps.ops[0] == ("write", DENY_X)
    assert maps.ops[1] == (
        "sync",
        sorted([_kv(OLD_DENY, PolicyEntry(deny=True))[0], _kv(DENY_X, PolicyEntry(deny=True))[0]]),
    )
    assert len(maps.ops) == 2


def test_without_policy_only_the_sync_runs() -> None:
    maps = FakeMaps({})
    _programs(maps).sync(SimpleNamespace(name="n1", policy={}))  # type: ignore[arg-type]
    assert maps.ops == [("sync", [])]
