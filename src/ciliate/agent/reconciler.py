"""Reconciler: the ``Agent``, which keeps the kernel datapath equal to the DesiredState.

Role: the one place that wires the planes together at run time. It reads the store
(the cluster config and every document), asks the control engine for the DesiredState,
realizes it (topology, eBPF programs and maps, workloads) and from then on applies only
deltas: a watch batch goes to ``Engine.apply_events`` which returns the changed map
entries; pods that appeared or vanished get or lose their namespace, veth, routes,
programs and processes; map changes go to the nodes' BPF maps.

One process hosts the agents of all nodes. Why: the nodes are namespaces on one host
and share one store, so one process means one watch, one engine computation per change
(every node's delta from it) and one place for teardown; a per-node process would
recompute the same DesiredState N times. ``status`` therefore lists every node with the
same pid. A node's work is still separated: its own netlink socket, its own BPF object
and pins, its own flow reader.

Theory of operation:

1. ``start``: config + documents -> ``Engine.load`` -> fabric, nodes, pods (each timed)
   -> programs and the full map contents -> workloads -> status.json and ``ready``.
2. ``run``: a watcher thread feeds store events into a queue; the loop drains whatever
   arrived together and reconciles once per batch; between batches it polls the
   workload supervisor (restartPolicy).
3. ``stop`` (SIGTERM/SIGINT): processes, programs, pins, namespaces -- everything goes.
   A fresh start that fails *cleanly* (an exception: a program does not load, a netlink
   call is refused) does the same and leaves the reason in ``kernel/error``: rollback.
   A start that fails while adopting an earlier agent's datapath leaves that datapath
   forwarding as it was (fail static) and says so in ``kernel/error``.
4. Restart without disruption (docs/decisions/0005-restart.md). The datapath never
   depends on the agent being alive: programs stay attached to their tc hooks and maps
   stay pinned, so while no agent runs (kill -9, or SIGUSR1 sent by ``up --restart``,
   which exits leaving everything) established and new connections keep flowing and
   denied traffic stays denied -- the maps simply stop changing. Pod processes run in
   their own sessions and outlive the agent. The next agent -- ``up`` after a crash,
   plain, no flag -- adopts: ensure_* calls converge what exists without recreating
   it, libbpf reuses the pinned maps (same map ids, conntrack kept), ``sync`` writes
   only the entries that differ from the store's DesiredState (so changes made while
   no agent ran take effect), tc filters are replaced atomically, namespaces of pods
   deleted meanwhile are removed, and pod processes are adopted from their records.
5. Resumable start: a start that *dies* half-way (kill -9, OOM, power) leaves a partial
   topology and no ``ready``; since every step of 1. is ensure-style, the next ``up``
   adopts the partial state and completes it (crash = resumable, clean failure =
   rollback). ``crash_point`` marks the steps the tests kill the agent at.

Inputs: the store (config, documents, watch events). Outputs: the kernel datapath (via
``datapath.linux``), workload processes, ``status.json`` (rendered by ``report``) and
the ``ready`` file. The process around it (pidfile, signals, what a failed start
leaves) is ``daemon``'s. Must not import cli.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from ciliate.agent import report
from ciliate.agent.places import PodPlace, pod_places, wiring
from ciliate.control.engine import Engine
from ciliate.controllers.clusterconfig import get_cluster_config
from ciliate.datapath.linux import hostsvc, netns
from ciliate.datapath.linux.crashpoints import crash_point
from ciliate.datapath.linux.fabric import FabricSwitch
from ciliate.datapath.linux.kernelfiles import KernelPaths
from ciliate.datapath.linux.nodeprograms import FlowPump, NodePrograms
from ciliate.datapath.linux.proxy import ProxyManager
from ciliate.datapath.linux.sweep import kill_namespace_processes, kill_pids, namespace_pids, sweep
from ciliate.datapath.linux.topology import Topology, iter_pod_endpoints
from ciliate.datapath.linux.workloads import (
    DEFAULT_DNS_IP,
    Supervisor,
    is_workload_process,
    plan_pod,
)
from ciliate.desired import (
    DesiredState,
    EndpointState,
    MapChange,
    NodeState,
)
from ciliate.model.core import Pod
from ciliate.model.meta import Doc
from ciliate.store.api import Store, WatchEvent

log = logging.getLogger("ciliate.agent")

SUPERVISE_INTERVAL = 0.25


def _empty_state(cluster: str) -> DesiredState:
    return DesiredState(cluster=cluster, nodes={}, identities={})


def dns_ip(docs: Iterable[Doc]) -> str:
    """kube-dns's ClusterIP when the cluster has one, else kubeadm's default."""
    for d in docs:
        md = d.get("metadata") or {}
        if d.get("kind") == "Service" and md.get("name") == "kube-dns":
            ip = (d.get("spec") or {}).get("clusterIP")
            if ip and ip != "None":
                return str(ip)
    return DEFAULT_DNS_IP


class Agent:
    def __init__(self, state_dir: Path, store: Store, clock: Callable[[], float] = time.monotonic):
        self.kp = KernelPaths(state_dir)
        self.names = self.kp.names
        self.store = store
        self.clock = clock
        self.topo = Topology(self.names)
        self.fabric = FabricSwitch(self.names)  # the node network's fast path
        self.sup = Supervisor(clock=clock)
        self.engine: Engine | None = None
        self.state = _empty_state("")
        self.rev = 0
        self.programs: dict[str, NodePrograms] = {}
        self.pumps: dict[str, FlowPump] = {}
        self.pod_docs: dict[str, Doc] = {}
        self.wire_ms: list[float] = []  # every pod wired (start and live)
        self.live_wire_ms: list[float] = []  # pods added while running: the 50 ms goal
        self.up_ms = 0.0
        # (wall-clock arrival, event): the arrival of a batch's first event is logged with
        # the round, so a benchmark can split "apply -> forwarded" into its parts
        self.events: queue.Queue[tuple[float, WatchEvent | BaseException]] = queue.Queue()
        self.woke_at = 0.0  # wall-clock arrival of the current batch's first event
        self.stopping = threading.Event()
        self.stopped = False
        self.keep_datapath = False  # set by SIGUSR1: exit for a restart, touch nothing
        self.adopted: list[str] = []  # namespaces found from an earlier agent
        self.errors: list[str] = []
        self._started_specs: dict[str, str] = {}  # pod -> its spec as started (JSON)
        # --- L7 proxy (datapath/linux/proxy.py): one per node with L7 policy ---
        self.proxies = ProxyManager(self.kp)

    # --- start ---------------------------------------------------------------------------

    def start(self) -> None:
        """Build -- or, when namespaces of an earlier agent exist, adopt and converge --
        the whole datapath. Every step is ensure-style, so a start that died half-way
        (crash, kill -9) is completed by the next one; ``crash_point`` names the steps
        the resumability tests stop at."""
        t0 = self.clock()
        config = get_cluster_config(self.store)
        self.rev = self.store.resource_version()
        docs = self.store.list()
        self.engine = Engine(config)
        state = self.engine.load(docs)
        self.sup.dns_ip = dns_ip(docs)
        self.pod_docs = {
            f"{(d.get('metadata') or {}).get('namespace', '')}/{(d.get('metadata') or {}).get('name', '')}": d
            for d in docs
            if d.get("kind") == "Pod"
        }
        existing = set(netns.list_netns(self.names.prefix))
        self.adopted = sorted(existing)
        if existing:
            # pods deleted while no agent ran: their namespaces (and processes) go first,
            # so a re-created pod of the same name starts from a clean namespace
            self._remove_stale(existing, state)
        self.topo.ensure_fabric()
        crash_point("fabric")
        for node in state.nodes.values():
            self._ensure_node(node)
            crash_point("node")
        crash_point("nodes")
        self.state = state
        for node in state.nodes.values():
            for ep in iter_pod_endpoints(node):
                self._wire_pod(node, ep)
                crash_point("pod")
        crash_point("pods")
        for node in state.nodes.values():
            self.programs[node.name].sync(node)
        crash_point("maps")
        if existing:
            # adopt what runs, stop leftovers nobody owns (they may hold the ports)...
            for pod, place in pod_places(state).items():
                self._start_workloads(pod, place, adopt_only=True)
            self._kill_orphans(state)
        for pod, place in pod_places(state).items():
            self._start_workloads(pod, place)  # ...then start the rest
        crash_point("workloads")
        for node in state.nodes.values():
            self._start_pump(node.name)
        self.proxies.start(state.nodes)  # L7 proxy: rules, proxies started or adopted
        self.up_ms = (self.clock() - t0) * 1000
        self.write_status()
        self.kp.ready.write_text(f"{os.getpid()}\n")
        log.info(
            "ready in %.0f ms: %d nodes, %d pods (%d workloads adopted)",
            self.up_ms,
            len(state.nodes),
            len(pod_places(state)),
            sum(1 for w in self.sup.status() if w.get("adopted")),
        )

    def _ensure_node(self, node: NodeState) -> None:
        self.topo.ensure_node(node)
        self.fabric.plug(self.names.fabric_port(node.name), self.topo.link_mac(node.name, "eth0"))
        self._ensure_host_services(node)
        progs = self.programs.get(node.name)
        if progs is None:
            progs = NodePrograms(self.names.tag, node.name, self.names.node(node.name))
            self.programs[node.name] = progs
            progs.load()
        progs.configure(node)
        lxc_names = {ep.lxc_name for ep in node.endpoints.values()}
        progs.attach_all(
            (d.name, d.programs) for d in node.devices if d.programs and d.name not in lxc_names
        )

    def _ensure_host_services(self, node: NodeState) -> None:
        """The node's own traffic to service frontends leaves by cilium_host, where
        cil_from_host translates it (datapath/linux/hostsvc.py, decision 0009)."""
        assert self.engine is not None
        cfg = self.engine.config
        mtu = cfg.tunnel_mtu if cfg.routing == "tunnel" else 0
        plan = hostsvc.compute_plan(node, IPv4Network(cfg.service_cidr), cfg.node_port_range, mtu)
        self.topo.ensure_host_services(node, plan)

    def _wanted_namespaces(self, state: DesiredState) -> set[str]:
        want = {self.names.fabric}
        for node in state.nodes.values():
            want |= {self.names.node(node.name), self.names.health(node.name)}
            want |= {self.names.pod(ep.pod) for ep in iter_pod_endpoints(node)}
        return want

    def _remove_stale(self, existing: set[str], state: DesiredState) -> None:
        """After a restart: namespaces of pods (or nodes) deleted meanwhile go, with
        their processes. The rest of the network is converged in place by ensure_*."""
        stale = sorted(existing - self._wanted_namespaces(state))
        kill_namespace_processes(self.names, stale)
        for ns in stale:
            netns.delete_netns(ns)
        log.info("adopting %d namespaces, removed %d stale", len(existing) - len(stale), len(stale))

    def _kill_orphans(self, state: DesiredState) -> None:
        """Workload processes in the pods' namespaces that no container owns now (no
        record, or a record of an older spec) are stopped; adopted ones keep running.
        Only marked processes: a user's `ciliate exec` session survives."""
        present = set(netns.list_netns(self.names.prefix))
        pods = sorted((self._wanted_namespaces(state) & present) - {self.names.fabric})
        owned = set(self.sup.pids())
        orphans = [
            p for p in namespace_pids(self.names, pods) if p not in owned and is_workload_process(p)
        ]
        if orphans:
            log.info("stopping %d orphan workload processes", len(orphans))
            kill_pids(orphans)

    def _start_pump(self, node: str) -> None:
        if node not in self.pumps and node in self.programs:
            pump = FlowPump(self.programs[node], node, self.state, self.kp.flows)
            self.pumps[node] = pump
            pump.start()

    def _wire_pod(self, node: NodeState, ep: EndpointState) -> float:
        """Namespace, veth, address, routes and the lxc program of one pod; ms taken."""
        t0 = self.clock()
        self.topo.ensure_pod(node, ep, node.pods.get(ep.pod))
        t1 = self.clock()
        dev = next((d for d in node.devices if d.name == ep.lxc_name), None)
        programs = (
            dev.programs
            if dev is not None and dev.programs
            else (("ingress", "cil_from_container"),)
        )
        self.programs[node.name].attach_all([(ep.lxc_name, programs)])
        t2 = self.clock()
        ms = (t2 - t0) * 1000
        self.wire_ms.append(ms)
        log.debug(
            "wired %s: plumbing %.1f ms, programs %.1f ms",
            ep.pod,
            (t1 - t0) * 1000,
            (t2 - t1) * 1000,
        )
        return ms

    def _spec_of(self, pod: str) -> str:
        return json.dumps((self.pod_docs.get(pod) or {}).get("spec"), sort_keys=True)

    def _start_workloads(self, pod: str, place: PodPlace, adopt_only: bool = False) -> None:
        doc = self.pod_docs.get(pod)
        if doc is None:
            return
        self._started_specs[pod] = self._spec_of(pod)
        p = Pod.from_doc(doc)
        specs = plan_pod(
            p, place.node, str(place.endpoint.ip), self.names.pod(pod), self.kp.pod_dir(pod)
        )
        try:
            if adopt_only:
                self.sup.start_pod(specs, p.meta.namespace, adopt_only=True)
            else:
                self.sup.start_pod(specs, p.meta.namespace)
        except OSError as e:  # a workload that cannot start is status, not a crash
            self.errors.append(f"{pod}: {e}")
            log.warning("workload %s: %s", pod, e)

    def _apply_maps(self, changes: list[MapChange], state: DesiredState) -> None:
        """Write the deltas node by node; a node whose delta fails is resynced in full
        from ``state`` (the maps then hold exactly the desired entries again)."""
        by_node: dict[str, list[MapChange]] = {}
        for c in changes:
            by_node.setdefault(c.node, []).append(c)
        for node, chs in by_node.items():
            progs = self.programs.get(node)
            if progs is None:
                continue
            try:
                progs.apply(chs)
            except Exception as e:
                log.warning("map delta on %s failed (%s); resyncing the node's maps", node, e)
                self.errors.append(f"map delta on {node}: {e} (resynced)")
                if node in state.nodes:
                    progs.sync(state.nodes[node])

    # --- reconcile -------------------------------------------------------------------------

    def reconcile(self, events: list[WatchEvent]) -> None:
        """Apply one batch of store events: only what changed is touched."""
        assert self.engine is not None
        t0 = self.clock()
        wall0 = time.time()
        lap = report.Laps(self.clock)
        for ev in events:
            self.rev = max(self.rev, ev.resource_version)
            if ev.key.kind == "Pod":
                key = f"{ev.key.namespace}/{ev.key.name}"
                if str(ev.type) == "DELETED":
                    self.pod_docs.pop(key, None)
                else:
                    self.pod_docs[key] = ev.object
        old = self.state
        changes = self.engine.apply_events(events)
        lap("engine")
        new = self.engine.state
        before, after = pod_places(old), pod_places(new)
        gone = [p for p in before if p not in after or wiring(after[p]) != wiring(before[p])]
        came = [p for p in after if p not in before or wiring(after[p]) != wiring(before[p])]

        # Removals first: a pod whose endpoint changed is rebuilt in the same netns name.
        # Each step is guarded: one pod failing is status, the others still converge.
        for pod in gone:
            self._guard(f"remove {pod}", self._remove_pod, pod, before[pod])
        for name, node in new.nodes.items():
            if name not in old.nodes:
                self._guard(f"add node {name}", self._ensure_node, node)
        lap("remove")
        timings: list[float] = []
        for pod in came:
            place = after[pod]
            ms = self._guard(f"wire {pod}", self._wire_pod, new.nodes[place.node], place.endpoint)
            if isinstance(ms, float):
                timings.append(ms)
                self.live_wire_ms.append(ms)
        lap("wire")
        self.proxies.reconcile(new.nodes, changes)  # L7 proxy rules before the redirects
        self._apply_maps(changes, new)
        # host services (hostsvc): a LoadBalancer / external IP frontend came or went
        svc_cidr = IPv4Network(self.engine.config.service_cidr)
        for name in sorted(hostsvc.nodes_to_refresh(changes, svc_cidr) & new.nodes.keys()):
            self._guard(f"host services of {name}", self._ensure_host_services, new.nodes[name])
        for name, node in new.nodes.items():
            if name in old.nodes and old.nodes[name].routes != node.routes:
                self._guard(f"routes of {name}", self.topo.ensure_node_routes, node)
        for name in old.nodes:
            if name not in new.nodes:
                self._guard(f"remove node {name}", self._remove_node, name)
        lap("maps")
        wall_forwarding = time.time()  # wired and every map entry written
        # workloads: new pods, and pods whose spec changed
        for pod, place in after.items():
            if pod in came or self._started_specs.get(pod) != self._spec_of(pod):
                self._start_workloads(pod, place)
        self.state = new
        for name in new.nodes:
            self._start_pump(name)
        for pump in self.pumps.values():
            pump.state = new
        lap("workloads")
        self.write_status()
        lap("status")
        if came or gone or changes:
            # One line per round; bench/suite_pod_ready.py parses it (keep them in step).
            log.info(
                "reconciled rv %d: +%d -%d pods, %d map changes in %.1f ms (pod wiring %s ms)"
                " [%s; woke %.6f start %.6f forwarding %.6f end %.6f]",
                self.rev, len(came), len(gone), len(changes), (self.clock() - t0) * 1000,
                ",".join(f"{t:.1f}" for t in timings) or "-", lap.render(),
                self.woke_at or wall0, wall0, wall_forwarding, time.time(),
            )  # fmt: skip

    def _guard(self, what: str, fn: Callable[..., object], *args: Any) -> object:
        try:
            return fn(*args)
        except Exception as e:  # reconcile failures become status, not crashes
            log.exception("%s failed", what)
            self.errors.append(f"{what}: {e}")
            return None

    def _remove_pod(self, pod: str, place: PodPlace) -> None:
        self.sup.stop_pod(pod)
        self._started_specs.pop(pod, None)
        progs = self.programs.get(place.node)
        if progs is not None:
            progs.detach(place.endpoint.lxc_name)
        self.topo.remove_pod(place.node, pod, place.endpoint.lxc_name)

    def _remove_node(self, name: str) -> None:
        pump = self.pumps.pop(name, None)
        if pump is not None:
            pump.close()
        progs = self.programs.pop(name, None)
        if progs is not None:
            progs.unload()
        node = self.state.nodes.get(name)
        if node is not None:
            for ep in iter_pod_endpoints(node):
                self._remove_pod(ep.pod, PodPlace(name, ep))
        with contextlib.suppress(OSError):  # its eth0 may be gone already
            self.fabric.unplug(self.topo.link_mac(name, "eth0"))
        self.topo.remove_node(name)

    # --- loop ----------------------------------------------------------------------------

    def _watch(self) -> None:
        try:
            for ev in self.store.watch(since=self.rev, timeout=None):
                self.events.put((time.time(), ev))
                if self.stopping.is_set():
                    return
        except BaseException as e:  # surfaced to the loop, which rebuilds
            if not self.stopping.is_set():
                self.events.put((time.time(), e))

    def run(self) -> None:
        watcher = threading.Thread(target=self._watch, name="ciliate-watch", daemon=True)
        watcher.start()
        while not self.stopping.is_set():
            try:
                first = self.events.get(timeout=SUPERVISE_INTERVAL)
            except queue.Empty:
                if self._supervised_changed():
                    self.write_status()  # a workload or an L7 proxy exited or was restarted
                continue
            self.woke_at = first[0]
            batch = [first[1]]
            with contextlib.suppress(queue.Empty):
                while True:
                    batch.append(self.events.get_nowait()[1])
            errors = [e for e in batch if isinstance(e, BaseException)]
            if errors:
                raise RuntimeError(f"store watch failed: {errors[0]}")
            evs = [e for e in batch if isinstance(e, WatchEvent)]
            try:
                self.reconcile(evs)
            except Exception as e:  # reconcile failures become status, not a crash
                log.exception("reconcile failed")
                self.errors.append(f"reconcile at rv {self.rev}: {e}")
                self.write_status()
            if self._supervised_changed():
                self.write_status()

    def _supervised_changed(self) -> bool:
        """A workload exited or was restarted (polled here), or a node's L7 proxy was
        restarted by the proxies' own supervisor thread: status.json must show it."""
        workloads = bool(self.sup.poll())
        return self.proxies.take_changed() or workloads

    # --- stop ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Remove everything (idempotent: a failed start and the final cleanup both
        call it)."""
        if self.stopped:
            return
        self.stopped = True
        self.stopping.set()
        if self.keep_datapath:
            self._detach()
            return
        for pump in self.pumps.values():
            pump.close()
        self.pumps.clear()
        self.sup.stop_all()
        for progs in self.programs.values():
            progs.unload()
        self.fabric.close()
        self.topo.close()
        self.proxies.stop()  # L7 proxy
        sweep(self.kp, keep_pidfile=True)

    def _detach(self) -> None:
        """Exit for a restart: stop flows, close handles, leave the namespaces, links,
        attached programs, pinned maps and the pods' processes as they are (the next
        agent adopts the processes from their records)."""
        for pump in self.pumps.values():
            pump.close()
        self.pumps.clear()
        self.sup.release_all()
        self.proxies.detach()  # L7 proxy: keeps serving, adopted next
        for progs in self.programs.values():
            progs.close()
        self.fabric.close()
        self.topo.close()
        with contextlib.suppress(FileNotFoundError):
            self.kp.ready.unlink()

    # --- status --------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return report.build_status(self)

    def write_status(self) -> None:
        report.write_status(self.kp.status, self.status())
