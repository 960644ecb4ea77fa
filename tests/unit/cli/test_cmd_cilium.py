"""cmd_cilium's formatting helpers: bpftool's hex layout, key parsing, flag strings."""

from __future__ import annotations

import pytest

from ciliate.cli.cmd_cilium import bpftool_entry, bpftool_hex, ipcache_flags, parse_key_bytes
from ciliate.cli.state import canonical_map_name
from ciliate.errors import CiliateError


def test_bpftool_hex_groups_of_eight_sixteen_per_line() -> None:
    assert bpftool_hex(bytes(range(20))) == (
        "00 01 02 03 04 05 06 07  08 09 0a 0b 0c 0d 0e 0f\n10 11 12 13"
    )


def test_bpftool_entry_layouts() -> None:
    assert bpftool_entry(b"\x01\x00", b"\x02\x00\x00\x00") == "key: 01 00  value: 02 00 00 00"
    # key + value <= 24 bytes: one line (print_entry_plain's single_line)
    assert bpftool_entry(bytes(12), bytes(12)).count("\n") == 0
    assert bpftool_entry(bytes(12), bytes(16)) == (
        "key: 00 00 00 00 00 00 00 00  00 00 00 00\n"
        "value: 00 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00"
    )
    assert bpftool_entry(bytes(20), bytes(2)).startswith("key:\n00 00")


def test_key_syntax() -> None:
    assert parse_key_bytes(["hex", "0a", "ff"]) == b"\x0a\xff"
    assert parse_key_bytes(["10", "0x10"]) == b"\x0a\x10"
    with pytest.raises(CiliateError):
        parse_key_bytes(["hex", "zz"])
    with pytest.raises(CiliateError):
        parse_key_bytes(["300"])


def test_map_names() -> None:
    assert canonical_map_name("/sys/fs/bpf/tc/globals/cilium_lxc") == "cilium_lxc"
    assert canonical_map_name("cilium_policy_00042") == "cilium_policy_v2_00042"
    assert canonical_map_name("cilium_ipcache_v2") == "cilium_ipcache"


def test_ipcache_flag_names() -> None:
    assert ipcache_flags(0) == "<none>"
    assert ipcache_flags(0x2) == "hastunnel"
    assert ipcache_flags(0x3) == "skiptunnel,hastunnel"
