"""Multus secondary networks: a pod's extra interfaces and their network-status.

Role: what Multus does when a pod asks for more networks with the annotation
``k8s.v1.cni.cncf.io/networks`` (a comma list ``[ns/]name[@ifname]`` or a JSON list of
``{"name", "namespace", "interface"}``): for each NetworkAttachmentDefinition named,
its CNI config's ``host-local`` IPAM gives the interface an address, and the pod gets
the annotation ``k8s.v1.cni.cncf.io/network-status`` listing every interface, the
cluster network (``cilium``, eth0, the pod IP, default) first, then ``net1``, ``net2``...
unless an interface name is given.

host-local keeps its state per node (a directory on each host), so two pods on
different nodes may hold the same secondary address, as on a real cluster; on one
node an address of a range is handed out once (lowest free in
[rangeStart, rangeEnd], skipping the gateway). The status is written once, when the
pod has started; a NetworkAttachmentDefinition that is missing or has no usable
host-local range gives the entry an ``error`` field instead of an address (the
network is still listed, so the problem is visible on the pod).

Inputs: a ``Snapshot`` (pods, NetworkAttachmentDefinitions). Outputs: pod changes
(metadata.annotations only). Pure.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from ciliate.controllers.podstate import (
    creation_order,
    is_active,
    meta,
    name_of,
    namespace_of,
    node_name,
    phase,
    pod_ip,
)
from ciliate.controllers.snapshot import Snapshot, put
from ciliate.model.meta import Doc
from ciliate.store.api import Change

NETWORKS_ANNOTATION = "k8s.v1.cni.cncf.io/networks"
STATUS_ANNOTATION = "k8s.v1.cni.cncf.io/network-status"
NAD_KIND = "NetworkAttachmentDefinition"
DEFAULT_NETWORK = "cilium"


@dataclass(frozen=True, slots=True)
class Attachment:
    namespace: str
    name: str
    interface: str  # "" = net<N> by position

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class HostLocal:
    subnet: IPv4Network
    start: int
    end: int
    gateway: str


def requested_networks(pod: Mapping[str, Any]) -> list[Attachment]:
    """The annotation's attachments (both forms); malformed items are skipped."""
    text = str((meta(pod).get("annotations") or {}).get(NETWORKS_ANNOTATION, "") or "").strip()
    if not text:
        return []
    ns = namespace_of(pod)
    out: list[Attachment] = []
    if text.startswith("["):
        try:
            items = json.loads(text)
        except ValueError:
            return []
        for it in items if isinstance(items, list) else []:
            if isinstance(it, Mapping) and it.get("name"):
                out.append(
                    Attachment(
                        str(it.get("namespace") or ns),
                        str(it["name"]),
                        str(it.get("interface") or ""),
                    )
                )
        return out
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        item, _, ifname = item.partition("@")
        nad_ns, _, name = item.rpartition("/")
        out.append(Attachment(nad_ns or ns, name, ifname))
    return out


def host_local(nad: Mapping[str, Any]) -> HostLocal | str:
    """The host-local range of a NetworkAttachmentDefinition, or why there is none."""
    raw = (nad.get("spec") or {}).get("config") or ""
    try:
        conf = json.loads(raw) if isinstance(raw, str) else dict(raw)
    except ValueError as e:
        return f"invalid CNI config: {e}"
    if not isinstance(conf, Mapping):
        return "invalid CNI config: not a JSON object"
    plugins = conf.get("plugins")
    for plugin in plugins if isinstance(plugins, list) else [conf]:
        ipam = plugin.get("ipam") if isinstance(plugin, Mapping) else None
        if not isinstance(ipam, Mapping) or ipam.get("type") != "host-local":
            continue
        ranges = ipam.get("ranges")
        # The newer form: ranges: [[{subnet, rangeStart, rangeEnd, gateway}]].
        r: Mapping[str, Any] = ipam
        if isinstance(ranges, list) and ranges and isinstance(ranges[0], list) and ranges[0]:
            r = ranges[0][0]
        try:
            subnet = IPv4Network(str(r.get("subnet", "")), strict=False)
            hosts_first = int(subnet.network_address) + 1
            hosts_last = int(subnet.broadcast_address) - 1
            start = int(IPv4Address(str(r["rangeStart"]))) if r.get("rangeStart") else hosts_first
            end = int(IPv4Address(str(r["rangeEnd"]))) if r.get("rangeEnd") else hosts_last
        except ValueError as e:
            return f"invalid host-local range: {e}"
        gateway = str(r.get("gateway") or IPv4Address(hosts_first))
        return HostLocal(subnet, max(start, hosts_first), min(end, hosts_last), gateway)
    return "no host-local IPAM in the CNI config"


def _mac(seed: str) -> str:
    b = bytearray(hashlib.sha256(seed.encode()).digest()[:6])
    b[0] = (b[0] & 0xFC) | 0x02  # locally administered, unicast
    return ":".join(f"{x:02x}" for x in b)


def _status(pod: Mapping[str, Any]) -> list[Any]:
    text = (meta(pod).get("annotations") or {}).get(STATUS_ANNOTATION)
    try:
        value = json.loads(text) if text else []
    except ValueError:
        return []
    return value if isinstance(value, list) else []


def compute_network_status(snap: Snapshot) -> list[Change]:
    # Addresses already held, per (node, network), from the pods' own status.
    held: dict[tuple[str, str], set[str]] = {}
    todo: list[Doc] = []
    for p in sorted(snap.list("Pod"), key=creation_order):
        if not is_active(p) or not requested_networks(p):
            continue
        known = _status(p)
        if not known:
            if phase(p) == "Running" and pod_ip(p):
                todo.append(p)
            continue
        for e in known:
            if isinstance(e, Mapping) and not e.get("default"):
                for ip in e.get("ips") or ():
                    held.setdefault((node_name(p), str(e.get("name"))), set()).add(str(ip))
    out: list[Change] = []
    for p in todo:
        node = node_name(p)
        pod_key = f"{namespace_of(p)}/{name_of(p)}"
        entries: list[dict[str, Any]] = [
            {
                "name": DEFAULT_NETWORK,
                "interface": "eth0",
                "ips": [pod_ip(p)],
                "default": True,
                "dns": {},
            }
        ]
        for i, att in enumerate(requested_networks(p), start=1):
            ifname = att.interface or f"net{i}"
            entry: dict[str, Any] = {
                "name": att.key,
                "interface": ifname,
                "mac": _mac(f"{node}/{pod_key}/{ifname}"),
                "dns": {},
            }
            nad = snap.find(NAD_KIND, att.namespace, att.name)
            rng = host_local(nad) if nad is not None else f"{NAD_KIND} {att.key} not found"
            if isinstance(rng, str):
                entry["error"] = rng
            else:
                used = held.setdefault((node, att.key), set())
                addr = next(
                    (
                        str(IPv4Address(v))
                        for v in range(rng.start, rng.end + 1)
                        if str(IPv4Address(v)) not in used and str(IPv4Address(v)) != rng.gateway
                    ),
                    "",
                )
                if addr:
                    used.add(addr)
                    entry["ips"] = [addr]
                    entry["gateway"] = [rng.gateway]
                else:
                    entry["error"] = f"host-local: no free address in {rng.subnet} range"
            entries.append(entry)
        annotations = {**(meta(p).get("annotations") or {})}
        annotations[STATUS_ANNOTATION] = json.dumps(entries, indent=4)
        out.append(put({**p, "metadata": {**meta(p), "annotations": annotations}}))
    return out
