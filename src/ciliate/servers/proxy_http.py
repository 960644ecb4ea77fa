"""HTTP/1.1 message framing for the L7 proxy: bytes in, events out, no I/O.

Theory of operation (RFC 9112 §6, "message body length"): a ``MessageReader`` is fed
the bytes of one direction of a connection and returns events, in order:

- ``Head``: the start line and the header fields of a message, with its raw bytes (the
  proxy relays heads verbatim, it never re-serializes them);
- ``bytes``: raw body bytes, exactly as received (chunked framing included);
- ``END``: the message is complete; the next bytes start the next message (keep-alive,
  pipelining).

Body length, in RFC 9112's order: a response to HEAD, a 1xx, 204 or 304 response has
none; ``Transfer-Encoding: chunked`` is framed by its chunks (sizes, data, trailers); else
``Content-Length``; else a request has no body and a response runs until the connection
closes (``close()`` then returns its END). A malformed message raises ``ProtocolError``
(the proxy answers 400 and closes, as Envoy does).

Imports only the standard library.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

MAX_HEAD = 64 * 1024


class ProtocolError(ValueError):
    """A message that is not HTTP/1.x."""


class _End:
    def __repr__(self) -> str:
        return "END"


END = _End()


@dataclass(frozen=True, slots=True)
class Head:
    """A request line (``method``, ``target``) or a status line (``status``)."""

    raw: bytes
    version: str
    headers: tuple[tuple[str, str], ...]
    method: str = ""
    target: str = ""
    status: int = 0

    def header(self, name: str) -> str | None:
        """The last value of a field (case-insensitive), or None."""
        low = name.lower()
        got = None
        for k, v in self.headers:
            if k.lower() == low:
                got = v
        return got

    @property
    def header_map(self) -> Mapping[str, str]:
        return {k: v for k, v in self.headers}

    @property
    def keep_alive(self) -> bool:
        """Whether the connection persists after this message (RFC 9112 §9.3)."""
        conn = (self.header("connection") or "").lower()
        if "close" in conn:
            return False
        if self.version == "HTTP/1.0":
            return "keep-alive" in conn
        return True

    @property
    def path(self) -> str:
        """The path of a request target (an absolute-form target loses its authority)."""
        t = self.target
        if "://" in t:
            rest = t.split("://", 1)[1]
            t = "/" + rest.split("/", 1)[1] if "/" in rest else "/"
        return t


class _State(enum.Enum):
    HEAD = "head"
    LENGTH = "length"
    CHUNK_SIZE = "chunk-size"
    CHUNK_DATA = "chunk-data"
    CHUNK_CRLF = "chunk-crlf"
    TRAILER = "trailer"
    UNTIL_CLOSE = "until-close"


def parse_head(raw: bytes, *, request: bool) -> Head:
    try:
        text = raw.decode("latin-1")
    except UnicodeDecodeError as e:  # pragma: no cover - latin-1 decodes everything
        raise ProtocolError(str(e)) from e
    lines = text.split("\r\n")
    start = lines[0].split(" ", 2)
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise ProtocolError(f"malformed header field {line[:40]!r}")
        headers.append((name, value.strip()))
    if request:
        if len(start) != 3 or not start[2].startswith("HTTP/1.") or not start[0].isalpha():
            raise ProtocolError(f"malformed request line {lines[0][:60]!r}")
        return Head(raw, start[2], tuple(headers), method=start[0], target=start[1])
    if len(start) < 2 or not start[0].startswith("HTTP/1.") or not start[1].isdigit():
        raise ProtocolError(f"malformed status line {lines[0][:60]!r}")
    return Head(raw, start[0], tuple(headers), status=int(start[1]))


class MessageReader:
    """The framing of one direction: ``request=True`` for what a client sends. For
    responses, ``expect(method)`` must be called for every request sent, in order (a
    response to HEAD has no body)."""

    def __init__(self, *, request: bool) -> None:
        self.request = request
        self._buf = bytearray()
        self._state = _State.HEAD
        self._left = 0
        self._methods: deque[str] = deque()

    def expect(self, method: str) -> None:
        self._methods.append(method)

    def feed(self, data: bytes) -> list[Head | bytes | _End]:
        self._buf += data
        out: list[Head | bytes | _End] = []
        while self._step(out):
            pass
        return out

    def close(self) -> list[Head | bytes | _End]:
        """The peer closed: a body delimited by the close ends here; anything else
        unfinished is an error."""
        if self._state is _State.UNTIL_CLOSE:
            self._state = _State.HEAD
            return [END]
        if self._state is _State.HEAD and not self._buf:
            return []
        raise ProtocolError(f"connection closed inside a message ({self._state.value})")

    def _step(self, out: list[Head | bytes | _End]) -> bool:
        buf = self._buf
        st = self._state
        if st is _State.HEAD:
            if not buf:
                return False
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    raise ProtocolError("message head too large")
                return False
            raw = bytes(buf[: end + 4])
            del buf[: end + 4]
            head = parse_head(raw[:-4], request=self.request)
            head = Head(raw, head.version, head.headers, head.method, head.target, head.status)
            out.append(head)
            self._begin_body(head, out)
            return True
        if st is _State.LENGTH or st is _State.CHUNK_DATA:
            if not buf:
                return False
            n = min(self._left, len(buf))
            out.append(bytes(buf[:n]))
            del buf[:n]
            self._left -= n
            if self._left == 0:
                if st is _State.LENGTH:
                    self._state = _State.HEAD
                    out.append(END)
                else:
                    self._state = _State.CHUNK_CRLF
            return True
        if st is _State.UNTIL_CLOSE:
            if not buf:
                return False
            out.append(bytes(buf))
            buf.clear()
            return False
        # chunk size line, the CRLF after a chunk, trailer lines: line-framed
        nl = buf.find(b"\r\n")
        if nl < 0:
            if len(buf) > MAX_HEAD:
                raise ProtocolError("chunk line too long")
            return False
        line = bytes(buf[: nl + 2])
        del buf[: nl + 2]
        out.append(line)
        if st is _State.CHUNK_SIZE:
            try:
                size = int(line[:-2].split(b";", 1)[0].strip(), 16)
            except ValueError as e:
                raise ProtocolError(f"bad chunk size {line[:20]!r}") from e
            if size == 0:
                self._state = _State.TRAILER
            else:
                self._left = size
                self._state = _State.CHUNK_DATA
        elif st is _State.CHUNK_CRLF:
            if line != b"\r\n":
                raise ProtocolError("chunk data not followed by CRLF")
            self._state = _State.CHUNK_SIZE
        elif line == b"\r\n":  # the empty line ending the trailers
            self._state = _State.HEAD
            out.append(END)
        return True

    def _begin_body(self, head: Head, out: list[Head | bytes | _End]) -> None:
        method = "" if self.request else (self._methods.popleft() if self._methods else "GET")
        bodiless = method == "HEAD" or head.status < 200 or head.status in (204, 304)
        if not self.request and bodiless:
            if 100 <= head.status < 200:
                self._methods.appendleft(method)  # the final response is still due
            out.append(END)
            return
        te = (head.header("transfer-encoding") or "").lower()
        if "chunked" in te:
            self._state = _State.CHUNK_SIZE
            return
        cl = head.header("content-length")
        if cl is not None:
            if not cl.strip().isdigit():
                raise ProtocolError(f"bad Content-Length {cl[:20]!r}")
            self._left = int(cl)
            if self._left:
                self._state = _State.LENGTH
                return
            out.append(END)
            return
        if self.request:
            out.append(END)
        else:
            self._state = _State.UNTIL_CLOSE


def simple_response(status: int, reason: str, body: bytes, *, close: bool) -> bytes:
    """A response the proxy answers itself (Envoy's local replies: text/plain)."""
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        f"content-length: {len(body)}\r\n"
        "content-type: text/plain\r\n"
        "server: envoy\r\n" + ("connection: close\r\n" if close else "") + "\r\n"
    )
    return head.encode() + body


ACCESS_DENIED = b"Access denied\r\n"
