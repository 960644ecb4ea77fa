"""cli.applier pieces that do not need a store: the local service-CIDR check and the
location of admission diagnostics raised without a position."""

from __future__ import annotations

from ciliate.cli.applier import _locate, check_service_cidr
from ciliate.errors import Diagnostic
from ciliate.manifest.decode import decode_text
from ciliate.model.cluster import ClusterConfig

SVC = """\
apiVersion: v1
kind: Service
metadata:
  name: fixed
spec:
  clusterIP: %s
  ports:
  - port: 80
"""


def test_cluster_ip_outside_the_service_cidr() -> None:
    config = ClusterConfig(name="c", service_cidr="10.96.0.0/12")
    (d,) = check_service_cidr(decode_text(SVC % "10.0.171.239", "s.yaml").objects, config)
    assert d.render().startswith("s.yaml:6:14: Service default/fixed: spec.clusterIP: ")
    assert "10.96.0.0/12" in d.reason
    for ok in ("10.96.0.10", "None", "''"):
        assert check_service_cidr(decode_text(SVC % ok).objects, config) == []


def test_admission_diagnostics_get_their_position() -> None:
    batch = decode_text(SVC % "10.96.0.10", "s.yaml")
    raw = Diagnostic(
        "taken", kind="Service", namespace="default", name="fixed", path="spec.clusterIP"
    )
    (located,) = _locate([raw], batch)
    assert (located.file, located.line, located.col) == ("s.yaml", 6, 14)
    other = Diagnostic("x", kind="Service", namespace="default", name="other")
    assert _locate([other], batch) == [other]
