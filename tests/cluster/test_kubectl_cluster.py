"""What an operator runs with kubectl (v1.32) and the official Python client against a 3-master
`edgectl up` cluster, with the leader killed in between (issue 3's acceptance list).

kubectl talks to one master (its context's); after the kill, commands use the context of a
master that is still running, as an operator would.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from conftest_cluster import LocalClusterHandle, start_cluster

pytestmark = [pytest.mark.slow, pytest.mark.kubectl]

SEED_POD = """
apiVersion: v1
kind: Pod
metadata: {name: my-nginx, labels: {app: nginx}}
spec:
  containers:
  - name: nginx
    image: nginx:1.7.9
    ports: [{containerPort: 80}]
"""

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: REPLICAS
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: IMAGE, ports: [{containerPort: 80}]}]
"""


def deployment(replicas: int, image: str) -> str:
    return DEPLOYMENT.replace("REPLICAS", str(replicas)).replace("IMAGE", image)


def test_kubectl_and_python_client_across_a_leader_kill(tmp_path) -> None:
    with start_cluster(tmp_path / "k", masters=3) as cluster:
        kubectl = cluster.kubectl
        # Before the kill: create, get in every format, apply twice (the second a change).
        assert "pod/my-nginx created" in kubectl("create", "-f", "-", stdin=SEED_POD).stdout
        plain = kubectl("get", "pods").stdout.splitlines()
        assert plain[0].split()[:3] == ["NAME", "READY", "STATUS"] and plain[1].startswith("my-nginx")
        assert "NOMINATED NODE" in kubectl("get", "pods", "-o", "wide").stdout
        assert "image: nginx:1.7.9" in kubectl("get", "pod", "my-nginx", "-o", "yaml").stdout
        pod = json.loads(kubectl("get", "pod", "my-nginx", "-o", "json").stdout)
        assert pod["spec"]["containers"][0]["ports"][0]["containerPort"] == 80
        assert "deployment.apps/web created" in kubectl(
            "apply", "-f", "-", stdin=deployment(1, "edgeplane/demo:v1")).stdout
        assert "deployment.apps/web configured" in kubectl(
            "apply", "-f", "-", stdin=deployment(2, "edgeplane/demo:v2")).stdout

        leader = cluster.wait_for_leader()
        cluster.kill(leader)
        survivor = next(m["name"] for m in cluster.masters() if m["name"] != leader)
        ctx = f"edgeplane-{survivor}"
        cluster.wait_for_leader(exclude=leader)

        dep = json.loads(kubectl("get", "deployment", "web", "-o", "json", context=ctx).stdout)
        assert dep["spec"]["replicas"] == 2
        assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "edgeplane/demo:v2"
        assert "scaled" in kubectl("scale", "deployment", "web", "--replicas=3", context=ctx).stdout
        assert "labeled" in kubectl("label", "pod", "my-nginx", "tier=frontend", context=ctx).stdout
        # `kubectl edit` saves through a patch: the same request without the editor.
        kubectl("patch", "deployment", "web", "--type=merge",
                "-p", '{"metadata": {"annotations": {"owner": "site-ops"}}}', context=ctx)
        dep = json.loads(kubectl("get", "deployment", "web", "-o", "json", context=ctx).stdout)
        assert dep["spec"]["replicas"] == 3 and dep["metadata"]["annotations"]["owner"] == "site-ops"
        described = kubectl("describe", "pod", "my-nginx", context=ctx).stdout
        assert "tier=frontend" in described and "nginx:1.7.9" in described

        watch = subprocess.Popen(
            [*_kubectl_argv(cluster, ctx), "get", "pods", "-w", "--output-watch-events"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            _read_until(watch, "my-nginx")  # the initial list; the watch starts from it
            assert 'pod "my-nginx" deleted' in kubectl("delete", "pod", "my-nginx",
                                                        "--grace-period=0", context=ctx).stdout
            _read_until(watch, "DELETED")
        finally:
            watch.terminate()
            watch.wait(timeout=10)

        _python_client(cluster, ctx)


def _kubectl_argv(cluster: LocalClusterHandle, ctx: str) -> list[str]:
    import shutil

    return [shutil.which("kubectl") or "kubectl", "--kubeconfig", str(cluster.kubeconfig),
            "--context", ctx]


def _read_until(proc: subprocess.Popen, text: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    line = ""
    while text not in line:
        assert time.monotonic() < deadline, f"kubectl -w never printed {text!r}"
        line = proc.stdout.readline()
        assert line or proc.poll() is None, f"kubectl -w exited: {proc.stderr.read()}"
    return line


def _python_client(cluster: LocalClusterHandle, ctx: str) -> None:
    """The official client: create, list, watch, patch, delete."""
    from kubernetes import client, config, watch

    api = client.CoreV1Api(config.new_client_from_config(str(cluster.kubeconfig), context=ctx))
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="from-python"), data={"a": "1"})
    created = api.create_namespaced_config_map("default", body)
    listed = api.list_namespaced_config_map("default")
    assert "from-python" in {i.metadata.name for i in listed.items}
    api.patch_namespaced_config_map("from-python", "default", {"data": {"a": "2"}})
    events = []
    for event in watch.Watch().stream(api.list_namespaced_config_map, "default",
                                      resource_version=created.metadata.resource_version,
                                      timeout_seconds=10):
        events.append((event["type"], event["object"].metadata.name, event["object"].data))
        if event["type"] == "MODIFIED":
            break
    assert events[-1] == ("MODIFIED", "from-python", {"a": "2"})
    api.delete_namespaced_config_map("from-python", "default")
    remaining = api.list_namespaced_config_map("default").items
    assert "from-python" not in {i.metadata.name for i in remaining}
