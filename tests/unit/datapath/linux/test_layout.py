"""The C structs in bpf/lib/*.h have exactly the layouts of the Python codecs.

bpf/layout_check.c is compiled for the host from the same headers the programs include and
prints every shared struct's size and field offsets as JSON; this test compares them with
``ciliate.codec.STRUCT_LAYOUTS`` (Cilium's layouts) and with the layouts of the structs
only ciliate has (``datapath.linux.maps.LOCAL_STRUCT_LAYOUTS``). Padding fields are
compared by size only (C need not name them).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ciliate import codec
from ciliate.datapath.linux import maps

BPF_DIR = Path(__file__).resolve().parents[4] / "bpf"

# The shared policy map's key is Cilium's policy_key with a u32 endpoint ID after the
# prefix length (docs/decisions/0002-bpf-maps.md): codec offsets shift by 4 past byte 4.
SHIFTED = {"policy_key": 4}


@pytest.fixture(scope="module")
def c_layouts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.skip("no C compiler (cc/gcc/clang) to build bpf/layout_check.c")
    out = tmp_path_factory.mktemp("layout") / "layout_check"
    arch = subprocess.run(["uname", "-m"], capture_output=True, text=True).stdout.strip()
    cmd = [cc, "-O0", "-I", str(BPF_DIR), "-I", f"/usr/include/{arch}-linux-gnu", "-o", str(out),
           str(BPF_DIR / "layout_check.c")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 and "bpf/bpf_helpers.h" in proc.stderr:
        pytest.skip("libbpf headers missing (libbpf-dev): cannot compile the layout checker")
    assert proc.returncode == 0, proc.stderr
    run = subprocess.run([str(out)], capture_output=True, text=True, check=True)
    data: dict[str, Any] = json.loads(run.stdout)
    return data


@pytest.mark.parametrize("struct_name", sorted(codec.STRUCT_LAYOUTS))
def test_c_struct_matches_codec(c_layouts: dict[str, Any], struct_name: str) -> None:
    assert struct_name in c_layouts, f"bpf/layout_check.c does not print {struct_name}"
    c = c_layouts[struct_name]
    shift = SHIFTED.get(struct_name, 0)
    assert c["size"] == codec.STRUCT_SIZES[struct_name] + shift
    for name, off, size in codec.STRUCT_LAYOUTS[struct_name]:
        if name.startswith("pad"):
            continue
        c_off = off + shift if (shift and off >= 4) else off
        assert name in c["fields"], f"{struct_name}.{name} missing in C"
        assert c["fields"][name] == [c_off, size], f"{struct_name}.{name}"


@pytest.mark.parametrize("struct_name", sorted(maps.LOCAL_STRUCT_LAYOUTS))
def test_c_struct_matches_local_layout(c_layouts: dict[str, Any], struct_name: str) -> None:
    c = c_layouts[struct_name]
    assert c["size"] == maps.LOCAL_STRUCT_SIZES[struct_name]
    for name, off, size in maps.LOCAL_STRUCT_LAYOUTS[struct_name]:
        assert c["fields"][name] == [off, size], f"{struct_name}.{name}"


def test_codec_sizes_agree_with_their_layouts() -> None:
    for name, fields in codec.STRUCT_LAYOUTS.items():
        end = max(off + size for _, off, size in fields)
        assert end <= codec.STRUCT_SIZES[name], name


def test_notification_headers(c_layouts: dict[str, Any]) -> None:
    """Cilium's monitor layouts (cilium.md §3.6): trace v1 48 B, drop v2 40 B, and the
    ring-buffer record puts the packet at events.HEADER_LEN."""
    from ciliate.datapath.linux import events

    trace, drop = c_layouts["trace_notify"], c_layouts["drop_notify"]
    assert trace["size"] == 48 and drop["size"] == 40
    assert trace["fields"]["src_label"] == [16, 4] and trace["fields"]["dst_id"] == [24, 2]
    assert trace["fields"]["reason"] == [26, 1] and trace["fields"]["ifindex"] == [28, 4]
    assert drop["fields"]["dst_id"] == [24, 4] and drop["fields"]["line"] == [28, 2]
    assert drop["fields"]["file"] == [30, 1] and drop["fields"]["ifindex"] == [32, 4]
    verdict = c_layouts["policy_verdict_notify"]
    assert verdict["size"] == 40 and verdict["fields"]["remote_label"] == [16, 4]
    assert verdict["fields"]["verdict"] == [20, 4] and verdict["fields"]["dst_port"] == [24, 2]
    assert verdict["fields"]["flags"] == [27, 1] and verdict["fields"]["cookie"] == [32, 4]
    assert c_layouts["notify_record"]["fields"]["data"][0] == events.HEADER_LEN
