"""The model's Maglev slot hash is the kernel's ``lb4_hash``, bit for bit.

The C function and the tuple struct are taken from bpf/lib as they are, compiled for
the host with the C compiler, and run over the same tuples as the Python port: if
either side changes alone, the model and the kernel would pick different backends for
the same connection, and this test fails.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from ciliate.datapath.packet import L4, IPProto, Packet
from ciliate.datapath.sim.lb import tuple_hash

BPF_LIB = Path(__file__).resolve().parents[4] / "bpf" / "lib"

CASES = [
    ("10.10.2.2", "10.96.0.10", 40000, 80, 6),
    ("10.10.1.3", "10.96.12.7", 51532, 8080, 6),
    ("172.18.0.1", "172.18.0.4", 1, 31814, 17),
    ("192.0.2.200", "10.0.0.1", 65535, 443, 132),
]


def _extract(text: str, pattern: str) -> str:
    m = re.search(pattern, text, re.S)
    assert m, f"{pattern!r} not found in bpf/lib"
    return m.group(0)


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler to build the kernel hash")
def test_python_hash_equals_the_c_hash(tmp_path: Path) -> None:
    struct_src = _extract(
        (BPF_LIB / "conntrack.h").read_text(),
        r"struct ipv4_ct_tuple \{.*?\} __attribute__\(\(packed\)\);",
    )
    func_src = _extract(
        (BPF_LIB / "lb.h").read_text(),
        r"static __always_inline __u32 lb4_hash\(.*?\n\}",
    )
    rows = "\n".join(
        f'  t = mk("{s}", "{d}", {sp}, {dp}, {pr}); printf("%u\\n", lb4_hash(&t));'
        for s, d, sp, dp, pr in CASES
    )
    program = f"""
#include <stdio.h>
#include <stdint.h>
#include <arpa/inet.h>
typedef uint8_t __u8; typedef uint16_t __u16; typedef uint32_t __u32;
typedef uint16_t __be16; typedef uint32_t __be32;
#define __always_inline inline
{struct_src}
{func_src}
static struct ipv4_ct_tuple mk(const char *src, const char *dst, int sp, int dp, int pr) {{
  struct ipv4_ct_tuple t = {{0}};
  /* ct_build_tuple: daddr = packet source, saddr = packet destination */
  inet_pton(AF_INET, src, &t.daddr); inet_pton(AF_INET, dst, &t.saddr);
  t.sport = htons(sp); t.dport = htons(dp); t.nexthdr = pr;
  return t;
}}
int main(void) {{ struct ipv4_ct_tuple t;
{rows}
  return 0; }}
"""
    (tmp_path / "h.c").write_text(program)
    subprocess.run(["cc", "-O1", "-o", str(tmp_path / "h"), str(tmp_path / "h.c")], check=True)
    out = subprocess.run([str(tmp_path / "h")], capture_output=True, text=True, check=True)
    c_hashes = [int(x) for x in out.stdout.split()]
    py_hashes = [
        tuple_hash(
            Packet(
                eth_src="02:00:00:00:00:01",
                eth_dst="02:00:00:00:00:02",
                src=IPv4Address(s),
                dst=IPv4Address(d),
                proto=IPProto(pr),
                l4=L4(sport=sp, dport=dp),
            )
        )
        for s, d, sp, dp, pr in CASES
    ]
    assert py_hashes == c_hashes
