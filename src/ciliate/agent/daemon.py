"""Daemon: the agent as a process -- pidfile, signals, start failure, the final cleanup.

Role: ``serve`` runs one ``Agent`` in this process: it writes the pidfile ``up`` waits
on, maps signals to the agent's two ways out (SIGTERM/SIGINT: stop and remove
everything; SIGUSR1, sent by ``up --restart``: exit leaving the datapath for the next
agent to adopt), decides what a failed start leaves behind (a fresh start rolls back, a
start that adopted an earlier agent's datapath leaves it forwarding: fail static), runs
the loop and removes the pidfile last. ``main`` is ``python -m ciliate.agent``: it parses
the arguments, sets up logging and, with ``--daemon``, detaches (a second fork).

Inputs: a state directory, its store (``<state>/store.db``), signals. Outputs: the
``<state>/kernel/`` files (pidfile, ``error``) and an exit status; the datapath itself is
the agent's (``reconciler``). Must not import cli.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from ciliate.agent.reconciler import Agent
from ciliate.datapath.linux.kernelfiles import KernelPaths
from ciliate.store.api import Store

log = logging.getLogger("ciliate.agent")  # the agent's one logger (its log lines' source)


def _open_store(state_dir: Path) -> Store:
    from ciliate.store.sqlite import SQLiteStore

    return SQLiteStore(state_dir / "store.db")


def serve(state_dir: Path, on_ready: Callable[[Agent], None] | None = None) -> int:
    """Run the agent in this process until SIGTERM/SIGINT; 0 on a clean stop."""
    kp = KernelPaths(state_dir)
    kp.dir.mkdir(parents=True, exist_ok=True)
    # atomically: `up` polls this file, and an empty one read between create and
    # write looked like an agent that had already exited
    tmp = kp.pidfile.with_suffix(".tmp")
    tmp.write_text(f"{os.getpid()}\n")
    tmp.replace(kp.pidfile)
    with contextlib.suppress(FileNotFoundError):
        kp.error.unlink()
    store = _open_store(state_dir)
    agent = Agent(state_dir, store)

    def on_signal(signum: int, frame: object) -> None:
        agent.stopping.set()

    def on_restart(signum: int, frame: object) -> None:
        agent.keep_datapath = True
        agent.stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGUSR1, on_restart)
    try:
        try:
            agent.start()
        except Exception as e:
            log.exception("start failed")
            if agent.adopted:
                # A datapath an earlier agent left keeps forwarding (fail static, as
                # Cilium's does while its agent crash-loops): tearing it down because
                # its successor failed would be the disruption a restart must avoid.
                agent.keep_datapath = True
                agent.stop()
                kp.error.write_text(
                    f"kernel datapath: start failed: {e}; the running datapath was left "
                    "in place (fix the cause and run `ciliate up` again to adopt it, or "
                    "`ciliate down` to remove it)\n"
                )
                return 1
            agent.keep_datapath = False  # a fresh start that failed rolls back
            agent.stop()
            kp.error.write_text(f"kernel datapath: start failed, rolled back: {e}\n")
            return 1
        if on_ready is not None:
            on_ready(agent)
        try:
            agent.run()
        except Exception as e:
            log.exception("agent failed")
            kp.error.write_text(f"agent failed: {e}\n")
        return 0
    finally:
        agent.stop()
        store.close()
        with contextlib.suppress(FileNotFoundError):
            kp.pidfile.unlink()
        log.info(
            "stopped; %s", "datapath left running" if agent.keep_datapath else "everything removed"
        )


def _daemonize() -> None:
    """Second fork: the first child (spawned by ``up``) exits at once, the grandchild is
    adopted by init and never reacquires a terminal (it is not a session leader)."""
    if os.fork() > 0:
        os._exit(0)
    os.chdir("/")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ciliate.agent", description="the ciliate node agents")
    p.add_argument("--state", type=Path, required=True)
    p.add_argument("--daemon", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if os.environ.get("CILIATE_DEBUG") else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    if args.daemon:
        _daemonize()
    return serve(args.state)
