"""Cross-process wake-up of store watchers: one unix datagram socket per watcher.

Role: lets a commit in one process wake the watchers of the same SQLite file in every
other process at once, instead of after their next poll. Inputs: the directory that
registers the watchers of one database (``<db>-watch/``, next to ``-wal`` and
``-shm``). Outputs: ``Bell`` (a watcher's socket: ``drain``, ``wait``, ``close``) and
``Ringer`` (a writer's: ``ring`` after each commit). Imports only the standard library;
must not import anything of ciliate (it sits under ``store.sqlite``).

Theory of operation:

1. A watcher binds a ``SOCK_DGRAM`` unix socket at ``<dir>/<pid>-<random>.sock``
   before its first read of the event log, so no commit after that read can be missed.
2. A writer, after its ``COMMIT``, sends one byte to every ``*.sock`` in the directory
   (its own process's watchers included). The content is meaningless: a datagram only
   says "look at ``PRAGMA data_version``"; the event log stays the single source of truth.
3. The watcher drains its socket *before* reading the log, then waits on it with the
   poll interval as timeout. A ring that lands between the read and the wait leaves the
   socket readable, so the wait returns at once.
4. Failures never reach the writer: a commit is already durable when it rings.
   ``ECONNREFUSED`` means nobody is bound at that path -- the watcher died (kill -9)
   without removing its file -- so the file is removed. A full receive queue
   (``EAGAIN``) means a wake-up is already pending. Anything else (permissions, a
   directory that cannot be read) is ignored: the watcher's polling fallback delivers the
   change at most one poll interval later.

A unix socket path holds at most 107 bytes; longer paths (deep test directories) are
reached through ``/proc/self/fd/<directory fd>/<name>``, which Linux resolves like the
directory itself.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import select
import socket
import threading
from pathlib import Path

SUFFIX = ".sock"
_MAX_PATH = 107  # sizeof(sun_path) - 1 on Linux


class _Address:
    """A short enough name for a socket path: the path itself, or the path through an
    open descriptor of its directory. Close after use."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._fd: int | None = None
        self._base = str(directory)
        if len(os.fsencode(self._base)) + 1 + 32 > _MAX_PATH:
            self._fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            self._base = f"/proc/self/fd/{self._fd}"

    def of(self, name: str) -> str:
        return f"{self._base}/{name}"

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Bell:
    """One watcher's wake-up socket, registered in ``directory`` until ``close``."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{os.getpid()}-{secrets.token_hex(6)}{SUFFIX}"
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        addr = _Address(directory)
        try:
            self._sock.bind(addr.of(self.path.name))
        except BaseException:
            self._sock.close()
            raise
        finally:
            addr.close()
        self._sock.setblocking(False)
        # poll, not select: an agent with many pods holds more than FD_SETSIZE (1024)
        # descriptors, and select() refuses any numbered above it.
        self._poller = select.poll()
        self._poller.register(self._sock, select.POLLIN)

    def fileno(self) -> int:
        return self._sock.fileno()

    def drain(self) -> None:
        """Forget the rings received so far (the caller is about to look)."""
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while True:
                self._sock.recv(64)

    def wait(self, timeout: float) -> bool:
        """Block until rung or ``timeout`` seconds pass; True when rung."""
        return bool(self._poller.poll(max(timeout, 0.0) * 1000))

    def ring(self) -> None:
        """Wake this bell's own watcher (the store closing under it)."""
        with contextlib.suppress(OSError):
            _send_to(self.path)

    def close(self) -> None:
        # Unlink first: a writer that still finds the file gets ECONNREFUSED and would
        # remove it anyway, but an orderly watcher leaves nothing behind.
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._sock.close()


def _send_to(path: Path) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    addr = _Address(path.parent)
    try:
        sock.setblocking(False)
        sock.sendto(b"!", addr.of(path.name))
    finally:
        addr.close()
        sock.close()


class Ringer:
    """What a writer keeps: one sending socket, reused for every ring."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None

    def ring(self) -> int:
        """Send one wake-up to every registered watcher; return how many were rung.
        Never raises: see the module docstring (4.)."""
        try:
            names = [e.name for e in os.scandir(self.directory) if e.name.endswith(SUFFIX)]
        except OSError:
            return 0  # no watcher registered yet (or unreadable): polling covers it
        if not names:
            return 0
        rung = 0
        with self._lock:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sock.setblocking(False)
            try:
                addr = _Address(self.directory)
            except OSError:
                return 0
            try:
                for name in names:
                    rung += self._ring_one(addr, name)
            finally:
                addr.close()
        return rung

    def _ring_one(self, addr: _Address, name: str) -> int:
        assert self._sock is not None
        try:
            self._sock.sendto(b"!", addr.of(name))
            return 1
        except ConnectionRefusedError:
            # Nobody is bound there: a watcher that died without cleaning up.
            with contextlib.suppress(OSError):
                (self.directory / name).unlink()
        except (BlockingIOError, InterruptedError):
            return 1  # its queue is full: a wake-up is already pending
        except OSError:
            pass  # gone meanwhile, not ours to write to, ...: the poll fallback covers it
        return 0

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
