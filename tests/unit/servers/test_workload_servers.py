"""The built-in echo server's body and the static pages, without sockets."""

from __future__ import annotations

from ciliate.servers.workload import echo_body, static_page


def test_echo_body_matches_the_gateway_example() -> None:
    body = echo_body(
        "GET",
        "/get",
        "HTTP/1.1",
        [("Host", "testgw.dbi-services.com"), ("User-Agent", "curl/8.0"), ("Accept", "*/*")],
        {"POD_NAME": "testgw-backend-abc-1", "NAMESPACE": "default"},
    )
    assert body == {
        "path": "/get",
        "host": "testgw.dbi-services.com",
        "method": "GET",
        "proto": "HTTP/1.1",
        "headers": {"User-Agent": ["curl/8.0"], "Accept": ["*/*"]},
        "namespace": "default",
        "ingress": "",
        "service": "",
        "pod": "testgw-backend-abc-1",
    }


def test_repeated_headers_are_lists_in_order() -> None:
    body = echo_body("GET", "/", "HTTP/1.1", [("x-a", "1"), ("X-A", "2")], {})
    assert body["headers"] == {"X-A": ["1", "2"]}


def test_static_pages() -> None:
    assert "Welcome to nginx!" in static_page("nginx", "h")[1]
    assert (
        static_page("hello-app", "pod-1")[1] == "Hello, world!\nVersion: 1.0.0\nHostname: pod-1\n"
    )
