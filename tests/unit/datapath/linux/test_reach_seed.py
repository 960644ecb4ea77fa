"""``reach --datapath kernel -f`` seeds its store with the cluster ``reach -f`` builds.

``reach.seed_cluster`` writes the manifests' ephemeral cluster into a state
directory's store before the kernel cluster comes up; no kernel is needed for that
part, so it is checked here: the same objects as ``controllers.ephemeral``, and files
that use a namespace without declaring it are accepted by both paths alike.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from _cli import run_cli
from ciliate.controllers.ephemeral import ephemeral_docs
from ciliate.datapath.linux import reach
from ciliate.manifest.decode import load_paths, with_provenance
from ciliate.store.sqlite import SQLiteStore

# Two pods in a namespace that no document declares, one of them from a Deployment.
MANIFEST = """\
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: team-a, labels: {app: client}}
spec:
  containers: [{name: c, image: busybox}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: team-a}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: c, image: nginx, ports: [{containerPort: 80}]}]
"""


def _key(d: dict[str, Any]) -> tuple[str, str, str]:
    meta = d.get("metadata") or {}
    return (str(d.get("kind")), str(meta.get("namespace") or ""), str(meta.get("name")))


def _stored(state: Path) -> list[dict[str, Any]]:
    store = SQLiteStore(state / "store.db")
    try:
        return list(store.list())
    finally:
        store.close()


def _pods(docs: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """namespace/name -> (node, pod IP) of every pod."""
    out: dict[str, tuple[str, str]] = {}
    for d in docs:
        if d.get("kind") == "Pod":
            ns, name = _key(d)[1:]
            node = str((d.get("spec") or {}).get("nodeName") or "")
            out[f"{ns}/{name}"] = (node, str((d.get("status") or {}).get("podIP") or ""))
    return out


def test_seeded_store_is_the_ephemeral_cluster_with_implied_namespace(tmp_path: Path) -> None:
    f = tmp_path / "app.yaml"
    f.write_text(MANIFEST)
    state = tmp_path / "state"
    reach.seed_cluster(state, [str(f)])
    stored = _stored(state)

    batch = load_paths([str(f)])
    want, _ = ephemeral_docs([with_provenance(o) for o in batch.objects])
    assert sorted(_key(d) for d in stored) == sorted(_key(d) for d in want)
    assert ("Namespace", "", "team-a") in {_key(d) for d in stored}
    pods = _pods(stored)
    assert len(pods) == 3 and all(node and ip for node, ip in pods.values())
    assert pods == _pods(want)


def test_model_reach_and_kernel_seed_see_the_same_pods(tmp_path: Path) -> None:
    f = tmp_path / "app.yaml"
    f.write_text(MANIFEST)
    code, out, err = run_cli(tmp_path / "model", "reach", "-f", str(f), "-o", "json")
    assert code == 0, err
    state = tmp_path / "state"
    reach.seed_cluster(state, [str(f)])
    assert json.loads(out)["pods"] == sorted(_pods(_stored(state)))
