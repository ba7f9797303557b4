"""edgectl's kubectl-like commands against a real 3-master cluster with hollow nodes."""

from __future__ import annotations

import json
import time

import pytest
from conftest_cluster import LocalClusterHandle, start_cluster

pytestmark = pytest.mark.slow

APP = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: edgeplane/demo:latest, ports: [{containerPort: 80}]}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: web-config}
data: {greeting: hello}
"""


@pytest.fixture(scope="module")
def cluster(module_tmp_path):
    with start_cluster(module_tmp_path / "cli", masters=3, nodes=2, hollow=True) as c:
        yield c


def wait_for(check, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


def pods(cluster: LocalClusterHandle, *args: str) -> list[dict]:
    return json.loads(cluster.edgectl("get", "pods", "-o", "json", *args).stdout)["items"]


def test_apply_get_scale_rollout_delete_round_trip(cluster: LocalClusterHandle, tmp_path) -> None:
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "app.yaml").write_text(APP)
    out = cluster.edgectl("apply", "-f", str(folder)).stdout.splitlines()
    assert out == ["deployment.apps/web created", "configmap/web-config created"]
    # Applying again changes nothing; a changed document is configured.
    assert "unchanged" in cluster.edgectl("apply", "-f", str(folder / "app.yaml")).stdout
    changed = APP.replace("greeting: hello", "greeting: bonjour")
    out = cluster.edgectl("apply", "-f", "-", stdin=changed).stdout
    assert "configmap/web-config configured" in out
    cm = json.loads(cluster.edgectl("get", "configmap", "web-config", "-o", "json").stdout)
    assert cm["data"] == {"greeting": "bonjour"}

    rollout = cluster.edgectl("rollout", "status", "deployment/web", "--timeout", "60")
    assert 'deployment "web" successfully rolled out' in rollout.stdout
    table = cluster.edgectl("get", "deployments").stdout
    assert table.splitlines()[0].split()[:2] == ["NAME", "READY"] and "2/2" in table
    wide = cluster.edgectl("get", "pods", "-o", "wide", "-l", "app=web").stdout
    assert "NODE" in wide.splitlines()[0] and (" n1 " in wide or " n2 " in wide)
    names = cluster.edgectl("get", "pods", "-o", "name", "-A").stdout.split()
    assert sum(n.startswith("pod/web-") for n in names) == 2
    as_yaml = cluster.edgectl("get", "deploy", "web", "-o", "yaml").stdout
    assert "kind: Deployment" in as_yaml and "replicas: 2" in as_yaml

    cluster.edgectl("scale", "deployment/web", "--replicas", "3")
    wait_for(lambda: len(pods(cluster, "-l", "app=web")) == 3, "3 web pods")
    described = cluster.edgectl("describe", "deployment", "web").stdout
    assert "Name:         web" in described and "Events:" in described

    cluster.edgectl("delete", "-f", str(folder / "app.yaml"))
    wait_for(lambda: not pods(cluster, "-l", "app=web"), "web pods to be garbage collected")
    gone = cluster.edgectl("get", "configmap", "web-config", check=False)
    assert gone.returncode == 1 and 'configmaps "web-config" not found' in gone.stderr


def test_validation_errors_name_the_field_and_the_rule(cluster: LocalClusterHandle) -> None:
    bad = ("apiVersion: v1\nkind: Pod\nmetadata: {name: ok}\nspec:\n"
           "  containers: [{name: c, image: x, ports: [{containerPort: 70000}]}]\n")
    proc = cluster.edgectl("apply", "-f", "-", stdin=bad, check=False)
    assert proc.returncode == 1
    assert "Error from server (Invalid)" in proc.stderr
    assert "spec.containers[0].ports[0].containerPort" in proc.stderr
    assert "between 1 and 65535" in proc.stderr
    assert "Traceback" not in proc.stderr
    unknown = cluster.edgectl("get", "widgets", check=False)
    assert unknown.returncode == 1 and 'resource type "widgets"' in unknown.stderr


def test_cordon_drain_moves_managed_pods_and_refuses_bare_ones(cluster: LocalClusterHandle) -> None:
    cluster.edgectl("apply", "-f", "-", stdin=APP.split("---")[0].replace("name: web,", "name: drainme,")
                    .replace("replicas: 2", "replicas: 4").replace("app: web", "app: drainme"))
    cluster.edgectl("rollout", "status", "deployment/drainme", "--timeout", "60")
    bare = "apiVersion: v1\nkind: Pod\nmetadata: {name: bare}\nspec:\n  nodeName: n1\n  containers: [{name: c, image: x}]\n"
    cluster.edgectl("apply", "-f", "-", stdin=bare)

    refused = cluster.edgectl("drain", "n1", "--timeout", "30", check=False)
    assert refused.returncode == 1 and "default/bare" in refused.stderr and "--force" in refused.stderr
    nodes = cluster.edgectl("node", "list").stdout
    assert "SchedulingDisabled" in nodes  # drain cordoned it before refusing

    cluster.edgectl("drain", "n1", "--force", "--timeout", "60")
    on_n1 = pods(cluster, "--field-selector", "spec.nodeName=n1")
    assert on_n1 == []
    # The Deployment's pods were replaced on the other node.
    wait_for(lambda: len([p for p in pods(cluster, "-l", "app=drainme")
                          if p["spec"].get("nodeName") == "n2"]) == 4, "4 pods on n2")
    cluster.edgectl("uncordon", "n1")
    assert "SchedulingDisabled" not in cluster.edgectl("node", "list").stdout
    cluster.edgectl("delete", "deployment", "drainme")


def test_cluster_status_reports_nodes_and_duties(cluster: LocalClusterHandle) -> None:
    status = cluster.status()
    assert status["nodes"]["total"] == 2 and status["nodes"]["ready"] == 2
    assert status["leaderDuties"]["holder"] == status["leader"]
    text = cluster.edgectl("cluster", "status").stdout
    assert f"leader: {status['leader']}" in text and "LAG" in text


def test_rollout_undo_returns_to_the_previous_template(cluster: LocalClusterHandle) -> None:
    app = APP.split("---")[0].replace("name: web,", "name: undo,").replace("app: web", "app: undo")
    cluster.edgectl("apply", "-f", "-", stdin=app)
    cluster.edgectl("rollout", "status", "deployment/undo", "--timeout", "60")
    cluster.edgectl("apply", "-f", "-", stdin=app.replace("edgeplane/demo:latest", "edgeplane/demo:v2"))
    cluster.edgectl("rollout", "status", "deployment/undo", "--timeout", "60")

    def image() -> str:
        dep = json.loads(cluster.edgectl("get", "deployment", "undo", "-o", "json").stdout)
        return dep["spec"]["template"]["spec"]["containers"][0]["image"]

    assert image() == "edgeplane/demo:v2"
    out = cluster.edgectl("rollout", "undo", "deployment/undo").stdout
    assert "deployment.apps/undo rolled back" in out
    assert image() == "edgeplane/demo:latest"
    cluster.edgectl("rollout", "status", "deployment/undo", "--timeout", "60")
    wait_for(lambda: {p["spec"]["containers"][0]["image"] for p in pods(cluster, "-l", "app=undo")}
             == {"edgeplane/demo:latest"}, "pods of the old template only")
    cluster.edgectl("delete", "deployment", "undo")


def test_get_watch_prints_changes_and_logs_come_from_the_agent(cluster: LocalClusterHandle) -> None:
    import os
    import subprocess
    import sys

    def read_until(proc: subprocess.Popen, name: str) -> str:
        deadline = time.monotonic() + 30
        line = ""
        while name not in line:
            assert time.monotonic() < deadline, f"the watch never printed {name}"
            line = proc.stdout.readline()
        return line

    cluster.edgectl("apply", "-f", "-",
                    stdin="apiVersion: v1\nkind: ConfigMap\nmetadata: {name: listed-first}\n")
    watcher = subprocess.Popen(
        [sys.executable, "-m", "cli", "get", "configmaps", "-w", "--no-headers"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)},
    )
    try:
        # Once the list is printed, the watch starts from the list's resourceVersion, so a
        # change made after this line is seen however soon it comes.
        read_until(watcher, "listed-first")
        cluster.edgectl("apply", "-f", "-",
                        stdin="apiVersion: v1\nkind: ConfigMap\nmetadata: {name: watched}\n")
        line = read_until(watcher, "watched")
    finally:
        watcher.terminate()
        watcher.wait(timeout=10)
    assert line.split()[0] == "watched"

    bare = ("apiVersion: v1\nkind: Pod\nmetadata: {name: talker}\nspec:\n"
            "  containers: [{name: c, image: x}]\n")
    cluster.edgectl("apply", "-f", "-", stdin=bare)
    wait_for(lambda: pods(cluster, "--field-selector", "metadata.name=talker")[0]
             .get("status", {}).get("phase") == "Running", "talker running")
    described = cluster.edgectl("describe", "pod", "talker").stdout
    assert "State:          Running" in described and "Ready             True" in described
    logs = cluster.edgectl("logs", "talker")
    assert "hollow container" in logs.stdout  # the simulated runtime's log line, via the agent
    cluster.edgectl("delete", "pod", "talker", "--grace-period", "0")


@pytest.mark.kubectl
def test_apply_removes_what_the_previous_apply_set_and_keeps_other_changes(
        cluster: LocalClusterHandle) -> None:
    first = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: three-way, labels: {a: '1', b: '2'}}\ndata: {x: '1', y: '2'}\n"
    second = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: three-way, labels: {a: '1'}}\ndata: {x: '1'}\n"
    cluster.edgectl("apply", "-f", "-", stdin=first)
    # A change made by someone else (not through apply) must survive the next apply.
    cluster.kubectl("patch", "configmap", "three-way", "-p", '{"data": {"z": "kept"}}')
    assert "configured" in cluster.edgectl("apply", "-f", "-", stdin=second).stdout
    cm = json.loads(cluster.edgectl("get", "configmap", "three-way", "-o", "json").stdout)
    assert cm["data"] == {"x": "1", "z": "kept"}
    assert cm["metadata"]["labels"] == {"a": "1"}
    assert "unchanged" in cluster.edgectl("apply", "-f", "-", stdin=second).stdout
