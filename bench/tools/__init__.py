"""Small C measurement tools of the benchmarks, compiled at run time.

Role: ``build(name, dest)`` compiles ``bench/tools/<name>.c`` (``connect_loop``: the
pinned TCP connect-latency client; ``echo_server``: its one-byte echo far end) with clang
(or ``cc``) into ``dest`` -- a lab's private temp directory -- and returns the binary's
path. Nothing binary is checked in, as for the eBPF objects.

Why C: a Python connect loop costs ~10 µs of interpreter time per sample on the vCPU the
client and server share, with several µs of jitter (allocation, GC), which is as large as
the service-lookup overhead the services suite has to resolve.

Inputs: a C compiler on PATH. Outputs: a path, or ``ToolError`` naming the compiler's
complaint. Must not import ciliate (bench/ sits outside the package's layers).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOOLS = ("connect_loop", "echo_server")
CFLAGS = ("-O2", "-Wall", "-Wextra", "-Werror")


class ToolError(RuntimeError):
    """A tool could not be built (no compiler, or the source does not compile)."""


def compiler() -> str | None:
    """clang as the Makefile installs it, else the system's cc."""
    return shutil.which("clang") or shutil.which("cc")


def build(name: str, dest: Path) -> Path:
    """Compiles ``<name>.c`` into ``dest/<name>`` (idempotent: an existing binary newer
    than its source is reused)."""
    if name not in TOOLS:
        raise ToolError(f"bench/tools: unknown tool {name!r} (one of {', '.join(TOOLS)})")
    src = HERE / f"{name}.c"
    out = dest / name
    if out.exists() and out.stat().st_mtime >= src.stat().st_mtime:
        return out
    cc = compiler()
    if cc is None:
        raise ToolError(f"bench/tools/{name}.c: no C compiler (clang or cc) on PATH")
    dest.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([cc, *CFLAGS, "-o", str(out), str(src)], capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip
    if proc.returncode != 0:
        raise ToolError(f"bench/tools/{name}.c: {cc} failed: {proc.stderr.strip()[-400:]}")
    # 0755: pod workloads run the server from the lab's directory
    out.chmod(0o755)
    return out
