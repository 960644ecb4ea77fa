"""Built-in workload servers: what a pod's container image would have served.

``python -m ciliate.servers.workload echo --port 3000`` -- the ingress-conformance
echoserver: every request answered 200 with a JSON body describing it (path, host,
method, proto, headers as lists, and namespace/ingress/service/pod from the
NAMESPACE, INGRESS_NAME, SERVICE_NAME and POD_NAME environment variables).
``... http --flavor nginx --port 80`` -- a static page like nginx/httpd/hello-app.
``... listen --tcp 5432 --udp 53`` -- TCP and UDP echo listeners on container ports.

Runs inside the pod's network namespace (started by datapath.linux.workloads); pure
request -> response functions (``echo_body``, ``static_page``) are tested without I/O.
Imports only the standard library.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import socketserver
import threading
from collections.abc import Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PAGES = {
    "nginx": (
        "text/html",
        "<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx!</title>\n</head>\n<body>\n"
        "<h1>Welcome to nginx!</h1>\n</body>\n</html>\n",
    ),
    "httpd": ("text/html", "<html><body><h1>It works!</h1></body></html>\n"),
    "hello-app": ("text/plain", "Hello, world!\nVersion: 1.0.0\nHostname: {hostname}\n"),
    "http-echo": ("text/plain", "hello-world\n"),
    "whoami": ("text/plain", "Hostname: {hostname}\n"),
}


def echo_body(
    method: str,
    path: str,
    proto: str,
    headers: Sequence[tuple[str, str]],
    env: Mapping[str, str],
) -> dict[str, object]:
    """The echoserver's JSON document. Host is reported on its own, not among the
    headers (Go's net/http moves it out of the header map)."""
    host = ""
    grouped: dict[str, list[str]] = {}
    for k, v in headers:
        name = "-".join(p.capitalize() for p in k.split("-"))
        if name == "Host":
            host = v
            continue
        grouped.setdefault(name, []).append(v)
    return {
        "path": path,
        "host": host,
        "method": method,
        "proto": proto,
        "headers": grouped,
        "namespace": env.get("NAMESPACE", ""),
        "ingress": env.get("INGRESS_NAME", ""),
        "service": env.get("SERVICE_NAME", ""),
        "pod": env.get("POD_NAME", ""),
    }


def static_page(flavor: str, hostname: str) -> tuple[str, str]:
    ctype, text = PAGES.get(flavor, PAGES["hello-app"] if "hello" in flavor else PAGES["nginx"])
    return ctype, text.format(hostname=hostname)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    flavor = "echo"
    server_version = "ciliate"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length", "0") or 0)
        if length:
            self.rfile.read(length)
        if self.flavor == "echo":
            body = json.dumps(
                echo_body(
                    self.command,
                    self.path,
                    self.request_version,
                    list(self.headers.items()),
                    os.environ,
                )
            ).encode()
            ctype = "application/json"
        else:
            ctype, text = static_page(self.flavor, os.environ.get("HOSTNAME", ""))
            body = text.encode()
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: pod logs stay readable


class _TCPEcho(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        while data := sock.recv(65536):
            sock.sendall(data)


class _UDPEcho(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data, sock = self.request
        sock.sendto(data, self.client_address)


class _ThreadingTCP(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def serve(servers: Sequence[socketserver.BaseServer]) -> None:
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ciliate.servers.workload")
    sub = p.add_subparsers(dest="mode", required=True)
    echo = sub.add_parser("echo")
    echo.add_argument("--port", type=int, action="append", default=[])
    http = sub.add_parser("http")
    http.add_argument("--flavor", default="nginx")
    http.add_argument("--port", type=int, action="append", default=[])
    listen = sub.add_parser("listen")
    listen.add_argument("--tcp", type=int, action="append", default=[])
    listen.add_argument("--udp", type=int, action="append", default=[])
    args = p.parse_args(argv)
    servers: list[socketserver.BaseServer] = []
    if args.mode in ("echo", "http"):
        handler = type(
            "Handler", (_Handler,), {"flavor": "echo" if args.mode == "echo" else args.flavor}
        )
        ThreadingHTTPServer.allow_reuse_address = True
        for port in args.port or [3000 if args.mode == "echo" else 80]:
            servers.append(ThreadingHTTPServer(("0.0.0.0", port), handler))
    else:
        servers += [_ThreadingTCP(("0.0.0.0", port), _TCPEcho) for port in args.tcp]
        servers += [
            socketserver.ThreadingUDPServer(("0.0.0.0", port), _UDPEcho) for port in args.udp
        ]
    serve(servers)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
