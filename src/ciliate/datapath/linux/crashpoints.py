"""Crash points: named steps where a test can make the agent die as if by kill -9.

Role: ``crash_point("node")`` does nothing unless the environment variable
``CILIATE_TEST_CRASH_AT`` names that step; then the process exits at once with
``os._exit`` -- no ``finally``, no cleanup, no pidfile removal, exactly what a SIGKILL
leaves behind. The resumability tests use it to stop ``up`` half-way through building the
topology and check that the next ``up`` completes from there.

Steps (in the order ``Agent.start`` passes them): ``fabric``, ``node`` (the first node
built, the others not), ``nodes``, ``pod-veth`` (the first pod's namespace and veth exist,
no address, no routes), ``pod`` (the first pod wired), ``pods``, ``maps``, ``workloads``
(everything but ``ready``). Inputs: the environment. Must not import anything of ciliate.
"""

from __future__ import annotations

import os
import sys

ENV = "CILIATE_TEST_CRASH_AT"
EXIT_CODE = 137  # what a shell reports for a SIGKILLed process
STEPS = ("fabric", "node", "nodes", "pod-veth", "pod", "pods", "maps", "workloads")


def crash_point(step: str) -> None:
    """Die here, uncleanly, when the test hook names ``step``."""
    if os.environ.get(ENV) == step:
        sys.stderr.write(f"{ENV}={step}: exiting uncleanly\n")
        sys.stderr.flush()
        os._exit(EXIT_CODE)
