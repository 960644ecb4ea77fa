"""Add-on kinds stored for later capabilities: Cilium LB-IPAM pools and L2
announcement policies, Multus NetworkAttachmentDefinitions, Calico IPPool and
BGPConfiguration (typed read-only views).

Defaults follow cilium.md §8-9: a pool's ``blocks`` (legacy ``cidrs``) hold a ``cidr``
or a ``start``/``stop`` range (start alone = one address); a nil serviceSelector
selects every service. ``allowFirstLastIPs`` defaults to "No" here, as in Cilium 1.15
and the example it came from (lb-ipam-l2-ingress/EXPECTED.md: pool 10.0.0.0/30 hands
out 10.0.0.1, "a /30 is the smallest usable pool (2 addresses)"); Cilium 1.16 changed
the upstream default to "Yes". Imports only
``ciliate.model.meta``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ciliate.model.meta import Doc, LabelSelector, ObjectMeta


@dataclass(frozen=True, slots=True)
class PoolBlock:
    cidr: str = ""
    start: str = ""
    stop: str = ""  # "" with a start = the single address ``start``


@dataclass(frozen=True, slots=True)
class CiliumLoadBalancerIPPool:
    meta: ObjectMeta
    blocks: tuple[PoolBlock, ...]
    service_selector: LabelSelector | None  # None = every service
    allow_first_last_ips: bool
    disabled: bool
    conditions: Mapping[str, str]  # status.conditions type -> status
    doc: Doc = field(repr=False, compare=False)

    @classmethod
    def from_doc(cls, doc: Doc) -> CiliumLoadBalancerIPPool:
        spec = doc.get("spec") or {}
        blocks = [*(spec.get("blocks") or ()), *(spec.get("cidrs") or ())]
        sel = spec.get("serviceSelector")
        status = doc.get("status") or {}
        return cls(
            ObjectMeta.from_doc(doc),
            tuple(
                PoolBlock(
                    str(b.get("cidr", "") or ""),
                    str(b.get("start", "") or ""),
                    str(b.get("stop", "") or ""),
                )
                for b in blocks
            ),
            None if sel is None else LabelSelector.from_doc(sel),
            str(spec.get("allowFirstLastIPs", "No")) == "Yes",
            bool(spec.get("disabled", False)),
            {str(c.get("type")): str(c.get("status")) for c in status.get("conditions") or ()},
            doc,
        )


@dataclass(frozen=True, slots=True)
class CiliumL2AnnouncementPolicy:
    meta: ObjectMeta
    service_selector: LabelSelector | None  # None = every service
    node_selector: LabelSelector | None  # None = every node
    interfaces: tuple[str, ...]  # Go regular expressions, ORed; () = every device
    external_ips: bool
    load_balancer_ips: bool
    doc: Doc = field(repr=False, compare=False)

    @classmethod
    def from_doc(cls, doc: Doc) -> CiliumL2AnnouncementPolicy:
        spec = doc.get("spec") or {}
        ss, ns = spec.get("serviceSelector"), spec.get("nodeSelector")
        return cls(
            ObjectMeta.from_doc(doc),
            None if ss is None else LabelSelector.from_doc(ss),
            None if ns is None else LabelSelector.from_doc(ns),
            tuple(str(i) for i in spec.get("interfaces") or ()),
            bool(spec.get("externalIPs", False)),
            bool(spec.get("loadBalancerIPs", False)),
            doc,
        )


@dataclass(frozen=True, slots=True)
class NetworkAttachmentDefinition:
    meta: ObjectMeta
    config: Mapping[str, Any]  # the parsed CNI configuration ({} when absent)
    doc: Doc = field(repr=False, compare=False)

    @classmethod
    def from_doc(cls, doc: Doc) -> NetworkAttachmentDefinition:
        raw = (doc.get("spec") or {}).get("config") or "{}"
        try:
            config = json.loads(raw) if isinstance(raw, str) else {}
        except ValueError:
            config = {}
        return cls(ObjectMeta.from_doc(doc), config if isinstance(config, dict) else {}, doc)

    @property
    def cni_type(self) -> str:
        return str(self.config.get("type", ""))


@dataclass(frozen=True, slots=True)
class CalicoIPPool:
    """projectcalico.org/v3 IPPool (kind ``IPPool``)."""

    meta: ObjectMeta
    cidr: str
    ipip_mode: str  # Never | Always | CrossSubnet
    vxlan_mode: str
    nat_outgoing: bool
    doc: Doc = field(repr=False, compare=False)

    @classmethod
    def from_doc(cls, doc: Doc) -> CalicoIPPool:
        spec = doc.get("spec") or {}
        return cls(
            ObjectMeta.from_doc(doc),
            str(spec.get("cidr", "") or ""),
            str(spec.get("ipipMode", "Never") or "Never"),
            str(spec.get("vxlanMode", "Never") or "Never"),
            bool(spec.get("natOutgoing", False)),
            doc,
        )


@dataclass(frozen=True, slots=True)
class BGPConfiguration:
    meta: ObjectMeta
    as_number: int  # 64512 when absent (Calico's default)
    node_to_node_mesh: bool
    doc: Doc = field(repr=False, compare=False)

    @classmethod
    def from_doc(cls, doc: Doc) -> BGPConfiguration:
        spec = doc.get("spec") or {}
        asn = spec.get("asNumber", 64512)
        return cls(
            ObjectMeta.from_doc(doc),
            asn if isinstance(asn, int) else 64512,
            bool(spec.get("nodeToNodeMeshEnabled", True)),
            doc,
        )
