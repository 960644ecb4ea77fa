"""``ciliate demo``: the networking101 walkthrough, end to end, in a temporary state.

It drives the same commands a user types (through ``main``), so the demo is also a
smoke test of the CLI: create the cluster of the blog posts, apply its workloads,
show nodes and pods, trace a same-node and a cross-node packet, look up the two map
entries of the example, and, when root and the kernel allow it, bring the cluster up
for real, ping across nodes, show observed flows and tear down.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

from ciliate.cli.context import Context
from ciliate.errors import ExitCode

EPILOG = """\
Examples:
  ciliate demo              # model datapath, then the kernel datapath when possible
  ciliate demo --model-only # never touch the kernel
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="run the networking101 walkthrough in a temporary cluster",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model-only", action="store_true", help="skip the kernel datapath part")
    p.set_defaults(func=run)


def _hex(ip: str) -> list[str]:
    return [f"{int(o):02x}" for o in ip.split(".")]


def run(args: argparse.Namespace, ctx: Context) -> int:
    from ciliate.cli.main import main

    examples = resources.files("ciliate") / "examples"
    with tempfile.TemporaryDirectory(prefix="ciliate-demo-") as tmp:
        state = Path(tmp) / "state"
        cluster_file = Path(tmp) / "cluster.yaml"
        workloads = Path(tmp) / "networking101.yaml"
        cluster_file.write_text((examples / "cluster.yaml").read_text())
        workloads.write_text((examples / "networking101.yaml").read_text())

        def step(title: str, argv: list[str], show: bool = True) -> tuple[int, str]:
            out = io.StringIO()
            sub_ctx = Context(state_dir=state, stdout=out, stderr=ctx.stderr)
            if show:
                ctx.out(f"\n$ ciliate {' '.join(argv)}    # {title}")
            rc = main(argv, sub_ctx)
            text = out.getvalue()
            if show:
                ctx.stdout.write(text)
            if rc != 0:
                ctx.err(f"demo step failed (exit {rc}): ciliate {' '.join(argv)}")
            return rc, text

        for title, argv in (
            ("the blog's kind cluster", ["cluster", "create", "-f", str(cluster_file)]),
            ("two deployments of two replicas", ["apply", "-f", str(workloads)]),
            ("nodes", ["get", "nodes", "-o", "wide"]),
            ("pods spread over the workers", ["get", "pods", "-n", "networking101", "-o", "wide"]),
            ("Cilium's view of the nodes", ["get", "ciliumnodes"]),
            ("endpoints and identities", ["get", "ciliumendpoints", "-n", "networking101"]),
        ):
            rc, _ = step(title, argv)
            if rc != 0:
                return rc

        rc, text = step("", ["get", "pods", "-n", "networking101", "-o", "json"], show=False)
        if rc != 0:
            return rc
        pods = json.loads(text)["items"]
        by_node: dict[str, dict[str, dict[str, Any]]] = {}
        for p in pods:
            app = p["metadata"]["labels"].get("app", "")
            by_node.setdefault(p["spec"]["nodeName"], {})[app] = p
        worker = "mycluster-worker"
        worker2 = "mycluster-worker2"
        src = by_node[worker]["busybox"]
        same = by_node[worker]["netshoot"]
        cross = by_node[worker2]["netshoot"]

        def key(p: dict[str, Any]) -> str:
            return f"{p['metadata']['namespace']}/{p['metadata']['name']}"

        lxc_key = [*_hex(same["status"]["podIP"]), *(["00"] * 12), "01", "00", "00", "00"]
        ipc_key = ["40", "00", "00", "00", "00", "00", "00", "01", *_hex(cross["status"]["podIP"])]
        ipc_key += ["00"] * 12
        for title, argv in (
            (
                "same node: cil_from_container finds the pod in cilium_lxc",
                ["trace", key(src), key(same), "--protocol", "icmp"],
            ),
            (
                "cross node: cilium_ipcache gives the tunnel endpoint, VXLAN to worker2",
                ["trace", key(src), key(cross), "--protocol", "icmp"],
            ),
            (
                "the endpoint entry of the same-node netshoot (id little-endian at bytes 6-7)",
                ["bpf", "map", "lookup", worker, "cilium_lxc", "key", "hex", *lxc_key],
            ),
            (
                "identity and tunnel endpoint of the cross-node netshoot",
                ["bpf", "map", "lookup", worker, "cilium_ipcache", "key", "hex", *ipc_key],
            ),
        ):
            rc, _ = step(title, argv)
            if rc != 0:
                return rc

        if not args.model_only:
            try:
                from ciliate.datapath.linux import runtime
            except ImportError:
                ctx.out("\n(kernel datapath not built into this version)")
                return ExitCode.OK
            demo_ctx = Context(state_dir=state, stdout=ctx.stdout, stderr=ctx.stderr)
            try:
                runtime.demo_kernel(demo_ctx, ctx.stdout)
            finally:
                demo_ctx.close()
    return ExitCode.OK
