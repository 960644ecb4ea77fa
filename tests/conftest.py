"""Suite-wide options and markers.

- ``--update-golden`` rewrites golden files instead of comparing (also CILIATE_UPDATE_GOLDEN=1).
- Hypothesis runs without its per-example deadline (a timing assertion in disguise).
- Tests marked ``privileged`` need root and kernel support: without them they are
  skipped with the reason printed in the summary (``-ra``), never silently passed.
"""

from __future__ import annotations

import os
import shutil

import pytest
from hypothesis import settings

# No timing assertions: hypothesis's per-example deadline is one, and the shared 2-vCPU
# machines here make it fail at random. Examples are bounded by count instead.
settings.register_profile("ciliate", deadline=None)
settings.load_profile("ciliate")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite golden files with the current output instead of comparing",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden")) or bool(
        os.environ.get("CILIATE_UPDATE_GOLDEN")
    )


def _privileged_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root (kernel datapath tests run as root in private network namespaces)"
    if not os.path.isdir("/sys/fs/bpf"):
        return "no bpffs at /sys/fs/bpf"
    if shutil.which("ip") is None:
        return "iproute2 is not installed"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _privileged_unavailable()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=f"privileged test skipped: {reason}")
    for item in items:
        if "privileged" in item.keywords:
            item.add_marker(skip)
