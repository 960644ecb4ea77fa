"""Server-side object semantics shared by every store backend (the API server's part).

Role: given the stored document (or none) and a change, compute what the store writes:
the new document with server-set metadata, or "unchanged". Backends (``sqlite``,
``memory``; later etcd) call ``resolve_put``/``resolve_delete`` inside their own
transaction, so all of them agree on uid, resourceVersion, generation,
creationTimestamp and status handling. Pure: no I/O; the clock and uid source are
passed in. Imports only the standard library and ``ciliate.model``.

Rules (Kubernetes' ObjectMeta semantics for resources with a status subresource):

1. ``metadata.uid`` and ``metadata.creationTimestamp`` are kept from the existing
   object, else a new uid and the current time (RFC 3339 with ``Z``).
2. ``metadata.resourceVersion`` is the rv of the change that wrote it, as a string;
   what a client sends there is ignored (no optimistic-concurrency check yet).
3. ``metadata.generation`` is 1 on create and +1 when anything outside ``metadata`` and
   ``status`` changes.
4. A put without a ``status`` key keeps the stored status (controllers and the agent own
   status; ``apply -f`` of a manifest must not wipe it); a put with one replaces it.
5. A put whose normalized document (sorted keys, server fields merged) equals the stored
   one is unchanged: no event, no new rv.
6. A delete of a missing object is ignored; a delete's event carries the last document
   with the delete's rv.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from ciliate.model.meta import Doc


def canonical(doc: Doc) -> str:
    """The normalized text of a document: sorted keys, no whitespace."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def load(text: str) -> Doc:
    doc = json.loads(text)
    if not isinstance(doc, dict):
        raise ValueError("stored document is not an object")
    return doc


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def spec_part(doc: Doc) -> str:
    """Everything that counts for ``generation``: all but metadata and status."""
    return canonical({k: v for k, v in doc.items() if k not in ("metadata", "status")})


@dataclass(frozen=True, slots=True)
class Put:
    """The outcome of a put: the document to store (its canonical text), and whether
    it creates the object. ``None`` from ``resolve_put`` means unchanged."""

    doc: Doc
    text: str
    created: bool


def resolve_put(
    old: Doc | None,
    new_in: Doc,
    rv: int,
    *,
    now: Callable[[], float],
    new_uid: Callable[[], str],
) -> Put | None:
    """Apply rules 1–5 for a put that would take resourceVersion ``rv``."""
    new: Doc = load(canonical(new_in))  # a private deep copy; also proves it is JSON
    meta = new.get("metadata")
    if not isinstance(meta, dict):
        meta = new["metadata"] = {}
    if old is None:
        meta["uid"] = new_uid()
        meta["creationTimestamp"] = rfc3339(now())
        meta["generation"] = 1
    else:
        old_meta = old.get("metadata") or {}
        meta["uid"] = old_meta.get("uid") or new_uid()
        meta["creationTimestamp"] = old_meta.get("creationTimestamp") or rfc3339(now())
        gen = int(old_meta.get("generation") or 1)
        meta["generation"] = gen + 1 if spec_part(new) != spec_part(old) else gen
        meta["resourceVersion"] = old_meta.get("resourceVersion", "")
        if "status" not in new and "status" in old:
            new["status"] = old["status"]
        if canonical(new) == canonical(old):
            return None
    meta["resourceVersion"] = str(rv)
    return Put(new, canonical(new), old is None)


def resolve_delete(old: Doc, rv: int) -> Doc:
    """The DELETED event's document: the last state, stamped with the delete's rv."""
    last = load(canonical(old))
    meta = last.get("metadata")
    if not isinstance(meta, dict):
        meta = last["metadata"] = {}
    meta["resourceVersion"] = str(rv)
    return last
