"""ID pins: every ID the control plane handed out, as JSON-able data.

Role: endpoint IDs, identities, backend and rev-NAT IDs are picked by hash with
probing (endpoints, identities) or as the lowest free number (backends, rev-NAT); a
from-scratch computation may resolve a collision differently than an earlier one.
Pins carry the IDs from one computation (or process) to the next so that they never
move while their owner exists. Inputs/outputs: the engine's allocation tables.

Format (``export_pins``): ``identities`` {labels joined by newlines: id},
``endpoints`` {node: {"ns/name" | "reserved:host" | "reserved:health": id}},
``backends`` {"ip|port|proto": id}, ``rev_nat`` {"ns/name|type|address|port|proto": id}.
Sans-IO; imports only ``control.services`` and the standard library.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from ipaddress import IPv4Address
from typing import Any

from ciliate.control.services import Allocators

LabelSet = tuple[str, ...]


def _key(key: Hashable) -> str:
    """An allocator key (a tuple) as one string: fields joined by ``|``."""
    return "|".join(map(str, key)) if isinstance(key, tuple) else str(key)


def export_pins(
    label_ids: Mapping[LabelSet, int],
    ep_ids: Mapping[str, Mapping[str, int]],
    alloc: Allocators,
) -> dict[str, Any]:
    return {
        "identities": {"\n".join(k): v for k, v in label_ids.items()},
        "endpoints": {n: dict(ids) for n, ids in ep_ids.items()},
        "backends": {_key(k): v for k, v in alloc.backends.ids.items()},
        "rev_nat": {_key(k): v for k, v in alloc.rev_nat.ids.items()},
    }


def seed_pins(
    pins: Mapping[str, Any],
    label_ids: dict[LabelSet, int],
    ep_ids: dict[str, dict[str, int]],
    alloc: Allocators,
) -> None:
    """Load pins into the tables (IDs already there win). Malformed pins are ignored:
    they only cost stability, never correctness."""
    try:
        for labels, n in (pins.get("identities") or {}).items():
            label_ids.setdefault(tuple(str(labels).split("\n")), int(n))
        for node, ids in (pins.get("endpoints") or {}).items():
            mine = ep_ids.setdefault(str(node), {})
            used = set(mine.values())
            for key, n in ids.items():
                if key not in mine and int(n) not in used:
                    mine[str(key)] = int(n)
                    used.add(int(n))
        for key, n in (pins.get("backends") or {}).items():
            ip, port, proto = str(key).split("|")
            alloc.backends.pin((IPv4Address(ip), int(port), int(proto)), int(n))
        for key, n in (pins.get("rev_nat") or {}).items():
            svc, typ, addr, port, proto = str(key).split("|")
            alloc.rev_nat.pin((svc, typ, addr, int(port), proto), int(n))
    except (ValueError, AttributeError, TypeError):
        return
