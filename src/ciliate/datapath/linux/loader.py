"""Loading a node's eBPF programs, pinning its maps and attaching programs to devices.

Role: ``NodeBPF(cluster_tag, node, netns_name)`` is the kernel datapath of one node:

- ``load()`` opens ``bpf/build/{bpf_lxc,bpf_overlay,bpf_host}.o`` with libbpf; every map is
  pinned by name in the node's pin directory, and maps already pinned there are reused
  with their contents (an agent restart adopts the running datapath, never flushes it);
- ``attach(device, direction, program)`` puts a clsact qdisc on the device inside the
  node's network namespace and a direct-action cls_bpf filter (pref 1, handle 1) running
  the program; replacing that filter is atomic, so re-attaching after a restart never
  leaves a window without a program;
- ``maps`` (``KernelMaps``) writes and reads the maps; ``events()`` reads cilium_events;
- ``unload()`` removes the node's pins (programs go away with the filters holding them);
  ``remove_cluster_pins(tag)`` removes everything of a cluster.

Pin layout: ``/sys/fs/bpf/ciliate/<cluster-tag>/<node>/tc/globals/<map>``; the tag is
chosen by the caller (unique per state dir) so clusters and parallel test runs never
share a pin. ``ciliate node exec`` bind-mounts the node's ``tc/globals`` on
``/sys/fs/bpf/tc/globals`` so Cilium's paths work verbatim.

Inputs: names, device names, program names. Outputs: kernel objects. Must not import the
control plane or the store; netlink goes through ``datapath.linux.netns``
(``datapath.linux.rtnl`` for the raw requests of ``attach``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any, Literal

from pyroute2.netlink.exceptions import NetlinkError

from ciliate.datapath.linux import bpf, netns, rtnl
from ciliate.datapath.linux.events import EventReader
from ciliate.datapath.linux.maps import KernelMaps

PIN_BASE = bpf.BPFFS_ROOT / "ciliate"

# program -> the object (one C file per attach point) that defines it
PROGRAM_OBJECT: dict[str, str] = {
    "cil_from_container": "bpf_lxc",
    "cil_from_overlay": "bpf_overlay",
    "cil_to_overlay": "bpf_overlay",
    "cil_from_netdev": "bpf_host",
    "cil_to_host": "bpf_host",
    "cil_from_host": "bpf_host",
}
OBJECTS = ("bpf_lxc", "bpf_overlay", "bpf_host")
# every object make -C bpf builds: the nodes' and the fabric's (datapath/linux/fabric.py)
ALL_OBJECTS = (*OBJECTS, "bpf_fabric")

# tc parents of the clsact qdisc's hooks (TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS/EGRESS))
_PARENT = {"ingress": "ffff:fff2", "egress": "ffff:fff3"}
_ETH_P_ALL = 0x0003

Direction = Literal["ingress", "egress"]


def source_dir() -> Path:
    """bpf/ of the checkout (or $CILIATE_BPF_DIR)."""
    env = os.environ.get("CILIATE_BPF_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[4] / "bpf"


def build_dir() -> Path:
    return source_dir() / "build"


def ensure_objects() -> Path:
    """The compiled objects, built with ``make -C bpf`` when missing or older than their
    sources (clang needed). Returns the build directory."""
    src = source_dir()
    out = src / "build"
    sources = list(src.glob("*.c")) + list((src / "lib").glob("*.h")) + [src / "Makefile"]
    newest = max((p.stat().st_mtime for p in sources if p.exists()), default=0.0)
    objs = [out / f"{o}.o" for o in ALL_OBJECTS]
    if all(o.exists() and o.stat().st_mtime >= newest for o in objs):
        return out
    if shutil.which("clang") is None:
        if all(o.exists() for o in objs):
            return out
        raise bpf.BPFError(2, "eBPF objects are not built and clang is missing (make setup)")
    out.mkdir(parents=True, exist_ok=True)
    # Agents and test runs may start together: one builds, the others wait for it, so
    # nobody loads a half-written object.
    with open(out / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        proc = subprocess.run(["make", "-s", "-C", str(src)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise bpf.BPFError(8, f"make -C bpf failed:\n{proc.stderr.strip()}")
    return out


def unavailable_reason() -> str | None:
    """Why the eBPF datapath cannot run here (one line), or None when it can: root, a
    bpffs, libbpf, and the objects (built, or clang to build them)."""
    if os.geteuid() != 0:
        return "loading eBPF programs needs root"
    try:
        bpf.ensure_bpffs()
    except OSError as e:
        return f"no BPF filesystem at {bpf.BPFFS_ROOT} ({e.strerror})"
    try:
        bpf.libbpf()
    except OSError:
        return "libbpf.so.1 is missing (install libbpf-dev or libbpf1)"
    objs = [build_dir() / f"{o}.o" for o in ALL_OBJECTS]
    if not all(o.exists() for o in objs) and shutil.which("clang") is None:
        return "the eBPF objects are not built and clang is missing (run make setup)"
    return None


def attach_program(
    sock: socket.socket, netns_name: str, device: str, direction: Direction, fd: int, name: str
) -> int:
    """Put a clsact qdisc on ``device`` (in the namespace of the raw rtnetlink ``sock``)
    and a direct-action cls_bpf filter (pref 1, handle 1) running the program ``fd`` on
    its ``direction`` hook; replacing that filter is atomic. Raw rtnetlink (``rtnl``):
    three pyroute2 requests cost ~1.5 ms of Python on a new pod's path; the same lookup,
    qdisc and filter take two system calls here. Returns the device's ifindex."""
    if direction not in _PARENT:
        raise ValueError(f"direction must be ingress or egress, not {direction!r}")
    idx = rtnl.link_index(sock, device)
    if not idx:
        raise FileNotFoundError(f"no device {device} in netns {netns_name}")
    parent = int(_PARENT[direction].replace(":", ""), 16)
    rtnl.request(
        sock,
        [rtnl.clsact(idx), rtnl.bpf_filter(idx, parent, fd, name)],
        tolerate=(errno.EEXIST,),  # the qdisc is there already
    )
    return idx


def pin_dir(cluster_tag: str, node: str) -> Path:
    return PIN_BASE / cluster_tag / node / "tc" / "globals"


def remove_cluster_pins(cluster_tag: str) -> None:
    """Unpin every map of a cluster (a no-op when there is none)."""
    _remove_tree(PIN_BASE / cluster_tag)
    with contextlib.suppress(OSError):
        PIN_BASE.rmdir()  # only when empty


def _remove_tree(path: Path) -> None:
    if not path.exists():
        return
    # bpffs supports unlink and rmdir, which is all rmtree needs
    shutil.rmtree(path, ignore_errors=True)


class NodeBPF:
    """The eBPF side of one node. Ensure-style: every method may be called again."""

    def __init__(self, cluster_tag: str, node: str, netns_name: str) -> None:
        self.cluster_tag = cluster_tag
        self.node = node
        self.netns_name = netns_name
        self.pin_dir = pin_dir(cluster_tag, node)
        self._objects: dict[str, bpf.BPFObject] = {}
        self._maps: KernelMaps | None = None
        self._ipr: Any = None
        self._raw: socket.socket | None = None  # raw rtnetlink in the node's namespace

    # --- objects and maps ---------------------------------------------------------------

    def load(self) -> None:
        """Load the three objects; create the node's pinned maps or adopt existing ones."""
        if self._objects:
            return
        bpf.ensure_bpffs()
        out = ensure_objects()
        self.pin_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._load_objects(out)
        except bpf.BPFError:
            self._close_objects()
            # A pinned map whose definition changed (an upgrade changed a layout) cannot be
            # adopted: its entries would be read with the wrong layout. Replace only those.
            if not self._unpin_incompatible(out):
                raise
            self._load_objects(out)

    def _load_objects(self, out: Path) -> None:
        try:
            for name in OBJECTS:
                self._objects[name] = bpf.BPFObject(out / f"{name}.o", self.pin_dir)
        except bpf.BPFError:
            self._close_objects()
            raise

    def _unpin_incompatible(self, out: Path) -> list[str]:
        """Unpin the maps whose type/sizes/flags differ from what the objects declare
        (found by loading the objects against a scratch pin dir); returns their names."""
        scratch = self.pin_dir.parent / f"scratch-{os.getpid()}"
        scratch.mkdir(parents=True, exist_ok=True)
        removed: list[str] = []
        objs: list[bpf.BPFObject] = []
        try:
            for name in OBJECTS:
                objs.append(bpf.BPFObject(out / f"{name}.o", scratch))
            for fresh in scratch.iterdir():
                old = self.pin_dir / fresh.name
                if not old.exists():
                    continue
                with bpf.Map.pinned(fresh) as f, bpf.Map.pinned(old) as o:
                    a, b = f.info, o.info
                    same = (a.type, a.key_size, a.value_size, a.max_entries, a.flags) == (
                        b.type,
                        b.key_size,
                        b.value_size,
                        b.max_entries,
                        b.flags,
                    )
                if not same:
                    old.unlink()
                    removed.append(fresh.name)
        finally:
            for obj in objs:
                obj.close()
            _remove_tree(scratch)
        return removed

    @property
    def loaded(self) -> bool:
        return bool(self._objects)

    @property
    def maps(self) -> KernelMaps:
        if self._maps is None:
            self._maps = KernelMaps(self.pin_dir)
        return self._maps

    def events(self) -> EventReader:
        """A reader of this node's cilium_events ring buffer (one consumer at a time)."""
        return EventReader(self.pin_dir / "cilium_events")

    def program_fd(self, program: str) -> int:
        obj = PROGRAM_OBJECT.get(program)
        if obj is None:
            raise KeyError(f"unknown program {program!r}; known: {sorted(PROGRAM_OBJECT)}")
        self.load()
        return self._objects[obj].program_fd(program)

    # --- tc attachment ------------------------------------------------------------------

    def _rtnl(self) -> Any:
        if self._ipr is None:
            self._ipr = netns.open_rtnl(self.netns_name)
        return self._ipr

    def attach(self, device: str, direction: Direction, program: str) -> None:
        """Run ``program`` on ``device``'s tc ``direction`` hook (idempotent, atomic)."""
        fd = self.program_fd(program)
        attach_program(self._raw_rtnl(), self.netns_name, device, direction, fd, program)

    def _raw_rtnl(self) -> socket.socket:
        if self._raw is None:
            self._raw = netns.run_in_netns(self.netns_name, rtnl.raw_socket)
        return self._raw

    def detach(self, device: str) -> None:
        """Remove the clsact qdisc (and with it every program) from ``device``."""
        ipr = self._rtnl()
        idx = netns.link_index(ipr, device)
        if not idx:
            return
        with contextlib.suppress(NetlinkError):
            ipr.tc("del", "clsact", idx)

    def attached(self, device: str) -> dict[str, str]:
        """{direction: program name} of what runs on ``device``."""
        ipr = self._rtnl()
        idx = netns.link_index(ipr, device)
        out: dict[str, str] = {}
        if not idx:
            return out
        for direction, parent in _PARENT.items():
            try:
                filters = ipr.get_filters(idx, parent=parent)
            except NetlinkError:
                continue
            for f in filters:
                opts = f.get_attr("TCA_OPTIONS")
                if opts is not None and opts.get_attr("TCA_BPF_NAME"):
                    out[direction] = str(opts.get_attr("TCA_BPF_NAME"))
        return out

    # --- teardown -----------------------------------------------------------------------

    def _close_objects(self) -> None:
        for o in self._objects.values():
            o.close()
        self._objects.clear()

    def close(self) -> None:
        """Release this process's handles; pins and attached programs stay."""
        self._close_objects()
        if self._maps is not None:
            self._maps.close()
            self._maps = None
        if self._raw is not None:
            self._raw.close()
            self._raw = None
        if self._ipr is not None:
            with contextlib.suppress(Exception):
                self._ipr.close()
            self._ipr = None

    def unload(self) -> None:
        """Close everything and remove this node's pins."""
        self.close()
        node_dir = PIN_BASE / self.cluster_tag / self.node
        _remove_tree(node_dir)
        with contextlib.suppress(OSError):
            (PIN_BASE / self.cluster_tag).rmdir()
        with contextlib.suppress(OSError):
            PIN_BASE.rmdir()

    remove_cluster_pins = staticmethod(remove_cluster_pins)
