"""One node's eBPF side as the agent drives it: programs and maps (``NodePrograms``) and
the flow pump (``FlowPump``: ring-buffer events -> Hubble flows -> the node's flow log).

Role: a thin, failure-tolerant layer over the eBPF engineer's ``loader.NodeBPF``,
``maps.KernelMaps``/``RuntimeConfig`` and ``events.FlowEnricher``: without the loader
(not built, clang missing) the topology still stands and status says programs are not
loaded. Inputs: NodeState, MapChanges; outputs: kernel programs/maps and flow log lines.
Must not import cli or agent.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ciliate import codec
from ciliate.datapath.linux.runtime import optional_module
from ciliate.desired import DesiredState, MapChange, MapName, NodeState, policy_map_name

if TYPE_CHECKING:
    from ciliate.datapath.linux.events import FlowEnricher, RawEvent

log = logging.getLogger("ciliate.agent")


class NodePrograms:
    """The eBPF side of one node, through the loader when it is there (``NodeBPF``);
    without it the topology, maps-less, still stands and status says so."""

    def __init__(self, tag: str, node: str, netns: str) -> None:
        self.node = node
        self.impl: Any = None
        loader = optional_module("ciliate.datapath.linux.loader")
        cls = getattr(loader, "NodeBPF", None)
        if cls is not None:
            self.impl = cls(tag, node, netns)

    @property
    def loaded(self) -> bool:
        return self.impl is not None

    def load(self) -> None:
        if self.impl is not None:
            self.impl.load()

    def attach_all(self, devices: Iterable[tuple[str, Sequence[tuple[str, str]]]]) -> None:
        if self.impl is None:
            return
        for dev, programs in devices:
            for direction, program in programs:
                self.impl.attach(dev, direction, program)

    def detach(self, device: str) -> None:
        if self.impl is not None:
            with contextlib.suppress(Exception):
                self.impl.detach(device)

    def configure(self, node: NodeState) -> None:
        """The node's runtime config (what Cilium compiles into node_config.h)."""
        if self.impl is None:
            return
        kmaps = optional_module("ciliate.datapath.linux.maps")
        cfg = getattr(kmaps, "RuntimeConfig", None)
        if cfg is not None:
            self.impl.maps.set_runtime_config(cfg.from_node(node))

    def sync(self, node: NodeState) -> None:
        """Make the maps hold exactly the node's entries (adopting pins after a restart
        writes only what differs).

        Policy goes in the order that never opens (fail closed), since a full sync
        writes entry by entry and the datapath reads the map meanwhile: (1) the desired
        deny entries are written, (2) kernel allow entries the desired state does not
        have are deleted, (3) the diff-sync writes the new allows and deletes the old
        denies. Every intermediate map allows at most what both the old and the new
        state allow, and denies at least what either denies -- e.g. a deny policy
        added while no agent ran lands before any allow it narrows."""
        if self.impl is None:
            return
        denies = [
            MapChange(node.name, policy_map_name(ep), key, entry)
            for ep, pmap in node.policy.items()
            for key, entry in pmap.items()
            if getattr(entry, "deny", False)
        ]
        if denies:
            self.impl.maps.apply(denies)
        self._drop_undesired_allows(node)
        self.impl.maps.sync_node(node)

    def _drop_undesired_allows(self, node: NodeState) -> None:
        # the loader (there, since impl is) imports maps: this import cannot fail here
        from ciliate.datapath.linux.maps import policy_shared_key

        kmaps = self.impl.maps
        want: set[bytes] = set()
        for ep, pmap in node.policy.items():
            name = policy_map_name(ep)
            for key, entry in pmap.items():
                kb, _ = kmaps.encode(name, key, entry)
                want.add(policy_shared_key(ep, kb))
        try:
            m = kmaps.map(MapName.POLICY.value)
        except FileNotFoundError:
            return  # not pinned yet: nothing to drop
        for kb in list(m.keys()):
            if kb in want:
                continue
            value = m.lookup(kb)
            if value is not None and not codec.parse_policy_entry(value).deny:
                m.delete(kb)

    def apply(self, changes: list[MapChange]) -> None:
        if self.impl is not None and changes:
            self.impl.maps.apply(changes)

    def close(self) -> None:
        """Let go of the node's programs and maps; they stay attached and pinned."""
        if self.impl is not None:
            with contextlib.suppress(Exception):
                self.impl.close()

    def unload(self) -> None:
        if self.impl is not None:
            with contextlib.suppress(Exception):
                self.impl.unload()


class FlowPump:
    """Per node: BPF ring-buffer events -> Hubble flows -> the node's flow log file
    (read by ``ciliate observe`` in other processes). Runs in its own thread; the
    enricher is swapped when the DesiredState changes (it resolves IPs to pods)."""

    def __init__(self, progs: NodePrograms, node: str, state: DesiredState, log_dir: Path):
        self.node = node
        self.progs = progs
        self.state = state
        self.log_dir = log_dir
        self.stop = threading.Event()
        self.count = 0
        self.thread = threading.Thread(target=self._run, name=f"flows-{node}", daemon=True)

    def start(self) -> None:
        if self.progs.impl is not None:
            self.thread.start()

    def _run(self) -> None:
        from ciliate.datapath.flowlog import FlowLogDir
        from ciliate.datapath.linux.events import FlowEnricher

        try:
            reader = self.progs.impl.events()
        except Exception as e:  # no ring buffer: flows are missing, forwarding is not
            log.warning("flows of %s unavailable: %s", self.node, e)
            return
        writer = FlowLogDir(self.log_dir).writer(self.node)
        enricher, seen = FlowEnricher(self.state, self.node), self.state
        try:
            while not self.stop.is_set():
                events = reader.events(timeout_ms=200)
                if not events:
                    continue
                if self.state is not seen:
                    enricher, seen = FlowEnricher(self.state, self.node), self.state
                now = time.time_ns()
                try:  # the whole batch at once, straight to lines: the common, cheap case
                    lines = enricher.to_lines(events, now)
                except Exception:  # one odd event must not stop the flow log
                    lines = self._one_by_one(enricher, events, now)
                writer.write_lines(lines)
                self.count += len(lines)
        finally:
            writer.close()
            reader.close()

    def _one_by_one(self, enricher: FlowEnricher, events: list[RawEvent], now: int) -> list[str]:
        """The lines of a batch in which some event does not decode: all the others."""
        lines = []
        for ev in events:
            try:
                lines += enricher.to_lines([ev], now)
            except Exception as e:
                log.debug("event of %s not decoded: %s", self.node, e)
        return lines

    def close(self) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout=2)
