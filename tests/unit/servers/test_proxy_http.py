"""HTTP/1.1 framing of the L7 proxy (servers.proxy_http): bytes in, events out."""

from __future__ import annotations

import pytest

from ciliate.servers.proxy_http import (
    END,
    Head,
    MessageReader,
    ProtocolError,
    simple_response,
)


def kinds(events: list[object]) -> list[str]:
    out = []
    for e in events:
        if isinstance(e, Head):
            out.append(f"head {e.method or e.status} {e.target}".strip())
        elif e is END:
            out.append("end")
        else:
            assert isinstance(e, bytes)
            out.append(f"data {e!r}")
    return out


def test_pipelined_requests_without_bodies() -> None:
    r = MessageReader(request=True)
    ev = r.feed(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
    assert kinds(ev) == ["head GET /a", "end", "head GET /b", "end"]
    assert isinstance(ev[0], Head) and ev[0].raw.startswith(b"GET /a") and ev[0].keep_alive


def test_a_head_split_across_reads_and_a_content_length_body() -> None:
    r = MessageReader(request=True)
    assert r.feed(b"POST /p HTTP/1.1\r\nContent-Le") == []
    ev = r.feed(b"ngth: 5\r\n\r\nab")
    assert kinds(ev) == ["head POST /p", "data b'ab'"]
    assert kinds(r.feed(b"cdeGET / HTTP/1.0\r\n\r\n")) == [
        "data b'cde'", "end", "head GET /", "end",
    ]  # fmt: skip


def test_chunked_bodies_are_relayed_verbatim_and_framed() -> None:
    r = MessageReader(request=True)
    body = b"4\r\nWiki\r\n0\r\nX-Trailer: 1\r\n\r\n"
    ev = r.feed(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    assert kinds(ev)[0] == "head POST /" and ev[-1] is END
    assert b"".join(e for e in ev if isinstance(e, bytes)) == body


def test_response_lengths_follow_rfc_9112() -> None:
    r = MessageReader(request=False)
    for m in ("HEAD", "GET", "GET", "GET"):
        r.expect(m)
    ev = r.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")  # HEAD: no body
    assert kinds(ev) == ["head 200", "end"]
    ev = r.feed(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n")
    assert kinds(ev) == ["head 100", "end", "head 204", "end"]
    ev = r.feed(b"HTTP/1.0 200 OK\r\n\r\nuntil close")  # no length: until the close
    assert kinds(ev) == ["head 200", "data b'until close'"]
    assert r.close() == [END]
    assert isinstance(ev[0], Head) and not ev[0].keep_alive


def test_malformed_messages_raise() -> None:
    with pytest.raises(ProtocolError):
        MessageReader(request=True).feed(b"ciliate-probe\r\n\r\n")
    with pytest.raises(ProtocolError):
        MessageReader(request=True).feed(b"GET / HTTP/1.1\r\nno colon here\r\n\r\n")
    r = MessageReader(request=True)
    r.feed(b"POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\nab")
    with pytest.raises(ProtocolError):
        r.close()


def test_the_proxys_own_answer_is_envoys() -> None:
    raw = simple_response(403, "Forbidden", b"Access denied\r\n", close=False)
    r = MessageReader(request=False)
    r.expect("GET")
    ev = r.feed(raw)
    assert isinstance(ev[0], Head) and ev[0].status == 403 and ev[0].keep_alive
    assert ev[1:] == [b"Access denied\r\n", END]
