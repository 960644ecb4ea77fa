"""NodePrograms.sync writes the desired deny entries before the full diff-sync, so a
sync interrupted (or observed) half-way never allows what the desired state denies."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from ciliate.datapath.linux.nodeprograms import NodePrograms
from ciliate.desired import MapChange, PolicyEntry, PolicyKey, policy_map_name


class FakeMaps:
    def __init__(self) -> None:
        self.ops: list[tuple[str, Any]] = []

    def apply(self, changes: list[MapChange]) -> int:
        self.ops += [("apply", c) for c in changes]
        return len(changes)

    def sync_node(self, node: Any) -> int:
        self.ops.append(("sync", node.name))
        return 0


def _programs(maps: FakeMaps) -> NodePrograms:
    progs = NodePrograms.__new__(NodePrograms)
    progs.node = "n1"
    progs.impl = SimpleNamespace(maps=maps)
    return progs


def test_deny_entries_are_written_before_the_full_sync() -> None:
    allow_all = PolicyKey(identity=0, egress=False)
    deny_x = PolicyKey(identity=1234, egress=False)
    node = SimpleNamespace(
        name="n1", policy={7: {allow_all: PolicyEntry(), deny_x: PolicyEntry(deny=True)}}
    )
    maps = FakeMaps()
    _programs(maps).sync(node)  # type: ignore[arg-type]
    assert maps.ops == [
        ("apply", MapChange("n1", policy_map_name(7), deny_x, PolicyEntry(deny=True))),
        ("sync", "n1"),
    ]


def test_without_deny_entries_only_the_sync_runs() -> None:
    node = SimpleNamespace(name="n1", policy={7: {PolicyKey(0, False): PolicyEntry()}})
    maps = FakeMaps()
    _programs(maps).sync(node)  # type: ignore[arg-type]
    assert maps.ops == [("sync", "n1")]
