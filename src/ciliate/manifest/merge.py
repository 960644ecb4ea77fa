"""kubectl apply's three-way merge: what the user applied last time, what they apply
now, and what is live (with the fields controllers and admission filled in).

Role: ``merge_applied(live, applied)`` returns the object to store. Rules, as kubectl's
client-side apply (simplified: lists are replaced whole, as a JSON merge patch does,
instead of strategic merges keyed by name):

1. a field in the new manifest takes the manifest's value;
2. a field that was in the last-applied manifest and is gone from the new one is
   removed (the user deleted it);
3. any other live field is kept: ``spec.nodeName`` set by the scheduler, an allocated
   ``spec.clusterIP``, annotations a controller added;
4. ``status`` and server-set metadata are never taken from a manifest without them.

The last-applied manifest is kept, as kubectl does, in the annotation
``kubectl.kubernetes.io/last-applied-configuration`` (compact JSON). Pure: documents
in, documents out; imports only ``ciliate.model.meta``.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from ciliate.model.meta import Doc

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
SERVER_FIELDS = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields")


def with_last_applied(doc: Doc) -> Doc:
    """``doc`` carrying itself (without that annotation) as the last-applied manifest."""
    out = copy.deepcopy(doc)
    meta = out.setdefault("metadata", {})
    ann = dict(meta.get("annotations") or {})
    ann.pop(LAST_APPLIED, None)
    meta["annotations"] = ann
    record = copy.deepcopy(out)
    if not ann:
        del record["metadata"]["annotations"]
    ann[LAST_APPLIED] = json.dumps(record, separators=(",", ":"), sort_keys=True)
    return out


def last_applied(live: Doc) -> Doc:
    """The manifest applied last time ({} when unknown or unreadable)."""
    text = ((live.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
    if not isinstance(text, str):
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _merge(live: Any, last: Any, new: Any) -> Any:
    if not isinstance(new, dict) or not isinstance(live, dict):
        return copy.deepcopy(new)
    last_map = last if isinstance(last, dict) else {}
    out = {k: copy.deepcopy(v) for k, v in live.items() if not (k in last_map and k not in new)}
    for k, v in new.items():
        out[k] = _merge(live[k], last_map.get(k), v) if k in live else copy.deepcopy(v)
    return out


def strip_server_fields(doc: Doc, keep_status: bool) -> Doc:
    """``doc`` without server-set metadata (and without status unless asked)."""
    meta = {k: v for k, v in (doc.get("metadata") or {}).items() if k not in SERVER_FIELDS}
    out = {k: v for k, v in doc.items() if k != "metadata" and (keep_status or k != "status")}
    out["metadata"] = meta
    return out


def merge_applied(live: Doc | None, applied: Doc) -> Doc:
    """The object to store when ``applied`` (a manifest) is applied over ``live``."""
    new = with_last_applied(applied)
    if live is None:
        return new
    keep_status = "status" in applied
    base = strip_server_fields(live, keep_status)
    merged: Doc = _merge(base, last_applied(live), new)
    return merged


def is_unchanged(live: Doc, merged: Doc) -> bool:
    """Whether storing ``merged`` would change nothing a user can see."""
    keep = "status" in merged
    return strip_server_fields(live, keep) == strip_server_fields(merged, keep)
