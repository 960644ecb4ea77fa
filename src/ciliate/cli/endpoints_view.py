"""``kubectl get ep``: v1 Endpoints as a computed kind, folded from EndpointSlices.

The controllers keep EndpointSlices only (Kubernetes mirrors Endpoints into slices; the
content is the same). Stored Endpoints objects, if a user applied some, win. Registered
in ``cli.virtual`` on import (``cmd_resources`` imports this module).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ciliate.cli import virtual
from ciliate.cli.render import age
from ciliate.cli.virtual import VirtualKind
from ciliate.model.meta import Doc, name_of, namespace_of

if TYPE_CHECKING:
    from ciliate.cli.context import Context


def _endpoints_docs(ctx: Context) -> list[Doc]:
    """v1 Endpoints per service, folded from its EndpointSlices (the controllers keep
    slices only; Kubernetes mirrors them the other way round, same content)."""
    store = ctx.store()
    stored = {(namespace_of(d), name_of(d)): d for d in store.list("Endpoints")}
    merged: dict[tuple[str, str], Doc] = {}
    for s in store.list("EndpointSlice"):
        meta = s.get("metadata") or {}
        svc = (meta.get("labels") or {}).get("kubernetes.io/service-name")
        if not svc or (namespace_of(s), svc) in stored:
            continue
        ep = merged.setdefault(
            (namespace_of(s), svc),
            {
                "apiVersion": "v1",
                "kind": "Endpoints",
                "metadata": {
                    "name": svc,
                    "namespace": namespace_of(s),
                    "creationTimestamp": meta.get("creationTimestamp", ""),
                    "labels": {
                        k: v
                        for k, v in (meta.get("labels") or {}).items()
                        if not k.startswith(("kubernetes.io/", "endpointslice.kubernetes.io/"))
                    },
                },
                "subsets": [],
            },
        )
        ips = [
            {"ip": str(a)}
            for e in s.get("endpoints") or ()
            if (e.get("conditions") or {}).get("ready", True)
            for a in e.get("addresses") or ()
        ]
        if ips:
            ports = [
                {k: p[k] for k in ("name", "port", "protocol") if k in p}
                for p in s.get("ports") or ()
            ]
            ep["subsets"].append({"addresses": ips, "ports": ports})
    return [*stored.values(), *merged.values()]


def _endpoints_table(docs: Sequence[Doc], wide: bool) -> tuple[list[str], list[list[str]]]:
    rows: list[list[str]] = []
    for d in docs:
        pairs = [
            f"{a.get('ip')}:{p.get('port')}"
            for sub in d.get("subsets") or ()
            for p in sub.get("ports") or ()
            for a in sub.get("addresses") or ()
        ]
        shown = ",".join(pairs[:3]) + (f" + {len(pairs) - 3} more..." if len(pairs) > 3 else "")
        created = str((d.get("metadata") or {}).get("creationTimestamp", "") or "")
        rows.append([name_of(d), shown or "<none>", age(created)])
    return ["NAME", "ENDPOINTS", "AGE"], rows


virtual.register(
    VirtualKind(
        kind="Endpoints",
        plural="endpoints",
        short_names=("ep",),
        namespaced=True,
        list=_endpoints_docs,
        table=_endpoints_table,
        group="",
        version="v1",
    )
)
