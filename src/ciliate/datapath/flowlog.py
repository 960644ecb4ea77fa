"""The on-disk flow log: JSON lines that the agent writes and ``ciliate observe`` reads.

Role: carry flows from the process that produces them (the kernel agent reading the
BPF ring buffer) to other processes (``ciliate observe [--follow]``). Each node writes
its own file ``<dir>/<node>.jsonl``; one line is one ``hubble observe -o json`` object
(``observe.jsonpb.to_json``), so ``jq`` and hubble tooling read it too.

Bounded size: when a file would grow past ``max_bytes`` it is renamed to ``.1`` (older
backups shift to ``.2`` … up to ``backups``) and a new file is started — the on-disk
counterpart of the in-memory ``observe.ring.FlowRing``.

Crash safety: a batch is written with one ``write(2)`` on an ``O_APPEND`` descriptor,
so readers see whole lines; a line torn by ``kill -9`` is finished with a newline when
the writer reopens and readers skip lines that do not parse.

Followers keep the descriptor of the file they read: after a rotation they drain the
renamed file, read any backups newer than it (several rotations between two polls),
then continue with the new file from its start, so no flow still on disk is skipped.

Lives in ``datapath`` (not ``observe``) because it does file I/O; imports only the
standard library and ``ciliate.observe``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

from ciliate.observe.flow import Flow
from ciliate.observe.flowline import encode_flow
from ciliate.observe.jsonpb import from_json

FLOWS_SUBDIR = "flows"
"""Where a state directory keeps its node logs (``<state>/flows/<node>.jsonl``)."""

DEFAULT_MAX_BYTES = 16 * 1024 * 1024
DEFAULT_BACKUPS = 1
SUFFIX = ".jsonl"


def encode_line(flow: Flow) -> bytes:
    """One line: ``json.dumps(to_json(flow), separators=(",", ":"), ensure_ascii=False)``
    and a newline, encoded from cached fragments (``observe.flowline``)."""
    return (encode_flow(flow) + "\n").encode()


def decode_line(line: bytes) -> Flow | None:
    """The flow of one line, or None for a torn or foreign line."""
    try:
        obj = json.loads(line)
        return from_json(obj) if isinstance(obj, dict) else None
    except (ValueError, KeyError, TypeError):
        return None


def node_log_path(directory: str | os.PathLike[str], node: str) -> Path:
    """``<dir>/<node>.jsonl``; characters outside [A-Za-z0-9._-] become ``_``."""
    return Path(directory) / (re.sub(r"[^A-Za-z0-9._-]", "_", node) + SUFFIX)


class FlowLogWriter:
    """Appends flows to one file, rotating it past ``max_bytes``. One writer per file."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        backups: int = DEFAULT_BACKUPS,
    ) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = max(backups, 0)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = self._open()

    def _open(self) -> int:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        size = os.fstat(fd).st_size
        if size:
            # A previous writer may have died mid-line: end that line so ours parse.
            with open(self.path, "rb") as f:
                f.seek(size - 1)
                if f.read(1) != b"\n":
                    os.write(fd, b"\n")
        return fd

    def _size(self) -> int:
        return os.fstat(self._fd).st_size

    def write(self, flows: Iterable[Flow]) -> None:
        self.write_lines(map(encode_flow, flows))

    def write_lines(self, lines: Iterable[str]) -> None:
        """Append encoded flows (``encode_flow``'s text, no newline) with one write(2)."""
        text = "\n".join(lines)
        if not text:
            return
        data = (text + "\n").encode()
        if self._size() and self._size() + len(data) > self.max_bytes:
            self._rotate()
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]

    def append(self, flow: Flow) -> None:
        self.write((flow,))

    def _rotate(self) -> None:
        os.close(self._fd)
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
        else:
            for i in range(self.backups - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{i}")
                if older.exists():
                    os.replace(older, self.path.with_name(f"{self.path.name}.{i + 1}"))
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._fd = self._open()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> FlowLogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _parse_lines(data: bytes) -> list[Flow]:
    out: list[Flow] = []
    for line in data.split(b"\n"):
        if line.strip():
            f = decode_line(line)
            if f is not None:
                out.append(f)
    return out


def _backups(p: Path) -> list[Path]:
    """``p.N`` rotated files, oldest (highest N) first."""
    return sorted(
        (q for q in p.parent.glob(p.name + ".*") if q.name[len(p.name) + 1 :].isdigit()),
        key=lambda q: -int(q.name[len(p.name) + 1 :]),
    )


def read_log(path: str | os.PathLike[str]) -> list[Flow]:
    """Every flow of one log, backups first (oldest to newest)."""
    p = Path(path)
    flows: list[Flow] = []
    for q in [*_backups(p), p]:
        try:
            flows += _parse_lines(q.read_bytes())
        except FileNotFoundError:
            continue
    return flows


class FlowLogFollower:
    """Reads the flows appended to one log file since the last ``poll``."""

    def __init__(self, path: str | os.PathLike[str], *, from_start: bool = False) -> None:
        self.path = Path(path)
        self._fd = -1
        self._ino = -1
        self._buf = b""
        self._from_start = from_start
        self._try_open(at_end=not from_start)

    def _try_open(self, *, at_end: bool) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return
        self._fd = fd
        self._ino = os.fstat(fd).st_ino
        self._buf = b""
        if at_end:
            os.lseek(fd, 0, os.SEEK_END)

    def _drain(self) -> bytes:
        chunks = []
        while True:
            chunk = os.read(self._fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def poll(self) -> list[Flow]:
        if self._fd < 0:
            # The file appeared after we started: everything in it is new.
            self._try_open(at_end=False)
            if self._fd < 0:
                return []
        data = self._buf + self._drain()
        try:
            current = os.stat(self.path).st_ino
        except FileNotFoundError:
            current = self._ino
        if current != self._ino:
            # Rotated: the writer renamed the old file before opening the new one, so a
            # last drain of our descriptor gets the rest of it; then start the new one.
            data += self._drain()
            os.close(self._fd)
            self._fd = -1
            flows = _parse_lines(data) + self._missed_backups()
            self._try_open(at_end=False)
            return flows + (self.poll() if self._fd >= 0 else [])
        complete, _, self._buf = data.rpartition(b"\n")
        return _parse_lines(complete)

    def _missed_backups(self) -> list[Flow]:
        """Backups newer than the file we were reading (several rotations between two
        polls): read them whole. Ours is found by inode; if it was already deleted,
        every backup is newer than it."""
        backups = _backups(self.path)  # oldest first
        inodes = []
        for q in backups:
            try:
                inodes.append(q.stat().st_ino)
            except FileNotFoundError:
                inodes.append(-1)
        newer = backups[inodes.index(self._ino) + 1 :] if self._ino in inodes else backups
        flows: list[Flow] = []
        for q in newer:
            try:
                flows += _parse_lines(q.read_bytes())
            except FileNotFoundError:
                continue
        return flows

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class FlowLogDir:
    """All node logs of one cluster: ``writer(node)``, ``read_all()``, ``poll()``."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)
        self._followers: dict[Path, FlowLogFollower] = {}
        self._started = False

    def writer(self, node: str, **kw: int) -> FlowLogWriter:
        return FlowLogWriter(node_log_path(self.dir, node), **kw)

    def _paths(self) -> list[Path]:
        return sorted(self.dir.glob("*" + SUFFIX)) if self.dir.is_dir() else []

    def read_all(self) -> list[Flow]:
        """Every flow held on disk, all nodes merged by time."""
        flows = [f for p in self._paths() for f in read_log(p)]
        return sorted(flows, key=lambda f: f.time_ns)

    def read_and_follow(self) -> list[Flow]:
        """Every flow on disk (merged by time), and start following exactly after them:
        the next ``poll`` returns what is written from now on, with nothing lost or
        repeated in between (``observe --follow`` prints history, then live flows)."""
        self._started = True
        out: list[Flow] = []
        for p in self._paths():
            for q in _backups(p):
                try:
                    out += _parse_lines(q.read_bytes())
                except FileNotFoundError:
                    continue
            fol = self._followers.get(p)
            if fol is None:
                fol = self._followers[p] = FlowLogFollower(p, from_start=True)
            out += fol.poll()
        return sorted(out, key=lambda f: f.time_ns)

    def poll(self) -> list[Flow]:
        """Flows written since the previous poll (the first poll starts at the end)."""
        first = not self._started
        self._started = True
        out: list[Flow] = []
        for p in self._paths():
            fol = self._followers.get(p)
            if fol is None:
                # Files present at the first poll are followed from their end; files of
                # nodes that appear later are read from their start.
                fol = self._followers[p] = FlowLogFollower(p, from_start=not first)
            out += fol.poll()
        return sorted(out, key=lambda f: f.time_ns)

    def close(self) -> None:
        for fol in self._followers.values():
            fol.close()
        self._followers.clear()


def read_flows(state_dir: str | os.PathLike[str]) -> list[Flow]:
    """All flows of a state directory (``<state>/flows``), or of a flows directory
    given directly; merged by time, oldest first."""
    d = Path(state_dir)
    if (d / FLOWS_SUBDIR).is_dir():
        d = d / FLOWS_SUBDIR
    return FlowLogDir(d).read_all()
