"""Golden: the networking101 cluster plus a service of each type, reconciled.

Every object the controllers write (nodes, namespaces, ReplicaSets, pods with their
addresses and status, services with their allocations, EndpointSlices), with the
store's server fields removed, compared with golden/networking101.yaml. Rewrite with
``pytest tests/unit/controllers --update-golden`` and review the diff.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

GOLDEN = Path(__file__).parent / "golden" / "networking101.yaml"
SERVER_FIELDS = ("uid", "resourceVersion", "creationTimestamp", "generation")

SERVICES = """
apiVersion: v1
kind: Service
metadata: {name: busybox, namespace: networking101}
spec:
  selector: {app: busybox}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: netshoot-np, namespace: networking101}
spec:
  type: NodePort
  selector: {app: netshoot}
  ports: [{port: 80, nodePort: 31814}]
---
apiVersion: v1
kind: Service
metadata: {name: netshoot-lb, namespace: networking101}
spec:
  type: LoadBalancer
  loadBalancerIP: 172.18.255.200
  externalTrafficPolicy: Local
  selector: {app: netshoot}
  ports: [{port: 443, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: headless, namespace: networking101}
spec:
  clusterIP: None
  selector: {app: busybox}
  ports: [{port: 53, protocol: UDP}]
---
apiVersion: v1
kind: Service
metadata: {name: external, namespace: networking101}
spec:
  type: ExternalName
  externalName: example.com
"""


def _strip(doc: dict[str, Any]) -> dict[str, Any]:
    m = {k: v for k, v in doc["metadata"].items() if k not in SERVER_FIELDS}
    if "ownerReferences" in m:
        m["ownerReferences"] = [
            {k: v for k, v in r.items() if k != "uid"} for r in m["ownerReferences"]
        ]
    out = {**doc, "metadata": m}
    for ep in out.get("endpoints") or ():
        if "targetRef" in ep:
            ep["targetRef"] = {k: v for k, v in ep["targetRef"].items() if k != "uid"}
    return out


def test_networking101_reconciled(networking101, apply, update_golden):
    apply([d for d in yaml.safe_load_all(SERVICES) if d])
    kinds = ("Node", "Namespace", "ReplicaSet", "Pod", "Service", "EndpointSlice")
    docs = [_strip(d) for k in kinds for d in networking101.list(k)]
    text = yaml.safe_dump_all(docs, sort_keys=True, default_flow_style=False)
    if update_golden or not GOLDEN.exists():
        GOLDEN.write_text(text)
    assert GOLDEN.read_text() == text, "golden differs: rerun with --update-golden and review"
