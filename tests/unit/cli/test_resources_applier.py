"""cli.applier pieces that do not need a store: the location of admission diagnostics
raised without a position. (A clusterIP outside the service CIDR, through the whole
apply path: tests/scenarios/test_examples_apply.py, services-fixed-ip.yaml.)"""

from __future__ import annotations

from ciliate.cli.applier import _locate
from ciliate.errors import Diagnostic
from ciliate.manifest.decode import decode_text

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


def test_admission_diagnostics_get_their_position() -> None:
    batch = decode_text(SVC % "10.96.0.10", "s.yaml")
    raw = Diagnostic(
        "taken", kind="Service", namespace="default", name="fixed", path="spec.clusterIP"
    )
    (located,) = _locate([raw], batch)
    assert (located.file, located.line, located.col) == ("s.yaml", 6, 14)
    other = Diagnostic("x", kind="Service", namespace="default", name="other")
    assert _locate([other], batch) == [other]
