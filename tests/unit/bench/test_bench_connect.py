"""The connect-latency pair of bench/tools (C) and its parser in bench/netlab.py: the JSON
contract, interleaving over targets and addresses, failures counted and never sampled.
Runs the compiled tools on loopback (no root, no timing assertions)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repo root holds bench/

from bench import netlab as nl
from bench import tools


def test_parse_connect_loop() -> None:
    doc = {"mode": "echo", "clock": "CLOCK_MONOTONIC", "rounds": 2, "targets": [
        {"label": "vip", "addr": "10.96.0.10:80", "errors": 1, "samples_us": [41.5, 40.25]},
        {"label": "direct", "addr": "10.244.1.20,10.244.1.21:7001", "errors": 0,
         "samples_us": [39.0, 39.5]}]}  # fmt: skip
    run = nl.parse_connect_loop(json.dumps(doc))
    assert run.mode == "echo"
    assert run.get("vip") == [41.5, 40.25] and run.errors == {"vip": 1, "direct": 0}
    assert run.get("missing") == []
    assert nl.parse_connect_loop("") == nl.NO_CONNECT_RUN
    assert nl.parse_connect_loop('{"mode": "echo"}') == nl.NO_CONNECT_RUN


def test_connect_target_argument() -> None:
    assert nl.connect_target_arg("direct", ["10.0.0.1", "10.0.0.2"], 7001) == (
        "direct=10.0.0.1,10.0.0.2:7001"
    )
    with pytest.raises(ValueError):
        nl.connect_target_arg('a"b', ["10.0.0.1"], 1)
    with pytest.raises(ValueError):
        nl.connect_target_arg("a", [], 1)


def test_echo_server_argv_keeps_the_single_port_form() -> None:
    argv = nl.echo_server_argv(7000)
    assert argv[0] == sys.executable and argv[-1] == "7000"
    assert nl.echo_server_argv(7000, 7001, tool=Path("/x/echo_server")) == [
        "/x/echo_server", "7000", "7001"]  # fmt: skip


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if tools.compiler() is None:
        pytest.skip("no C compiler")
    dest = tmp_path_factory.mktemp("tools")
    return tools.build("connect_loop", dest), tools.build("echo_server", dest)


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.fixture()
def server(built: tuple[Path, Path]) -> Iterator[list[int]]:
    ports = _free_ports(2)
    proc = subprocess.Popen([str(built[1]), *map(str, ports)], stderr=subprocess.PIPE)
    try:
        end = time.monotonic() + 5
        while time.monotonic() < end:  # bounded wait until both ports listen
            try:
                for p in ports:
                    socket.create_connection(("127.0.0.1", p), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.02)
        yield ports
    finally:
        proc.kill()
        proc.wait(timeout=5)


def test_connect_loop_samples_every_target_and_counts_failures(
    built: tuple[Path, Path], server: list[int]
) -> None:
    dead = _free_ports(1)[0]  # nothing listens there: refused, an error, never a sample
    argv = [str(built[0]), "-n", "20", "-w", "2", "-t", "10",
            f"a=127.0.0.1:{server[0]}", f"b=127.0.0.1,127.0.0.1:{server[1]}",
            f"dead=127.0.0.1:{dead}"]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
    run = nl.parse_connect_loop(proc.stdout)
    assert run.mode == "echo"
    assert len(run.get("a")) == len(run.get("b")) == 20
    assert all(x > 0 for x in run.get("a") + run.get("b"))
    assert run.errors == {"a": 0, "b": 0, "dead": 20} and run.get("dead") == []
    connect_only = subprocess.run([*argv[:1], "-m", "connect", "-n", "5", f"a=127.0.0.1:{server[0]}"],
                                  capture_output=True, text=True, timeout=30, check=True)  # fmt: skip
    assert nl.parse_connect_loop(connect_only.stdout).mode == "connect"


def test_connect_loop_refuses_bad_arguments(built: tuple[Path, Path]) -> None:
    for bad in (["x"], ["a=1.2.3:80"], ['a"=127.0.0.1:80'], ["-m", "udp", "a=127.0.0.1:80"], []):
        proc = subprocess.run([str(built[0]), *bad], capture_output=True, text=True, timeout=10)
        assert proc.returncode == 2, bad
    with pytest.raises(tools.ToolError):
        tools.build("nope", Path("/nonexistent"))
