"""Reconcile failures become status, not crashes.

Role: ``guarded(doc, compute, *args)`` runs one object's controller step; when the object
holds something the step cannot work with (a field of the wrong type that slipped
past validation, say), the object gets a ``ReconcileError`` condition with the reason
instead, and every other object is reconciled as usual.

Inputs: a document and a thunk. Outputs: ``Change`` lists. Pure.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ciliate.controllers.snapshot import put
from ciliate.model.meta import Doc
from ciliate.store.api import Change

CONDITION = "ReconcileError"


def guarded(doc: Doc, compute: Callable[..., list[Change]], *args: Any) -> list[Change]:
    """``compute(*args)``, or a ReconcileError condition on ``doc`` if it fails."""
    try:
        return compute(*args)
    except (ValueError, TypeError, KeyError, AttributeError, IndexError) as e:
        message = f"{type(e).__name__}: {e}"
        status = dict(doc.get("status") or {})
        conds = [c for c in status.get("conditions") or () if c.get("type") != CONDITION]
        cond = {"type": CONDITION, "status": "True", "reason": "InvalidObject", "message": message}
        status["conditions"] = [*conds, cond]
        if status == doc.get("status"):
            return []
        return [put({**doc, "status": status})]
