"""Netlink plumbing: network namespaces, links, addresses, routes and sysctls.

Role: idempotent ``ensure_*`` calls that make one piece of kernel state look as asked,
and ``delete_*`` calls that are no-ops when the thing is already gone. Inputs are names
and plain values (the topology module translates ``desired.Device``/``Route`` into them);
outputs are kernel state. Nothing here decides *what* to build.

Why not ``ip netns exec`` / ``pyroute2.NetNS``: ``ip netns exec`` remounts /sys into a
throwaway bpffs and spawning ``ip`` per pod dominates latency; ``NetNS()`` forks a
helper per namespace (~17 ms). Instead a short-lived thread ``setns()``s into the
namespace, opens a plain netlink socket there and exits: a socket stays bound to the
namespace it was created in, so the returned ``IPRoute`` talks to that namespace from
any thread, at the cost of ~1 ms.

Namespaces are created like ``ip netns add`` does (unshare in a thread, bind-mount the
thread's ``/proc/self/task/<tid>/ns/net`` on ``/run/netns/<name>``), so ``ip netns``,
``ip -n`` and ``nsenter --net=/run/netns/<name>`` all see them.

Must not import anything of ciliate above ``desired`` (it imports nothing of ciliate).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Interface
from pathlib import Path
from typing import Any, TypeVar, cast

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
CLONE_NEWNS = 0x00020000
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SHARED = 1 << 20
MNT_DETACH = 2

# rtnetlink constants (linux/rtnetlink.h)
RTPROT_KERNEL = 2
RTPROT_BOOT = 3  # what `ip route add` uses; `ip route` prints no "proto" for it
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RT_SCOPE_HOST = 254

T = TypeVar("T")

_libc = ctypes.CDLL("libc.so.6", use_errno=True)
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_void_p,
]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_rundir_lock = threading.Lock()
_rundir_ready = False


def _oserror(what: str, target: str) -> OSError:
    e = ctypes.get_errno()
    return OSError(e, f"{what} {target}: {os.strerror(e)}")


def netns_path(name: str) -> Path:
    return NETNS_DIR / name


def netns_exists(name: str) -> bool:
    return netns_path(name).exists()


def list_netns(prefix: str = "") -> list[str]:
    """Names under /run/netns starting with ``prefix`` (sorted)."""
    try:
        return sorted(n for n in os.listdir(NETNS_DIR) if n.startswith(prefix))
    except FileNotFoundError:
        return []


def _ensure_rundir() -> None:
    """Make /run/netns a shared mount point, as iproute2 does, once per boot."""
    global _rundir_ready
    with _rundir_lock:
        if _rundir_ready and NETNS_DIR.is_dir():
            return
        NETNS_DIR.mkdir(parents=True, exist_ok=True)
        d = str(NETNS_DIR).encode()
        if _libc.mount(b"", d, b"none", MS_SHARED | MS_REC, None) == 0:
            _rundir_ready = True
            return
        if _libc.mount(d, d, b"none", MS_BIND | MS_REC, None) != 0:
            raise _oserror("bind-mount", str(NETNS_DIR))
        if _libc.mount(b"", d, b"none", MS_SHARED | MS_REC, None) != 0:
            raise _oserror("make-shared", str(NETNS_DIR))
        _rundir_ready = True


def _in_thread(fn: Callable[[], T]) -> T:
    """Run ``fn`` in a fresh thread (whose namespace changes die with it)."""
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(fn())
        except BaseException as e:  # re-raised in the caller
            error.append(e)

    th = threading.Thread(target=target, name="ciliate-netns")
    th.start()
    th.join()
    if error:
        raise error[0]
    return result[0]


def _enter(name: str) -> None:
    """setns() the *calling thread* into netns ``name``."""
    fd = os.open(netns_path(name), os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            raise _oserror("setns", name)
    finally:
        os.close(fd)


def ensure_netns(name: str) -> bool:
    """Create netns ``name`` unless it exists; True when it was created."""
    return _create_netns(name, None) is not None


def _create_netns(name: str, inside: Callable[[], T] | None) -> tuple[T | None] | None:
    """Create netns ``name`` (None when it exists already). ``inside`` runs in the
    creating thread, which is already in the new namespace: a socket it opens belongs
    there, saving a second thread and setns() on the hot path."""
    path = netns_path(name)
    if path.exists():
        if _is_mounted(path):
            return None
        # A placeholder without its namespace: the creator died between the two steps.
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    _ensure_rundir()
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
    except FileExistsError:
        return None

    def create() -> tuple[T | None]:
        if _libc.unshare(CLONE_NEWNET) != 0:
            raise _oserror("unshare", name)
        src = f"/proc/self/task/{threading.get_native_id()}/ns/net".encode()
        if _libc.mount(src, str(path).encode(), b"none", MS_BIND, None) != 0:
            raise _oserror("bind-mount netns", name)
        return (inside() if inside is not None else None,)

    try:
        return _in_thread(create)
    except OSError:
        with contextlib.suppress(OSError):
            path.unlink()
        raise


def _is_mounted(path: Path) -> bool:
    """True when ``path`` is a namespace bind mount, not the bare file made before it."""
    try:
        return os.stat(path).st_dev != os.stat(path.parent).st_dev
    except FileNotFoundError:
        return False


def ensure_netns_rtnl(name: str, sysctls: Iterable[tuple[str, str]] = ()) -> tuple[bool, Any]:
    """``ensure_netns`` plus an ``IPRoute`` bound to it, in one trip when the namespace
    is new. ``sysctls`` are written either way (an existing namespace may be one whose
    creator died before writing them). Returns (created, ipr)."""
    items = list(sysctls)

    def inside() -> socket.socket:
        _write_sysctls(items)
        return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 0)

    made = _create_netns(name, inside)
    if made is None or made[0] is None:
        return False, open_rtnl(name, items)
    return True, IPRoute(use_socket=made[0])


def ensure_netns_with(
    name: str, sysctls: Iterable[tuple[str, str]], inside: Callable[[], T]
) -> tuple[bool, T]:
    """``ensure_netns_rtnl`` for any handles: ``sysctls`` are written and ``inside()``
    runs in the namespace -- in the creating thread when it is new (one trip), else in
    a thread that enters it. Returns (created, what ``inside`` returned)."""
    items = list(sysctls)

    def run() -> T:
        _write_sysctls(items)
        return inside()

    made = _create_netns(name, run)
    if made is None:
        return False, run_in_netns(name, run)
    return True, cast(T, made[0])


def delete_netns(name: str) -> None:
    """Unmount and remove netns ``name``; the kernel frees it (and its links) once no
    process or socket holds it. A no-op when it does not exist."""
    path = netns_path(name)
    if not path.exists():
        return
    _libc.umount2(str(path).encode(), MNT_DETACH)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def run_in_netns(name: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` in a thread that has entered netns ``name`` (sockets it opens and
    /proc/sys/net files it writes belong to that namespace)."""

    def inner() -> T:
        _enter(name)
        return fn()

    return _in_thread(inner)


def open_netns_fd(name: str) -> int:
    return os.open(netns_path(name), os.O_RDONLY | os.O_CLOEXEC)


def open_rtnl(name: str, sysctls: Iterable[tuple[str, str]] = ()) -> Any:
    """An ``IPRoute`` bound to netns ``name`` (see the module docstring for why);
    ``sysctls`` are written in the same trip into the namespace."""
    items = list(sysctls)

    def make() -> socket.socket:
        _write_sysctls(items)
        # SOCK_DGRAM: pyroute2's asyncio transport insists on a datagram socket.
        return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 0)

    sock = run_in_netns(name, make)
    return IPRoute(use_socket=sock)


def write_sysctl(netns: str, settings: Iterable[tuple[str, str]]) -> None:
    """Write ``(dotted.key, value)`` pairs under /proc/sys inside ``netns``: /proc/sys/net
    resolves against the namespace of the task that opens it."""
    items = list(settings)
    run_in_netns(netns, lambda: _write_sysctls(items))


def _write_sysctls(items: Iterable[tuple[str, str]]) -> None:
    for key, value in items:
        p = Path("/proc/sys") / key.replace(".", "/")
        # A missing key (IPv6 compiled out, a device not there yet) is not an error.
        with contextlib.suppress(FileNotFoundError):
            p.write_text(value)


# --- links ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LinkSpec:
    """One end of a link as asked for: name, wanted ifindex (0 = any), MAC ("" = any)."""

    name: str
    ifindex: int = 0
    mac: str = ""
    mtu: int = 1500


def link_index(ipr: Any, name: str) -> int:
    """The ifindex of link ``name``, 0 when there is none."""
    # RTM_GETLINK by name: one answer, where link_lookup() dumps every link (a node
    # with many pods made each lookup cost ~1 ms).
    try:
        (msg,) = ipr.link("get", ifname=name)
    except NetlinkError as e:
        if e.code in (errno.ENODEV, errno.ENOENT):
            return 0
        raise
    return int(msg["index"])


def _link_matches(ipr: Any, spec: LinkSpec) -> bool:
    idx = link_index(ipr, spec.name)
    if not idx:
        return False
    if spec.ifindex and idx != spec.ifindex:
        return False
    if spec.mac:
        (link,) = ipr.link("get", index=idx)
        if str(link.get("address", "")).lower() != spec.mac.lower():
            return False
    return True


def _add_link(ipr: Any, spec: LinkSpec, **attrs: Any) -> int:
    """``ip link add`` with the wanted ifindex; if that number is taken (only possible
    when the plan and the namespace disagree) fall back to any number rather than fail.
    Returns the wanted index when it was honoured, 0 when the kernel chose."""
    kw: dict[str, Any] = {"ifname": spec.name, "mtu": spec.mtu, **attrs}
    if spec.mac:
        kw["address"] = spec.mac
    if spec.ifindex:
        try:
            ipr.link("add", index=spec.ifindex, **kw)
            return spec.ifindex
        except NetlinkError as e:
            if e.code not in (errno.EEXIST, errno.EBUSY) or link_index(ipr, spec.name):
                raise
    ipr.link("add", **kw)
    return 0


def delete_link(ipr: Any, name: str) -> None:
    idx = link_index(ipr, name)
    if idx:
        with contextlib.suppress(NetlinkError):
            ipr.link("del", index=idx)


def ensure_veth(ipr: Any, local: LinkSpec, peer: LinkSpec, peer_netns: str | None = None) -> bool:
    """A veth pair ``local`` (in ``ipr``'s namespace) <-> ``peer`` (in ``peer_netns``, or
    the same namespace when None). The peer is created directly in its namespace
    (IFLA_NET_NS_FD inside the peer info), so its ifindex is numbered there. True when
    (re)created; an existing pair with other indexes/MACs is replaced."""
    if _link_matches(ipr, local):
        return False
    delete_link(ipr, local.name)
    create_veth(ipr, local, peer, peer_netns)
    return True


def create_veth(
    ipr: Any, local: LinkSpec, peer: LinkSpec, peer_netns: str | None = None
) -> tuple[int, int]:
    """Create the pair without looking first (the fast path for a fresh namespace;
    EEXIST when ``local`` exists). Returns the (local, peer) ifindexes when they are the
    wanted ones, 0 for an end whose number the kernel chose."""
    fd = open_netns_fd(peer_netns) if peer_netns else -1
    try:
        try:
            return _add_veth(ipr, local, peer, fd, peer.ifindex), peer.ifindex
        except NetlinkError as e:
            # The peer's wanted index may be taken in its namespace: retry without it.
            if e.code not in (errno.EEXIST, errno.EBUSY) or not peer.ifindex:
                raise
            if link_index(ipr, local.name):
                raise
            return _add_veth(ipr, local, peer, fd, 0), 0
    finally:
        if fd >= 0:
            os.close(fd)


def _add_veth(ipr: Any, local: LinkSpec, peer: LinkSpec, netns_fd: int, peer_index: int) -> int:
    # pyroute2's "peer=" shortcut only takes attributes; the peer's ifindex lives in the
    # ifinfomsg header of VETH_INFO_PEER, so the link info is spelled out here.
    attrs: list[tuple[str, Any]] = [("IFLA_IFNAME", peer.name), ("IFLA_MTU", peer.mtu)]
    if peer.mac:
        attrs.append(("IFLA_ADDRESS", peer.mac))
    if netns_fd >= 0:
        attrs.append(("IFLA_NET_NS_FD", netns_fd))
    peer_msg: dict[str, Any] = {"attrs": attrs}
    if peer_index:
        peer_msg["index"] = peer_index
    linkinfo = {
        "attrs": [
            ("IFLA_INFO_KIND", "veth"),
            ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", peer_msg)]}),
        ]
    }
    return _add_link(ipr, local, IFLA_LINKINFO=linkinfo)


def ensure_vxlan(ipr: Any, spec: LinkSpec, port: int = 8472) -> bool:
    """A VXLAN device in external (collect_md) mode: the tunnel key (remote, VNI) comes
    from each packet's metadata, set by cil_to_overlay with bpf_skb_set_tunnel_key."""
    if _link_matches(ipr, spec):
        return False
    delete_link(ipr, spec.name)
    _add_link(ipr, spec, kind="vxlan", vxlan_collect_metadata=1, vxlan_port=port, vxlan_learning=0)
    return True


def ensure_bridge(ipr: Any, spec: LinkSpec) -> bool:
    if _link_matches(ipr, spec):
        return False
    delete_link(ipr, spec.name)
    _add_link(ipr, spec, kind="bridge", br_stp_state=0, br_forward_delay=0)
    return True


def ensure_master(ipr: Any, name: str, master: str) -> None:
    ipr.link("set", index=link_index(ipr, name), master=link_index(ipr, master))


def ensure_up(ipr: Any, name: str, index: int = 0) -> None:
    """Set link ``name`` up (``index`` saves the lookup when it is known)."""
    ipr.link("set", index=index or link_index(ipr, name), state="up")


def add_address(ipr: Any, index: int, cidr: str) -> None:
    """Add one address (fresh namespaces: nothing to compare against)."""
    a = IPv4Interface(cidr)
    ipr.addr("add", index=index, address=str(a.ip), prefixlen=a.network.prefixlen)


def ensure_addresses(ipr: Any, name: str, cidrs: Iterable[str]) -> None:
    """Exactly these IPv4 addresses on link ``name`` (others removed)."""
    idx = link_index(ipr, name)
    want = {IPv4Interface(c) for c in cidrs}
    have: set[IPv4Interface] = set()
    for msg in ipr.get_addr(index=idx, family=socket.AF_INET):
        have.add(IPv4Interface(f"{msg.get('address')}/{msg['prefixlen']}"))
    for a in have - want:
        with contextlib.suppress(NetlinkError):
            ipr.addr("del", index=idx, address=str(a.ip), prefixlen=a.network.prefixlen)
    for a in sorted(want - have):
        ipr.addr("add", index=idx, address=str(a.ip), prefixlen=a.network.prefixlen)


@dataclass(frozen=True, slots=True)
class RouteSpec:
    dst: str  # "default" or CIDR or address
    dev: str
    via: str = ""
    src: str = ""
    kernel_proto: bool = False
    link_scope: bool = False
    mtu: int = 0


def _route_attrs(ipr: Any, r: RouteSpec, oif: int = 0) -> dict[str, Any]:
    dst = "0.0.0.0/0" if r.dst == "default" else r.dst
    if "/" not in dst:
        dst += "/32"
    kw: dict[str, Any] = {
        "dst": dst,
        "oif": oif or link_index(ipr, r.dev),
        "proto": RTPROT_KERNEL if r.kernel_proto else RTPROT_BOOT,
        "scope": RT_SCOPE_LINK if r.link_scope else RT_SCOPE_UNIVERSE,
    }
    if r.via:
        kw["gateway"] = r.via
    if r.src:
        kw["prefsrc"] = r.src
    if r.mtu:
        kw["RTA_METRICS"] = {"attrs": [["RTAX_MTU", r.mtu]]}
    return kw


def ensure_route(ipr: Any, r: RouteSpec, oif: int = 0) -> None:
    """``ip route replace`` (idempotent); ``oif`` saves the device lookup when known."""
    ipr.route("replace", **_route_attrs(ipr, r, oif))


def delete_route(ipr: Any, r: RouteSpec) -> None:
    kw = _route_attrs(ipr, r)
    with contextlib.suppress(NetlinkError):
        ipr.route("del", dst=kw["dst"], oif=kw["oif"])


def setns_current_thread(name: str) -> None:
    """Enter netns ``name`` in the calling thread (for a dedicated worker thread)."""
    _enter(name)
