"""bpftool-style access to any map by name: ``bpf map lookup NODE MAP key [hex] BYTES``
and ``bpf map dump NODE MAP``, printed byte for byte as bpftool's plain output
(print_entry_plain / fprint_hex), so the blog posts' commands read the same here.

Inputs: the map source (kernel maps when the cluster is up, else the model's bytes).
Output: text on the Context; a missing key is exit 2 with bpftool's message. Imports
nothing above ``cli``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ciliate.cli.context import Context
from ciliate.cli.state import codec_for, map_source
from ciliate.errors import CiliateError, ExitCode


def bpftool_hex(data: bytes) -> str:
    """bpftool's fprint_hex: bytes space-separated, two spaces after 8, 16 per line."""
    out: list[str] = []
    for i, b in enumerate(data):
        if i == 0:
            pfx = ""
        elif i % 16 == 0:
            pfx = "\n"
        elif i % 8 == 0:
            pfx = "  "
        else:
            pfx = " "
        out.append(f"{pfx}{b:02x}")
    return "".join(out)


def bpftool_entry(key: bytes, value: bytes) -> str:
    """bpftool's plain entry: ``key:``/``value:`` on their own lines when either side
    is longer than 16 bytes, else on one or two lines (print_entry_plain)."""
    break_names = len(key) > 16 or len(value) > 16
    single = len(key) + len(value) <= 24 and not break_names
    sep = "\n" if break_names else " "
    text = f"key:{sep}{bpftool_hex(key)}"
    text += "  " if single else "\n"
    text += f"value:{sep}{bpftool_hex(value)}"
    return text


def parse_key_bytes(words: Sequence[str]) -> bytes:
    """bpftool's key syntax: ``hex 0a 0b ...`` or decimal bytes ``10 11 ...``."""
    ws = list(words)
    is_hex = bool(ws) and ws[0] == "hex"
    if is_hex:
        ws = ws[1:]
    try:
        vals = [int(w, 16) if is_hex else int(w, 0) for w in ws]
    except ValueError as e:
        raise CiliateError(f"invalid key byte: {e}") from e
    if any(not 0 <= v <= 255 for v in vals):
        raise CiliateError("key bytes must be 0..255")
    return bytes(vals)


def bpf_map_lookup(args: argparse.Namespace, ctx: Context) -> int:
    if not args.key or args.key[0] != "key":
        ctx.err("Error: expected 'key' followed by the key bytes (e.g. key hex 0a 0a 02 79 ...)")
        return ExitCode.INVALID_INPUT
    key = parse_key_bytes(args.key[1:])
    c = codec_for(args.map)
    if len(key) != c.key_size:
        ctx.err(f"Error: key expected {c.key_size} bytes got {len(key)}")
        return ExitCode.INVALID_INPUT
    src = map_source(ctx)
    value = src.lookup(args.node, args.map, key)
    if value is None:
        ctx.err("Error: bpf map lookup elem failed: No such file or directory")
        return ExitCode.NOT_FOUND
    ctx.out(bpftool_entry(key, value))
    return ExitCode.OK


def bpf_map_dump(args: argparse.Namespace, ctx: Context) -> int:
    src = map_source(ctx)
    entries = sorted(src.dump(args.node, args.map))
    for k, v in entries:
        ctx.out(bpftool_entry(k, v))
    ctx.out(f"Found {len(entries)} element{'s' if len(entries) != 1 else ''}")
    return ExitCode.OK
