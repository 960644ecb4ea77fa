"""Computed kinds for ``ciliate get``: ciliumendpoints (cep, ciliumep), ciliumnodes
(cn, ciliumn) and ciliumidentities (ciliumid), derived from the DesiredState.

Documents follow the CRD shapes (cilium.md §11): CiliumEndpoint status.id,
status.identity.{id,labels}, status.networking.{addressing[].ipv4,node},
status.state, status.policy; CiliumNode spec.addresses, spec.ipam.podCIDRs,
spec.health. Registered in ``cli.virtual`` on import (``cmd_cilium`` imports this).
"""

from __future__ import annotations

from collections.abc import Sequence

from ciliate.cli import render
from ciliate.cli.context import Context
from ciliate.cli.state import load_desired
from ciliate.desired import EndpointKind
from ciliate.model.meta import Doc


def ciliumendpoint_docs(ctx: Context) -> list[Doc]:
    state = load_desired(ctx)
    out: list[Doc] = []
    for n in (state.nodes[k] for k in sorted(state.nodes)):
        for ep in sorted(n.endpoints.values(), key=lambda e: e.pod):
            if ep.kind is not EndpointKind.POD:
                continue
            ns, name = ep.pod.split("/", 1)
            ident = state.identities.get(ep.identity)
            out.append({
                "apiVersion": "cilium.io/v2", "kind": "CiliumEndpoint",
                "metadata": {"name": name, "namespace": ns},
                "status": {
                    "id": ep.id,
                    "identity": {"id": ep.identity, "labels": list(ident.labels if ident else ep.labels)},
                    "networking": {"addressing": [{"ipv4": str(ep.ip)}], "node": str(n.internal_ip)},
                    "state": ep.state,
                    "encryption": {},
                    "policy": {
                        "ingress": {"enforcing": ep.ingress_enforced,
                                    "state": "enforcing" if ep.ingress_enforced else "<status disabled>"},
                        "egress": {"enforcing": ep.egress_enforced,
                                   "state": "enforcing" if ep.egress_enforced else "<status disabled>"},
                    },
                    "visibility-policy-status": "<status disabled>",
                },
            })  # fmt: skip
    return out


def ciliumendpoint_table(docs: Sequence[Doc], wide: bool) -> tuple[list[str], list[list[str]]]:
    headers = ["NAME", "ENDPOINT ID", "IDENTITY ID", "INGRESS ENFORCEMENT", "EGRESS ENFORCEMENT",
               "VISIBILITY POLICY", "ENDPOINT STATE", "IPV4", "IPV6"]  # fmt: skip
    rows = []
    for d in docs:
        st = d["status"]
        rows.append([
            d["metadata"]["name"], str(st["id"]), str(st["identity"]["id"]),
            st["policy"]["ingress"]["state"], st["policy"]["egress"]["state"],
            st["visibility-policy-status"], st["state"], st["networking"]["addressing"][0]["ipv4"], "",
        ])  # fmt: skip
    return headers, rows


def ciliumnode_docs(ctx: Context) -> list[Doc]:
    state = load_desired(ctx)
    created = {
        str((d.get("metadata") or {}).get("name", "")): str(
            (d.get("metadata") or {}).get("creationTimestamp", "")
        )
        for d in ctx.store().list("Node")
    }
    out: list[Doc] = []
    for name in sorted(state.nodes):
        n = state.nodes[name]
        out.append({
            "apiVersion": "cilium.io/v2", "kind": "CiliumNode",
            "metadata": {"name": name, "labels": dict(n.labels),
                         "creationTimestamp": created.get(name, "")},
            "spec": {
                "addresses": [{"type": "InternalIP", "ip": str(n.internal_ip)},
                              {"type": "CiliumInternalIP", "ip": str(n.cilium_internal_ip)}],
                "health": {"ipv4": str(n.health_ip)} if n.health_ip else {},
                "ipam": {"podCIDRs": [str(n.pod_cidr)]},
            },
        })  # fmt: skip
    return out


def ciliumnode_table(docs: Sequence[Doc], wide: bool) -> tuple[list[str], list[list[str]]]:
    rows = []
    for d in docs:
        addrs = {a["type"]: a["ip"] for a in d["spec"]["addresses"]}
        rows.append([d["metadata"]["name"], addrs.get("CiliumInternalIP", ""), addrs.get("InternalIP", ""),
                     render.age(d["metadata"].get("creationTimestamp", ""))])  # fmt: skip
    return ["NAME", "CILIUMINTERNALIP", "INTERNALIP", "AGE"], rows


def ciliumidentity_docs(ctx: Context) -> list[Doc]:
    state = load_desired(ctx)
    out: list[Doc] = []
    for ident in sorted(state.identities.values(), key=lambda i: i.id):
        if not 256 <= ident.id < (1 << 24):
            continue
        labels = {}
        for lab in ident.labels:
            k, _, v = lab.partition("=")
            labels[k] = v
        ns = labels.get("k8s:io.kubernetes.pod.namespace", "")
        out.append({
            "apiVersion": "cilium.io/v2", "kind": "CiliumIdentity",
            "metadata": {"name": str(ident.id), "labels": {"io.kubernetes.pod.namespace": ns}},
            "security-labels": labels,
        })  # fmt: skip
    return out


def ciliumidentity_table(docs: Sequence[Doc], wide: bool) -> tuple[list[str], list[list[str]]]:
    return ["NAME", "NAMESPACE", "AGE"], [
        [
            d["metadata"]["name"],
            d["metadata"]["labels"].get("io.kubernetes.pod.namespace", ""),
            "<unknown>",
        ]
        for d in docs
    ]


def _register_virtual() -> None:
    try:
        from ciliate.cli.virtual import VirtualKind, register
    except ImportError:  # pragma: no cover - before the manifest part lands
        return
    register(
        VirtualKind(
            "CiliumEndpoint",
            "ciliumendpoints",
            ("cep", "ciliumep"),
            True,
            ciliumendpoint_docs,
            ciliumendpoint_table,
        )
    )
    register(
        VirtualKind(
            "CiliumNode", "ciliumnodes", ("cn", "ciliumn"), False, ciliumnode_docs, ciliumnode_table
        )
    )
    register(VirtualKind("CiliumIdentity", "ciliumidentities", ("ciliumid",), False,
                         ciliumidentity_docs, ciliumidentity_table))  # fmt: skip


_register_virtual()
