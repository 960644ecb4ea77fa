"""``ciliate cluster create|delete|show`` through the entry point."""

from __future__ import annotations

import io
import json

import pytest

from _cli import run_cli
from _paths import example_file
from ciliate.cli.context import Context
from ciliate.cli.main import main

# The shared example, else the copy in the package (_paths).
CLUSTER_YAML = example_file("cluster.yaml")


def test_create_from_the_example_file(tmp_path):
    rc, out, err = run_cli(tmp_path, "cluster", "create", "-f", str(CLUSTER_YAML))
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0] == 'Creating cluster "mycluster" ...'
    assert lines[1] == " ✓ Nodes: mycluster-control-plane, mycluster-worker, mycluster-worker2"
    assert (
        "   mycluster-worker: 172.18.0.2, pods 10.10.2.0/24, CiliumInternalIP 10.10.2.205, health 10.10.2.1"
        in lines
    )


def test_second_create_is_a_conflict(tmp_path):
    assert run_cli(tmp_path, "cluster", "create", "-f", str(CLUSTER_YAML))[0] == 0
    rc, _out, err = run_cli(tmp_path, "cluster", "create", "other")
    assert rc == 3
    assert 'a cluster ("mycluster") already exists' in err


def test_create_kind_style_and_show(tmp_path):
    rc, out, _ = run_cli(tmp_path, "cluster", "create", "lab", "--nodes", "4")
    assert rc == 0
    assert " ✓ Nodes: lab-control-plane, lab-worker, lab-worker2, lab-worker3" in out
    rc, out, _ = run_cli(tmp_path, "cluster", "show", "-o", "json")
    assert rc == 0
    doc = json.loads(out)
    assert doc["cluster"]["name"] == "lab"
    assert [n["internalIP"] for n in doc["nodes"]] == [
        "172.18.0.2",
        "172.18.0.3",
        "172.18.0.4",
        "172.18.0.5",
    ]
    rc, out, _ = run_cli(tmp_path, "cluster", "show")
    assert rc == 0 and out.startswith("cluster:\n  name: lab\n")


def test_default_create_is_three_nodes_named_ciliate(tmp_path):
    rc, out, _ = run_cli(tmp_path, "cluster", "create")
    assert rc == 0
    assert " ✓ Nodes: ciliate-control-plane, ciliate-worker, ciliate-worker2" in out


def test_create_from_stdin(tmp_path):
    rc, _out, err = run_cli(
        tmp_path, "cluster", "create", "-f", "-", stdin=CLUSTER_YAML.read_text()
    )
    assert rc == 0, err


def test_invalid_file_is_refused_with_located_errors(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text(CLUSTER_YAML.read_text().replace("routing: tunnel", "routing: overlay"))
    rc, _out, err = run_cli(tmp_path / "state", "cluster", "create", "-f", str(bad))
    assert rc == 1
    assert f'{bad}:10:12: Cluster: cluster.routing: Unsupported value: "overlay"' in err
    assert "nothing was changed" in err
    rc, _out, err = run_cli(tmp_path / "state", "cluster", "show")
    assert rc == 2


def test_file_and_name_together_are_refused(tmp_path):
    rc, _out, err = run_cli(tmp_path, "cluster", "create", "x", "-f", str(CLUSTER_YAML))
    assert rc == 1 and "either -f FILE or NAME" in err


def test_missing_file(tmp_path):
    rc, _out, err = run_cli(tmp_path, "cluster", "create", "-f", str(tmp_path / "nope.yaml"))
    assert rc == 2 and "cannot read" in err


def test_delete_removes_everything(tmp_path):
    assert run_cli(tmp_path, "cluster", "create", "-f", str(CLUSTER_YAML))[0] == 0
    rc, out, _ = run_cli(tmp_path, "cluster", "delete")
    assert rc == 0
    assert out.splitlines() == [
        'Deleting cluster "mycluster" ...',
        'Deleted nodes: ["mycluster-control-plane", "mycluster-worker", "mycluster-worker2"]',
    ]
    assert not (tmp_path / "store.db").exists()
    rc, _out, err = run_cli(tmp_path, "cluster", "show")
    assert rc == 2 and "no cluster in" in err and "ciliate cluster create" in err
    assert run_cli(tmp_path, "cluster", "create", "-f", str(CLUSTER_YAML))[0] == 0


def test_delete_without_cluster(tmp_path):
    rc, _out, _err = run_cli(tmp_path, "cluster", "delete")
    assert rc == 2


@pytest.mark.parametrize("sub", ["create", "delete", "show"])
def test_help_has_examples(sub, capsys):
    with pytest.raises(SystemExit) as e:
        main(["cluster", sub, "--help"], Context(stdout=io.StringIO()))
    assert e.value.code == 0
    assert "Examples:" in capsys.readouterr().out


def test_create_from_a_kind_file(tmp_path):
    kind = tmp_path / "kind.yaml"
    kind.write_text(
        "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nname: lab\n"
        "nodes:\n- role: control-plane\n- role: worker\n"
        "networking:\n  disableDefaultCNI: true\n"
    )
    rc, out, err = run_cli(tmp_path / "state", "cluster", "create", "-f", str(kind))
    assert rc == 0, err
    assert " ✓ Nodes: lab-control-plane, lab-worker" in out
