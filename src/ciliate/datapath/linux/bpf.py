"""The bpf() syscall layer: pinned objects and map entries through ctypes, objects through libbpf.

Role: the only module that calls bpf(2) and libbpf. Everything above it (``maps.py``,
``loader.py``, ``events.py``) speaks bytes and file descriptors through these functions.

- ``obj_get(path)`` / ``obj_pin(fd, path)``: pinned maps in a bpffs;
- ``map_lookup`` / ``map_update`` / ``map_delete`` / ``map_keys`` / ``map_info``: raw map
  entries by fd (bytes in, bytes out; the codecs live in ``ciliate.codec``);
- ``BPFObject``: an ELF object opened and loaded by libbpf (``libbpf.so.1`` via ctypes) with
  its maps pinned by name under a pin directory; maps already pinned there are reused with
  their contents (libbpf's LIBBPF_PIN_BY_NAME), which is how a restarted agent adopts the
  running datapath without flushing it;
- ``RingBuffer``: libbpf's ring_buffer consumer for a BPF_MAP_TYPE_RINGBUF map;
- ``ensure_bpffs()``: mounts the BPF filesystem at /sys/fs/bpf when it is not there yet
  (Cilium's agent does the same at start-up).

Why ctypes: a bpf() call from Python costs ~1.5 µs (about 680k map updates per second here),
two orders of magnitude below spawning bpftool per entry; libbpf does the ELF relocation and
map creation that would be a lot of code to redo.

Inputs/outputs: file descriptors, paths and bytes. Must not import the control plane,
``desired`` or the store: it knows nothing of what the bytes mean.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

# --- the syscall ----------------------------------------------------------------------

_NR_BPF = {"x86_64": 321, "aarch64": 280}.get(os.uname().machine, 321)

BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_UPDATE_ELEM = 2
BPF_MAP_DELETE_ELEM = 3
BPF_MAP_GET_NEXT_KEY = 4
BPF_OBJ_PIN = 6
BPF_OBJ_GET = 7
BPF_OBJ_GET_INFO_BY_FD = 15

BPF_ANY = 0
BPF_NOEXIST = 1
BPF_EXIST = 2

# enum bpf_map_type values we name in messages and checks
MAP_TYPES = {
    1: "hash",
    2: "array",
    5: "percpu_hash",
    6: "percpu_array",
    9: "lru_hash",
    11: "lpm_trie",
    27: "ringbuf",
}
BPF_MAP_TYPE_PERCPU_HASH = 5
BPF_MAP_TYPE_PERCPU_ARRAY = 6
BPF_MAP_TYPE_LRU_PERCPU_HASH = 10

_ATTR_SIZE = 128
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.syscall.restype = ctypes.c_long


class BPFError(OSError):
    """A bpf() call or a libbpf step failed; ``errno`` says why."""


def _bpf(cmd: int, attr: ctypes.Array[ctypes.c_char]) -> int:
    ret = _libc.syscall(_NR_BPF, cmd, attr, _ATTR_SIZE)
    if ret < 0:
        err = ctypes.get_errno()
        raise BPFError(err, f"bpf(cmd={cmd}): {os.strerror(err)}")
    return int(ret)


def _addr(buf: ctypes.Array[ctypes.c_char]) -> int:
    return ctypes.addressof(buf)


def obj_get(path: str | os.PathLike[str]) -> int:
    """fd of the object pinned at path (BPF_OBJ_GET)."""
    p = ctypes.create_string_buffer(os.fsencode(path))
    attr = ctypes.create_string_buffer(_ATTR_SIZE)
    struct.pack_into("<QII", attr, 0, _addr(p), 0, 0)
    return _bpf(BPF_OBJ_GET, attr)


def obj_pin(fd: int, path: str | os.PathLike[str]) -> None:
    p = ctypes.create_string_buffer(os.fsencode(path))
    attr = ctypes.create_string_buffer(_ATTR_SIZE)
    struct.pack_into("<QII", attr, 0, _addr(p), fd, 0)
    _bpf(BPF_OBJ_PIN, attr)


@dataclass(frozen=True, slots=True)
class MapInfo:
    type: int
    id: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int
    name: str

    @property
    def type_name(self) -> str:
        return MAP_TYPES.get(self.type, str(self.type))

    @property
    def per_cpu(self) -> bool:
        return self.type in (
            BPF_MAP_TYPE_PERCPU_HASH,
            BPF_MAP_TYPE_PERCPU_ARRAY,
            BPF_MAP_TYPE_LRU_PERCPU_HASH,
        )


def map_info(fd: int) -> MapInfo:
    info = ctypes.create_string_buffer(80)
    attr = ctypes.create_string_buffer(_ATTR_SIZE)
    struct.pack_into("<IIQ", attr, 0, fd, len(info), _addr(info))
    _bpf(BPF_OBJ_GET_INFO_BY_FD, attr)
    typ, mid, ks, vs, me, fl = struct.unpack_from("<6I", info, 0)
    name = info.raw[24:40].split(b"\0", 1)[0].decode()
    return MapInfo(typ, mid, ks, vs, me, fl, name)


def possible_cpus() -> int:
    """Number of possible CPUs: the stride of per-CPU map values."""
    text = Path("/sys/devices/system/cpu/possible").read_text().strip()
    n = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        n += int(hi or lo) - int(lo) + 1
    return n


class Map:
    """One open BPF map: raw entries by bytes. Buffers are allocated once per map so a
    bulk update costs one syscall per entry and nothing else."""

    def __init__(self, fd: int, *, owned: bool = True) -> None:
        self.fd = fd
        self.info = map_info(fd)
        self._owned = owned
        self._value_size = self.info.value_size
        if self.info.per_cpu:
            # per-CPU values are returned one 8-byte-aligned slot per possible CPU
            self._value_size = ((self.info.value_size + 7) // 8 * 8) * possible_cpus()
        self._attr = ctypes.create_string_buffer(_ATTR_SIZE)
        self._key = ctypes.create_string_buffer(max(self.info.key_size, 1))
        self._next = ctypes.create_string_buffer(max(self.info.key_size, 1))
        self._val = ctypes.create_string_buffer(max(self._value_size, 1))

    @classmethod
    def pinned(cls, path: str | os.PathLike[str]) -> Map:
        return cls(obj_get(path))

    def close(self) -> None:
        if self._owned and self.fd >= 0:
            os.close(self.fd)
        self.fd = -1

    def __enter__(self) -> Map:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_key(self, key: bytes) -> None:
        if len(key) != self.info.key_size:
            raise ValueError(
                f"{self.info.name}: key of {len(key)} bytes, map expects {self.info.key_size}"
            )

    def lookup(self, key: bytes) -> bytes | None:
        self._check_key(key)
        ctypes.memmove(self._key, key, len(key))
        # every field of the command is written: a stale flags word from an earlier update
        # would make the kernel reject the call (EINVAL)
        struct.pack_into("<IIQQQ", self._attr, 0, self.fd, 0, _addr(self._key), _addr(self._val), 0)
        ret = _libc.syscall(_NR_BPF, BPF_MAP_LOOKUP_ELEM, self._attr, _ATTR_SIZE)
        if ret < 0:
            err = ctypes.get_errno()
            if err == errno.ENOENT:
                return None
            raise BPFError(err, f"lookup in {self.info.name}: {os.strerror(err)}")
        return self._val.raw[: self._value_size]

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        self._check_key(key)
        if len(value) != self._value_size:
            raise ValueError(
                f"{self.info.name}: value of {len(value)} bytes, map expects {self._value_size}"
            )
        ctypes.memmove(self._key, key, len(key))
        ctypes.memmove(self._val, value, len(value))
        struct.pack_into(
            "<IIQQQ", self._attr, 0, self.fd, 0, _addr(self._key), _addr(self._val), flags
        )
        ret = _libc.syscall(_NR_BPF, BPF_MAP_UPDATE_ELEM, self._attr, _ATTR_SIZE)
        if ret < 0:
            err = ctypes.get_errno()
            raise BPFError(err, f"update of {self.info.name}: {os.strerror(err)}")

    def delete(self, key: bytes) -> bool:
        """True when an entry was removed, False when there was none."""
        self._check_key(key)
        ctypes.memmove(self._key, key, len(key))
        struct.pack_into("<IIQQQ", self._attr, 0, self.fd, 0, _addr(self._key), 0, 0)
        ret = _libc.syscall(_NR_BPF, BPF_MAP_DELETE_ELEM, self._attr, _ATTR_SIZE)
        if ret < 0:
            err = ctypes.get_errno()
            if err == errno.ENOENT:
                return False
            raise BPFError(err, f"delete from {self.info.name}: {os.strerror(err)}")
        return True

    def keys(self) -> Iterator[bytes]:
        """Every key (BPF_MAP_GET_NEXT_KEY from NULL). Entries deleted concurrently may
        restart the walk in a hash map: callers get each key at least once."""
        ks = self.info.key_size
        have_key = False
        while True:
            struct.pack_into(
                "<IIQQQ",
                self._attr,
                0,
                self.fd,
                0,
                _addr(self._key) if have_key else 0,
                _addr(self._next),
                0,
            )
            ret = _libc.syscall(_NR_BPF, BPF_MAP_GET_NEXT_KEY, self._attr, _ATTR_SIZE)
            if ret < 0:
                err = ctypes.get_errno()
                if err == errno.ENOENT:
                    return
                raise BPFError(err, f"iterating {self.info.name}: {os.strerror(err)}")
            k = self._next.raw[:ks]
            yield k
            ctypes.memmove(self._key, k, ks)
            have_key = True

    def items(self) -> list[tuple[bytes, bytes]]:
        out: list[tuple[bytes, bytes]] = []
        for k in list(self.keys()):
            v = self.lookup(k)
            if v is not None:
                out.append((k, v))
        return out

    def clear(self) -> int:
        n = 0
        for k in list(self.keys()):
            n += self.delete(k)
        return n


# --- bpffs ----------------------------------------------------------------------------

BPFFS_MAGIC = 0xCAFE4A11
BPFFS_ROOT = Path("/sys/fs/bpf")


def is_bpffs(path: str | os.PathLike[str]) -> bool:
    class _Statfs(ctypes.Structure):
        _fields_ = [("f_type", ctypes.c_long), ("rest", ctypes.c_byte * 112)]

    buf = _Statfs()
    if _libc.statfs(os.fsencode(path), ctypes.byref(buf)) != 0:
        return False
    return bool((int(buf.f_type) & 0xFFFFFFFF) == BPFFS_MAGIC)


def ensure_bpffs(root: Path = BPFFS_ROOT) -> None:
    """Mount a bpffs at root unless one is there (idempotent). Pins live in it; it is a
    system-wide resource like Cilium's and is left mounted."""
    if is_bpffs(root):
        return
    root.mkdir(parents=True, exist_ok=True)
    if _libc.mount(b"bpf", os.fsencode(root), b"bpf", 0, None) != 0:
        err = ctypes.get_errno()
        raise BPFError(err, f"mount bpffs at {root}: {os.strerror(err)}")


# --- libbpf ----------------------------------------------------------------------------


class _OpenOpts(ctypes.Structure):
    # struct bpf_object_open_opts of libbpf 1.x (sz first: libbpf accepts older/newer sizes)
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("object_name", ctypes.c_char_p),
        ("relaxed_maps", ctypes.c_bool),
        ("pin_root_path", ctypes.c_char_p),
        ("_attach_prog_fd", ctypes.c_uint32),
        ("kconfig", ctypes.c_char_p),
        ("btf_custom_path", ctypes.c_char_p),
        ("kernel_log_buf", ctypes.c_char_p),
        ("kernel_log_size", ctypes.c_size_t),
        ("kernel_log_level", ctypes.c_uint32),
    ]


_SAMPLE_CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
_PRINT_CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)

_libbpf: ctypes.CDLL | None = None


def libbpf() -> ctypes.CDLL:
    """libbpf.so.1, loaded once, with the prototypes we call."""
    global _libbpf
    if _libbpf is not None:
        return _libbpf
    name = ctypes.util.find_library("bpf") or "libbpf.so.1"
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError as e:  # pragma: no cover - depends on the machine
        raise BPFError(errno.ENOENT, f"libbpf not found ({e}); install libbpf-dev") from e
    vp, cp, ci = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
    lib.bpf_object__open_file.restype = vp
    lib.bpf_object__open_file.argtypes = [cp, ctypes.POINTER(_OpenOpts)]
    lib.bpf_object__load.restype = ci
    lib.bpf_object__load.argtypes = [vp]
    lib.bpf_object__close.restype = None
    lib.bpf_object__close.argtypes = [vp]
    lib.bpf_object__find_program_by_name.restype = vp
    lib.bpf_object__find_program_by_name.argtypes = [vp, cp]
    lib.bpf_object__find_map_by_name.restype = vp
    lib.bpf_object__find_map_by_name.argtypes = [vp, cp]
    lib.bpf_program__fd.restype = ci
    lib.bpf_program__fd.argtypes = [vp]
    lib.bpf_map__fd.restype = ci
    lib.bpf_map__fd.argtypes = [vp]
    lib.libbpf_get_error.restype = ctypes.c_long
    lib.libbpf_get_error.argtypes = [vp]
    lib.ring_buffer__new.restype = vp
    lib.ring_buffer__new.argtypes = [ci, _SAMPLE_CB, vp, vp]
    lib.ring_buffer__poll.restype = ci
    lib.ring_buffer__poll.argtypes = [vp, ci]
    lib.ring_buffer__consume.restype = ci
    lib.ring_buffer__consume.argtypes = [vp]
    lib.ring_buffer__free.restype = None
    lib.ring_buffer__free.argtypes = [vp]
    lib.ring_buffer__epoll_fd.restype = ci
    lib.ring_buffer__epoll_fd.argtypes = [vp]
    lib.libbpf_set_print.restype = vp
    lib.libbpf_set_print.argtypes = [vp]
    _libbpf = lib
    return lib


class BPFObject:
    """A compiled object (``bpf/build/*.o``) loaded into the kernel.

    Maps declared with ``pinning = LIBBPF_PIN_BY_NAME`` are pinned as ``<pin_root>/<name>``;
    a map already pinned there with the same definition is reused as is (adopted, never
    flushed), one with another definition fails the load (a layout changed: the caller
    decides whether to remove the old pin). Programs stay loaded while this object is open
    or while something (a tc filter) holds them.
    """

    def __init__(self, path: str | os.PathLike[str], pin_root: str | os.PathLike[str]) -> None:
        lib = libbpf()
        self.path = str(path)
        self._path_b = os.fsencode(path)
        self._pin_b = os.fsencode(pin_root)
        opts = _OpenOpts()
        opts.sz = ctypes.sizeof(_OpenOpts)
        opts.pin_root_path = self._pin_b
        obj = lib.bpf_object__open_file(self._path_b, ctypes.byref(opts))
        if not obj or lib.libbpf_get_error(obj):
            raise BPFError(ctypes.get_errno() or errno.EINVAL, f"cannot open {path}")
        self._obj: int | None = obj
        ret = lib.bpf_object__load(obj)
        if ret < 0:
            lib.bpf_object__close(obj)
            self._obj = None
            raise BPFError(-ret, f"cannot load {path}: {os.strerror(-ret)} (see libbpf log)")

    def program_fd(self, name: str) -> int:
        lib = libbpf()
        if self._obj is None:
            raise BPFError(errno.EBADF, f"{self.path} is closed")
        prog = lib.bpf_object__find_program_by_name(self._obj, name.encode())
        if not prog:
            raise BPFError(errno.ENOENT, f"no program {name} in {self.path}")
        return int(lib.bpf_program__fd(prog))

    def has_program(self, name: str) -> bool:
        lib = libbpf()
        return bool(
            self._obj is not None and lib.bpf_object__find_program_by_name(self._obj, name.encode())
        )

    def close(self) -> None:
        if self._obj is not None:
            libbpf().bpf_object__close(self._obj)
            self._obj = None

    def __del__(self) -> None:  # pragma: no cover - best effort
        with contextlib.suppress(Exception):
            self.close()


class RingBuffer:
    """Consumer of a BPF_MAP_TYPE_RINGBUF map (libbpf ring_buffer): ``poll(timeout_ms)``
    returns the records that arrived, each as bytes, in the order the kernel wrote them."""

    def __init__(self, map_fd: int) -> None:
        lib = libbpf()
        self._pending: list[bytes] = []

        def _on_sample(_ctx: int | None, data: int | None, size: int) -> int:
            if data:
                self._pending.append(ctypes.string_at(data, size))
            return 0

        self._cb: Callable[..., int] = _SAMPLE_CB(_on_sample)
        rb = lib.ring_buffer__new(map_fd, self._cb, None, None)
        if not rb or lib.libbpf_get_error(rb):
            raise BPFError(ctypes.get_errno() or errno.EINVAL, "ring_buffer__new failed")
        self._rb: int | None = rb

    def fileno(self) -> int:
        """An epoll fd that becomes readable when records are waiting (for selectors)."""
        if self._rb is None:
            return -1
        return int(libbpf().ring_buffer__epoll_fd(self._rb))

    def poll(self, timeout_ms: int = 0) -> list[bytes]:
        if self._rb is None:
            return []
        ret = libbpf().ring_buffer__poll(self._rb, timeout_ms)
        if ret < 0 and -ret != errno.EINTR:
            raise BPFError(-ret, f"ring_buffer__poll: {os.strerror(-ret)}")
        out, self._pending = self._pending, []
        return out

    def close(self) -> None:
        if self._rb is not None:
            libbpf().ring_buffer__free(self._rb)
            self._rb = None

    def __del__(self) -> None:  # pragma: no cover - best effort
        with contextlib.suppress(Exception):
            self.close()
