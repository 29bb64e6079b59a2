"""The local control plane itself: real scheduling on kwok nodes, CRDs, Prometheus, cleanup."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from kubernetes import client
from prometheus_api_client import PrometheusConnect

from localcluster import ClusterInfo
from localcluster.exporter import set_values
from localcluster.processes import _alive
from support.waiting import wait_for


def test_deployment_replicas_become_ready_on_kwok_nodes(api_client, namespace):
    apps = client.AppsV1Api(api_client)
    labels = {"app": "web"}
    apps.create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "web", "image": "fake"}]},
                },
            },
        },
    )
    wait_for(
        lambda: (apps.read_namespaced_deployment("web", namespace).status.ready_replicas or 0) == 3,
        timeout=60,
        what="3/3 replicas Ready",
    )
    pods = (
        client.CoreV1Api(api_client).list_namespaced_pod(namespace, label_selector="app=web").items
    )
    assert len(pods) == 3
    assert all(p.status.phase == "Running" for p in pods)
    assert all(p.spec.node_name.startswith("kwok-node-") for p in pods)


def test_crd_from_crds_dir_is_served_and_an_object_round_trips(
    api_client, crd_installed, namespace
):
    from support.factories import spec_dict

    custom = client.CustomObjectsApi(api_client)
    spec = spec_dict()
    body = {
        "apiVersion": "aigate.dev/v1alpha1",
        "kind": "AIDeployment",
        "metadata": {"name": "roundtrip"},
        "spec": spec,
    }
    created = custom.create_namespaced_custom_object(
        "aigate.dev", "v1alpha1", namespace, "aideployments", body
    )
    fetched = custom.get_namespaced_custom_object(
        "aigate.dev", "v1alpha1", namespace, "aideployments", "roundtrip"
    )
    assert fetched["spec"] == spec == created["spec"]
    # status is a subresource: writing it leaves the spec and generation alone
    custom.patch_namespaced_custom_object_status(
        "aigate.dev",
        "v1alpha1",
        namespace,
        "aideployments",
        "roundtrip",
        {"status": {"phase": "Pending", "revision": "abc"}},
    )
    after = custom.get_namespaced_custom_object(
        "aigate.dev", "v1alpha1", namespace, "aideployments", "roundtrip"
    )
    assert after["status"]["revision"] == "abc"
    assert after["metadata"]["generation"] == fetched["metadata"]["generation"]
    assert after["spec"] == spec


def test_exporter_value_is_read_back_through_prometheus_api_client(cluster):
    marker = uuid.uuid4().hex[:8]
    set_values(
        cluster.info.exporter_url,
        {"name": "model_error_rate", "labels": {"run": marker}, "value": 0.125},
    )
    prometheus = PrometheusConnect(url=cluster.info.prometheus_url, disable_ssl=True)

    def value():
        result = prometheus.custom_query(f'model_error_rate{{run="{marker}"}}')
        return result and float(result[0]["value"][1])

    assert wait_for(value, timeout=60, what="the exporter's value in Prometheus") == 0.125
    set_values(
        cluster.info.exporter_url,
        {"name": "model_error_rate", "labels": {"run": marker}, "value": 0.5},
    )
    assert wait_for(lambda: value() == 0.5 and 0.5, timeout=30, what="the new value") == 0.5


def test_cluster_up_and_down_leave_no_process_behind(tmp_path):
    state_dir = tmp_path / "standalone"
    hack = str(Path(__file__).resolve().parents[2] / "hack")
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [hack, os.environ.get("PYTHONPATH")]))
    )
    command = [sys.executable, "-m", "localcluster"]
    up = subprocess.run(
        [*command, "up", f"--state-dir={state_dir}", "--nodes=1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert up.returncode == 0, up.stderr
    assert f"export KUBECONFIG={state_dir}/kubeconfig" in up.stdout
    info = ClusterInfo.load(state_dir)
    supervisor = int((state_dir / "supervisor.pid").read_text())
    pids = [supervisor, *info.pids.values()]
    assert set(info.pids) >= {
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
        "prometheus",
        "exporter",
    }
    assert all(_alive(pid) for pid in pids)

    down = subprocess.run(
        [*command, "down", f"--state-dir={state_dir}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert down.returncode == 0, down.stderr
    assert "forced" not in down.stderr  # every component stopped on SIGTERM
    assert [pid for pid in pids if _alive(pid)] == []
