"""Golden policy-map dumps: manifests in, each endpoint's compiled map out (direction,
peer identity and its labels, port, verdict, proxy port, and the rule that made the
entry), as ``cilium-dbg bpf policy get`` shows them plus ciliate's provenance.
``--update-golden`` rewrites the files in ``golden/``."""

from __future__ import annotations

from pathlib import Path

import pytest

from ciliate.cli.cmd_policy import ephemeral_docs, load_manifests
from ciliate.cli.context import Context
from ciliate.control.l7 import describe
from ciliate.control.mapstate import format_key
from ciliate.control.policy import compute_policy
from ciliate.control.reach import build_view

# Copies of ../shared/examples/{network-policy,ebook}, so the suite runs from a clone.
EXAMPLES = Path(__file__).resolve().parent / "examples"
NP = EXAMPLES / "network-policy"
HERE = Path(__file__).parent
GOLDEN = HERE / "golden"

CASES = {
    "maps-network-policy": [
        NP / "apps.yaml",
        NP / "ingress-backend-rule.yaml",
        NP / "egress-frontend-rule.yaml",
    ],
    "maps-http-aware-rule": [HERE / "frontends.yaml", NP / "http-aware-rule.yaml"],
    "maps-ebook-three-tier": [EXAMPLES / "ebook" / "three-tier-policies.yaml"],
}


def dump(files: list[Path]) -> str:
    ctx = Context(state_dir=Path("/nonexistent-ciliate-state"))
    docs, cfg = ephemeral_docs(load_manifests([str(f) for f in files], ctx))
    view = build_view(cfg, docs)
    res = compute_policy(view.inputs())
    labels = {
        i: ",".join(
            x
            for x in ident.labels
            if "namespace.labels" not in x
            and "serviceaccount" not in x
            and "policy.cluster" not in x
        )
        for i, ident in view.identities.items()
    }
    for net, ident in res.cidr_identities.items():
        labels[ident.id] = f"cidr:{net}"
    seen: set[int] = set()
    out: list[str] = []
    for pod in sorted(res.endpoints):
        ep = res.endpoints[pod]
        if id(ep.map) in seen:
            continue  # one map per identity group: pods of a Deployment share it
        seen.add(id(ep.map))
        ident = view.pod_identity[pod]
        out.append(
            f"# {labels[ident]}  (ingress {'enforced' if ep.ingress_enforced else 'open'}"
            f", egress {'enforced' if ep.egress_enforced else 'open'})"
        )
        for k, e in sorted(
            ep.map.items(),
            key=lambda kv: (kv[0].egress, labels.get(kv[0].identity, str(kv[0].identity)), kv[0]),
        ):
            peer = "ANY" if k.identity == 0 else labels.get(k.identity, str(k.identity))
            verdict = "deny" if e.deny else "allow"
            prov = "; ".join(
                f"{p.kind} {p.namespace + '/' if p.namespace else ''}{p.name} {p.rule}".strip()
                + (f" ({Path(p.file).name}:{p.line})" if p.file else "")
                for p in e.provenance
            )
            l7 = f"  l7=[{', '.join(describe(r) for r in e.l7_rules)}]" if e.l7_rules else ""
            out.append(
                f"{'Egress ' if k.egress else 'Ingress'}  {peer}  {format_key(k)}  "
                f"{verdict}  proxy={e.proxy_port}{l7}  {prov}"
            )
        out.append("")
    return "\n".join(out)


@pytest.mark.skipif(not NP.exists(), reason=f"examples not found at {NP}")
@pytest.mark.parametrize("name", sorted(CASES))
def test_map_dump(name: str, update_golden: bool) -> None:
    text = dump(CASES[name])
    path = GOLDEN / f"{name}.txt"
    if update_golden or not path.exists():
        path.write_text(text)
    assert text == path.read_text(), f"golden {path} differs (run with --update-golden)"
