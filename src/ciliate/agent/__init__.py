"""The agent: watches the store and keeps the kernel datapath equal to the DesiredState.

Role: the layer that wires the planes together at run time (``cli > agent > datapath``).
Its modules, each named for what it owns:

- ``reconciler``: ``Agent`` -- start (build or adopt), reconcile each watch batch, the
  loop, stop; its docstring is the theory of operation (restart, resumable start);
- ``places``: where each pod lives in a DesiredState and what its wiring is built from;
- ``report``: ``status.json`` and the timings of a round's log line;
- ``daemon``: the process (pidfile, signals, start failure, ``main``); ``__main__`` runs
  it as ``python -m ciliate.agent``.

Inputs: a state directory and its store. Outputs: the kernel datapath, the
``<state>/kernel/`` files, log lines on the ``ciliate.agent`` logger. The names below are
re-exported so ``from ciliate.agent import Agent, serve`` keeps working.
Must not import cli.
"""

from ciliate.agent.daemon import main, serve
from ciliate.agent.places import PodPlace, pod_places, wiring
from ciliate.agent.reconciler import SUPERVISE_INTERVAL, Agent, dns_ip

__all__ = [
    "SUPERVISE_INTERVAL",
    "Agent",
    "PodPlace",
    "dns_ip",
    "main",
    "pod_places",
    "serve",
    "wiring",
]
