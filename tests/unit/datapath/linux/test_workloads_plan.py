"""Pods become process specs: image mapping, downward-API env, resolv.conf, restarts."""

from __future__ import annotations

import sys
from pathlib import Path

from ciliate.datapath.linux.workloads import (
    Supervisor,
    container_argv,
    launch_argv,
    plan_pod,
    resolv_conf_text,
)
from ciliate.model.core import Container, ContainerPort, Pod


def pod_doc(containers: list[dict[str, object]], restart: str = "Always") -> Pod:
    return Pod.from_doc(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web-1", "namespace": "shop", "labels": {"app": "web"}},
            "spec": {"containers": containers, "nodeName": "n1", "restartPolicy": restart},
        }
    )


def test_echoserver_image_runs_the_builtin_echo_server_on_3000() -> None:
    argv = container_argv(
        Container("e", image="gcr.io/k8s-staging-ingressconformance/echoserver:v1")
    )
    assert argv == (sys.executable, "-m", "ciliate.servers.workload", "echo", "--port=3000")


def test_echoserver_uses_its_container_port() -> None:
    c = Container("e", image="echoserver", ports=(ContainerPort(8080),))
    assert container_argv(c)[-1] == "--port=8080"


def test_command_and_args_run_with_host_tools() -> None:
    assert container_argv(Container("b", image="busybox", command=("sleep", "infinity"))) == (
        "sleep",
        "infinity",
    )
    assert container_argv(Container("b", image="alpine", args=("sleep 5",))) == (
        "sh",
        "-c",
        "sleep 5",
    )


def test_http_images_get_builtin_http_servers_on_their_ports() -> None:
    assert container_argv(Container("n", image="nginx:1.25"))[-2:] == (
        "--flavor=nginx",
        "--port=80",
    )
    hello = container_argv(Container("h", image="gcr.io/google-samples/hello-app:1.0"))
    assert hello[-1] == "--port=8080"
    assert container_argv(Container("h", image="httpd", ports=(ContainerPort(8000),)))[-1] == (
        "--port=8000"
    )


def test_unknown_image_listens_on_its_ports_or_sleeps() -> None:
    c = Container("x", image="redis", ports=(ContainerPort(6379), ContainerPort(53, "UDP")))
    assert container_argv(c)[-2:] == ("--tcp=6379", "--udp=53")
    assert container_argv(Container("x", image="redis")) == ("sleep", "infinity")


def test_downward_api_and_literal_env(tmp_path: Path) -> None:
    pod = pod_doc(
        [
            {
                "name": "app",
                "image": "echoserver",
                "env": [
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {
                        "name": "NAMESPACE",
                        "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
                    },
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {
                        "name": "NODE_NAME",
                        "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}},
                    },
                    {
                        "name": "APP",
                        "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}},
                    },
                    {"name": "GREETING", "value": "hi"},
                ],
            }
        ]
    )
    (spec,) = plan_pod(pod, "n1", "10.10.1.5", "abc-p-1", tmp_path)
    assert {
        k: spec.env[k] for k in ("POD_NAME", "NAMESPACE", "POD_IP", "NODE_NAME", "APP", "GREETING")
    } == {
        "POD_NAME": "web-1",
        "NAMESPACE": "shop",
        "POD_IP": "10.10.1.5",
        "NODE_NAME": "n1",
        "APP": "web",
        "GREETING": "hi",
    }
    assert spec.resolv_conf == tmp_path / "resolv.conf"
    assert spec.restart_policy == "Always"


def test_resolv_conf_is_kubelets_cluster_first() -> None:
    assert resolv_conf_text("shop", "10.96.0.10") == (
        "search shop.svc.cluster.local svc.cluster.local cluster.local\n"
        "nameserver 10.96.0.10\n"
        "options ndots:5\n"
    )


def test_launch_enters_the_netns_and_binds_resolv_conf() -> None:
    argv = launch_argv("abc-p-1", Path("/s/resolv.conf"), ("sleep", "1"))
    assert argv[:3] == ["nsenter", "--net=/run/netns/abc-p-1", "--"]
    assert "unshare" in argv and argv[-3:] == ["/s/resolv.conf", "sleep", "1"]
    assert launch_argv("abc-n-x", None, ("ip", "a")) == [
        "nsenter",
        "--net=/run/netns/abc-n-x",
        "--",
        "ip",
        "a",
    ]


def test_supervisor_with_nothing_started_reports_nothing() -> None:
    sup = Supervisor()
    sup.poll()
    assert sup.status() == [] and sup.pids() == []
