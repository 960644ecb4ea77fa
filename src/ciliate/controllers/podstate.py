"""Small readings of pod documents shared by the controllers (no decisions here).

Pure; imports only the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})


def meta(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    return doc.get("metadata") or {}


def name_of(doc: Mapping[str, Any]) -> str:
    return str(meta(doc).get("name", ""))


def namespace_of(doc: Mapping[str, Any]) -> str:
    return str(meta(doc).get("namespace", "") or "")


def labels_of(doc: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in (meta(doc).get("labels") or {}).items()}


def node_name(pod: Mapping[str, Any]) -> str:
    return str((pod.get("spec") or {}).get("nodeName", "") or "")


def pod_ip(pod: Mapping[str, Any]) -> str:
    return str((pod.get("status") or {}).get("podIP", "") or "")


def phase(pod: Mapping[str, Any]) -> str:
    return str((pod.get("status") or {}).get("phase", "") or "Pending")


def is_active(pod: Mapping[str, Any]) -> bool:
    """Not finished and not being deleted (ReplicaSets count only these)."""
    return phase(pod) not in TERMINAL_PHASES and not meta(pod).get("deletionTimestamp")


def condition(pod: Mapping[str, Any], ctype: str) -> Mapping[str, Any] | None:
    for c in (pod.get("status") or {}).get("conditions") or ():
        if c.get("type") == ctype:
            return dict(c)
    return None


def is_ready(pod: Mapping[str, Any]) -> bool:
    c = condition(pod, "Ready")
    return c is not None and c.get("status") == "True"


def creation_order(doc: Mapping[str, Any]) -> tuple[str, str]:
    """Sort key oldest first: creationTimestamp, then name (timestamps tie within a
    second)."""
    return (str(meta(doc).get("creationTimestamp", "") or ""), name_of(doc))
