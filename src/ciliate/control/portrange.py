"""Port ranges as aligned LPM blocks (cilium.md §6.3 "Port ranges in the map").

A range ``port..endPort`` becomes the minimal list of (first port, prefix length)
pairs, each covering an aligned power-of-two block of the 16-bit port space, so the
policy map's LPM trie can hold it. ``port`` 0 means "any port" (prefix 0).

Pure; imports nothing of ciliate.
"""

from __future__ import annotations


def split_range(first: int, last: int) -> list[tuple[int, int]]:
    """Aligned blocks covering exactly ``first..last`` (inclusive), as (start, prefix).

    >>> split_range(8080, 8083)
    [(8080, 14)]
    >>> split_range(80, 81)
    [(80, 15)]
    """
    if first == 0 and last in (0, 65535):
        return [(0, 0)]
    if last < first:
        last = first
    out: list[tuple[int, int]] = []
    cur = first
    while cur <= last:
        # The largest block that starts at cur (alignment) and stays inside the range.
        size = cur & -cur if cur else 1 << 16
        while cur + size - 1 > last:
            size >>= 1
        out.append((cur, 16 - size.bit_length() + 1))
        cur += size
    return out


def block_last(start: int, prefix: int) -> int:
    """The last port of the block (start, prefix)."""
    return start + (1 << (16 - prefix)) - 1
