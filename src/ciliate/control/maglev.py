"""Maglev consistent hashing, as Cilium builds its lookup tables (cilium.md §7.2).

Inputs: the backends of a frontend (ID and string form ``ip:port/PROTO``), the table
size M (a prime from ``MAGLEV_PRIMES``, default 16381) and the cluster's
``maglev.hashSeed`` (12 bytes, base64; default ``JLfvgnHc2kaSUFaI``).
Output: M backend IDs; the datapath picks ``table[hash(5-tuple) % M]``.

Construction (Eisenbud et al., NSDI'16, as in cilium/pkg/maglev):

1. For each backend, ``h1, h2 = murmur3_x64_128(name, seed)`` where the seed is the
   first 4 bytes of the decoded hashSeed (big endian), ``offset = h1 % M`` and
   ``skip = h2 % (M - 1) + 1``; its preference list is ``(offset + j * skip) % M``.
2. Backends, sorted by name, take turns: each claims its next preferred slot that is
   still free, until all M slots are taken.

Removing one of N backends therefore moves only about 1/N of the slots. Sans-IO.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

DEFAULT_HASH_SEED = "JLfvgnHc2kaSUFaI"
DEFAULT_TABLE_SIZE = 16381
MAGLEV_PRIMES = (251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071)

_M64 = (1 << 64) - 1
_C1 = 0x87C37B91114253D5
_C2 = 0x4CF5AD432745937F


class MaglevError(ValueError):
    """An invalid table size or hash seed."""


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _M64


def _fmix(k: int) -> int:
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & _M64
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & _M64
    k ^= k >> 33
    return k


def murmur3_x64_128(data: bytes, seed: int = 0) -> tuple[int, int]:
    """MurmurHash3 x64 128-bit (Austin Appleby's reference; spaolacci/murmur3's
    ``Sum128WithSeed``): the two 64-bit halves h1, h2."""
    length = len(data)
    h1 = h2 = seed & 0xFFFFFFFF
    nblocks = length // 16
    for i in range(nblocks):
        k1 = int.from_bytes(data[16 * i : 16 * i + 8], "little")
        k2 = int.from_bytes(data[16 * i + 8 : 16 * i + 16], "little")
        k1 = (k1 * _C1) & _M64
        k1 = _rotl(k1, 31)
        k1 = (k1 * _C2) & _M64
        h1 ^= k1
        h1 = _rotl(h1, 27)
        h1 = (h1 + h2) & _M64
        h1 = (h1 * 5 + 0x52DCE729) & _M64
        k2 = (k2 * _C2) & _M64
        k2 = _rotl(k2, 33)
        k2 = (k2 * _C1) & _M64
        h2 ^= k2
        h2 = _rotl(h2, 31)
        h2 = (h2 + h1) & _M64
        h2 = (h2 * 5 + 0x38495AB5) & _M64
    tail = data[16 * nblocks :]
    k1 = k2 = 0
    if len(tail) > 8:
        k2 = int.from_bytes(tail[8:], "little")
        k2 = (k2 * _C2) & _M64
        k2 = _rotl(k2, 33)
        k2 = (k2 * _C1) & _M64
        h2 ^= k2
    if tail:
        k1 = int.from_bytes(tail[:8], "little")
        k1 = (k1 * _C1) & _M64
        k1 = _rotl(k1, 31)
        k1 = (k1 * _C2) & _M64
        h1 ^= k1
    h1 ^= length
    h2 ^= length
    h1 = (h1 + h2) & _M64
    h2 = (h2 + h1) & _M64
    h1 = _fmix(h1)
    h2 = _fmix(h2)
    h1 = (h1 + h2) & _M64
    h2 = (h2 + h1) & _M64
    return h1, h2


def seed_murmur(hash_seed: str = DEFAULT_HASH_SEED) -> int:
    """The murmur3 seed: bytes 0-3 of the decoded 12-byte hashSeed, big endian."""
    try:
        raw = base64.b64decode(hash_seed, validate=True)
    except ValueError as e:
        raise MaglevError(f"maglev hashSeed {hash_seed!r} is not base64") from e
    if len(raw) != 12:
        raise MaglevError(f"maglev hashSeed must decode to 12 bytes, got {len(raw)}")
    return int.from_bytes(raw[:4], "big")


def validate_table_size(m: int) -> int:
    if m not in MAGLEV_PRIMES:
        raise MaglevError(
            f"maglev table size {m} is not one of {', '.join(map(str, MAGLEV_PRIMES))}"
        )
    return m


def compute_table(
    backends: Sequence[tuple[int, str]],
    m: int = DEFAULT_TABLE_SIZE,
    hash_seed: str = DEFAULT_HASH_SEED,
) -> tuple[int, ...]:
    """M backend IDs for (backend ID, backend name) pairs; empty without backends."""
    validate_table_size(m)
    if not backends:
        return ()
    seed = seed_murmur(hash_seed)
    ordered = sorted(backends, key=lambda b: b[1])
    offsets: list[int] = []
    skips: list[int] = []
    for _, name in ordered:
        h1, h2 = murmur3_x64_128(name.encode(), seed)
        offsets.append(h1 % m)
        skips.append(h2 % (m - 1) + 1)
    table = [-1] * m
    nxt = [0] * len(ordered)
    filled = 0
    while True:
        for i, (bid, _) in enumerate(ordered):
            off, skip, j = offsets[i], skips[i], nxt[i]
            c = (off + j * skip) % m
            while table[c] >= 0:
                j += 1
                c = (off + j * skip) % m
            table[c] = bid
            nxt[i] = j + 1
            filled += 1
            if filled == m:
                return tuple(table)
