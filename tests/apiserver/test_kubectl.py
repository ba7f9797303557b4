"""Real kubectl v1.32 and the official Python client against the in-process API server (TLS).

kubectl applies a kubeconfig's token only over TLS (clientcmd skips auth info for plain HTTP),
so the server here serves HTTPS with a throwaway CA.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import trio

from .conftest import ADMIN_TOKEN, Api, start_api

SEED = """\
apiVersion: v1
kind: Pod
metadata: {name: my-nginx, labels: {app: nginx}}
spec:
  containers:
  - name: nginx
    image: nginx:1.7.9
    ports: [{containerPort: 80}]
"""

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: {image}
        ports:
        - containerPort: 8080
"""


def deployment_yaml(replicas: int, image: str) -> str:
    return DEPLOYMENT.replace("{replicas}", str(replicas)).replace("{image}", image)


class Kubectl:
    def __init__(self, api: Api, workdir: Path) -> None:
        self.workdir = workdir
        self.kubeconfig = workdir / "kubeconfig"
        self.kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters: [{{name: t, cluster: {{server: '{api.url}', certificate-authority: '{api.ca}'}}}}]\n"
            f"users: [{{name: admin, user: {{token: {ADMIN_TOKEN}}}}}]\n"
            "contexts: [{name: t, context: {cluster: t, user: admin, namespace: default}}]\n"
            "current-context: t\n"
        )
        self.env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "HOME": str(workdir)}

    async def run(self, *args: str, stdin: str | None = None, ok: bool = True) -> trio.CompletedProcess:
        with trio.fail_after(60):
            proc = await trio.run_process(
                ["kubectl", *args], stdin=stdin.encode() if stdin is not None else b"",
                capture_stdout=True, capture_stderr=True, check=False, env=self.env, cwd=self.workdir,
            )
        if ok:
            assert proc.returncode == 0, f"kubectl {' '.join(args)}: {proc.stderr.decode()}"
        return proc

    async def out(self, *args: str, stdin: str | None = None) -> str:
        return (await self.run(*args, stdin=stdin)).stdout.decode()


@pytest.fixture
async def tls_api(nursery: trio.Nursery, tmp_path: Path):
    api = await start_api(nursery, tls_dir=tmp_path)
    yield api
    await api.client.aclose()
    nursery.cancel_scope.cancel()


@pytest.mark.kubectl
async def test_kubectl_operator_workflow(tls_api: Api, tmp_path: Path) -> None:
    k = Kubectl(tls_api, tmp_path)
    (tmp_path / "pod.yaml").write_text(SEED)
    assert "pod/my-nginx created" in await k.out("create", "-f", "pod.yaml")
    table = await k.out("get", "pods")
    header, row = table.splitlines()[:2]
    assert header.split()[:3] == ["NAME", "READY", "STATUS"]
    assert row.split()[:3] == ["my-nginx", "0/1", "Pending"]
    wide = await k.out("get", "pods", "-o", "wide")
    assert "NODE" in wide.splitlines()[0]
    as_yaml = await k.out("get", "pod", "my-nginx", "-o", "yaml")
    assert "image: nginx:1.7.9" in as_yaml and "resourceVersion:" in as_yaml
    as_json = json.loads(await k.out("get", "pod", "my-nginx", "-o", "json"))
    assert as_json["metadata"]["labels"] == {"app": "nginx"}
    assert "pod/my-nginx labeled" in await k.out("label", "pod", "my-nginx", "tier=web")
    assert "tier=web" in await k.out("get", "pods", "--show-labels")
    described = await k.out("describe", "pod", "my-nginx")
    assert "Name:" in described and "my-nginx" in described and "nginx:1.7.9" in described
    patched = await k.out("patch", "pod", "my-nginx", "-p", '{"metadata":{"annotations":{"note":"edited"}}}')
    assert "patched" in patched
    assert (await tls_api.registry.get("pods", "default", "my-nginx"))["metadata"]["annotations"] == {"note": "edited"}
    # `kubectl edit` with a scripted editor: the change goes back as a patch
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/note: edited/note: edited-again/' \"$1\"\n")
    editor.chmod(0o755)
    k.env["KUBE_EDITOR"] = str(editor)
    assert "pod/my-nginx edited" in await k.out("edit", "pod", "my-nginx")
    assert (await tls_api.registry.get("pods", "default", "my-nginx"))["metadata"]["annotations"] == {"note": "edited-again"}
    # `kubectl diff` asks the server for a dry-run patch: nothing is written
    rv = (await tls_api.registry.get("pods", "default", "my-nginx"))["metadata"]["resourceVersion"]
    changed = SEED.replace("app: nginx", "app: nginx2")
    diff = await k.run("diff", "-f", "-", stdin=changed, ok=False)
    assert diff.returncode == 1 and "+    app: nginx2" in diff.stdout.decode(), diff.stderr.decode()
    assert (await tls_api.registry.get("pods", "default", "my-nginx"))["metadata"]["resourceVersion"] == rv
    # unknown fields: kubectl's default (Strict) is a 400, --validate=warn a Warning line
    bogus = SEED.replace("    ports:", "    bogus: 1\n    ports:").replace("my-nginx", "other")
    strict = await k.run("create", "-f", "-", stdin=bogus, ok=False)
    assert 'strict decoding error: unknown field "spec.containers[0].bogus"' in strict.stderr.decode()
    warned = await k.run("create", "-f", "-", "--validate=warn", stdin=bogus)
    assert 'Warning: unknown field "spec.containers[0].bogus"' in warned.stderr.decode()
    # a malformed manifest is rejected with the server's message
    bad = await k.run("create", "-f", "-", stdin=SEED.replace("name: nginx\n", "name: Bad_Name\n"), ok=False)
    assert bad.returncode != 0 and "Invalid value" in bad.stderr.decode()
    assert 'pod "my-nginx" deleted' in await k.out("delete", "pod", "my-nginx")
    gone = await k.run("get", "pod", "my-nginx", ok=False)
    assert 'pods "my-nginx" not found' in gone.stderr.decode()


@pytest.mark.kubectl
async def test_kubectl_apply_twice_scale_and_explain(tls_api: Api, tmp_path: Path) -> None:
    k = Kubectl(tls_api, tmp_path)
    (tmp_path / "seed.yaml").write_text(SEED)
    assert "pod/my-nginx created" in await k.out("apply", "-f", "seed.yaml")
    (tmp_path / "web.yaml").write_text(deployment_yaml(2, "nginx:1.25"))
    assert "deployment.apps/web created" in await k.out("apply", "-f", "web.yaml")
    (tmp_path / "web.yaml").write_text(deployment_yaml(3, "nginx:1.26"))
    assert "deployment.apps/web configured" in await k.out("apply", "-f", "web.yaml")
    web = await tls_api.registry.get("deployments", "default", "web")
    assert web["spec"]["replicas"] == 3
    assert web["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.26"
    assert web["metadata"]["generation"] == 2
    assert "unchanged" in await k.out("apply", "-f", "web.yaml")
    assert "deployment.apps/web scaled" in await k.out("scale", "deployment", "web", "--replicas=5")
    assert (await tls_api.registry.get("deployments", "default", "web"))["spec"]["replicas"] == 5
    deploys = await k.out("get", "deployments")
    assert deploys.split()[:4] == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE"]
    resources = await k.out("api-resources")
    assert {"pods", "deployments", "leases", "nodes"} <= {line.split()[0] for line in resources.splitlines()[1:]}
    explained = await k.out("explain", "pod.spec.containers")
    assert "FIELD: containers" in explained or "RESOURCE: containers" in explained
    assert "image" in explained
    assert 'deployment.apps "web" deleted' in await k.out("delete", "-f", "web.yaml")


@pytest.mark.kubectl
async def test_kubectl_get_watch(tls_api: Api, tmp_path: Path) -> None:
    k = Kubectl(tls_api, tmp_path)
    await k.out("create", "-f", "-", stdin=SEED)
    lines: list[str] = []
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            proc = await nursery.start(lambda task_status: trio.run_process(
                ["kubectl", "get", "pods", "-w", "--request-timeout=0"], env=k.env,
                stdout=-1, stderr=-1, check=False, task_status=task_status))
            buffer = b""
            patched = False
            while len(lines) < 3:
                buffer += await proc.stdout.receive_some()
                *complete, buffer = buffer.split(b"\n")
                lines += [line.decode() for line in complete if line.strip()]
                if len(lines) >= 2 and not patched:
                    patched = True
                    await tls_api.registry.patch("pods", "default", "my-nginx", "merge", {"metadata": {"labels": {"x": "y"}}})
                elif lines and not patched and lines[0].startswith("NAME"):
                    continue
            proc.kill()
    assert lines[0].split()[:3] == ["NAME", "READY", "STATUS"]
    assert all(line.split()[0] == "my-nginx" for line in lines[1:3])


async def test_official_python_client(tls_api: Api) -> None:
    from kubernetes import client, watch

    config = client.Configuration()
    config.host = tls_api.url
    config.ssl_ca_cert = str(tls_api.ca)
    config.api_key = {"authorization": f"Bearer {ADMIN_TOKEN}"}

    def scenario() -> list[str]:
        with client.ApiClient(config) as api_client:
            core = client.CoreV1Api(api_client)
            body = client.V1Pod(
                metadata=client.V1ObjectMeta(name="py-pod", labels={"app": "py"}),
                spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="nginx:1.25")]),
            )
            created = core.create_namespaced_pod("default", body)
            assert created.metadata.uid and created.status.phase == "Pending"
            listed = core.list_namespaced_pod("default", label_selector="app=py")
            assert [p.metadata.name for p in listed.items] == ["py-pod"]
            patched = core.patch_namespaced_pod("py-pod", "default", {"metadata": {"labels": {"extra": "1"}}})
            assert patched.metadata.labels == {"app": "py", "extra": "1"}
            seen = []
            w = watch.Watch()
            for event in w.stream(core.list_namespaced_pod, "default", resource_version=listed.metadata.resource_version,
                                  timeout_seconds=5):
                seen.append(f"{event['type']} {event['object'].metadata.name}")
                break
            w.stop()
            core.delete_namespaced_pod("py-pod", "default")
            try:
                core.read_namespaced_pod("py-pod", "default")
            except client.ApiException as exc:
                assert exc.status == 404
                seen.append("gone")
            return seen

    seen = await trio.to_thread.run_sync(scenario)
    assert seen == ["MODIFIED py-pod", "gone"]


@pytest.mark.kubectl
async def test_kubectl_drain_evicts_and_logs_stream(nursery: trio.Nursery, tmp_path: Path) -> None:
    async def log_proxy(namespace: str, pod: str, params: dict):
        yield f"log of {namespace}/{pod} container={params.get('container', '')}\n".encode()

    api = await start_api(nursery, tls_dir=tmp_path, log_proxy=log_proxy)
    k = Kubectl(api, tmp_path)
    await api.registry.create("nodes", None, {"metadata": {"name": "edge-1"},
                                              "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    for name in ("a", "b"):
        await api.registry.create("pods", "default", {
            "metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}})
        await api.registry.bind("default", name, {"target": {"name": "edge-1"}})
    logs = await k.out("logs", "a", "-c", "c")
    assert logs == "log of default/a container=c\n"
    out = await k.out("drain", "edge-1", "--force", "--grace-period=0", "--timeout=30s")
    assert "node/edge-1 cordoned" in out and "node/edge-1 drained" in out
    assert "pod/a evicted" in out and "pod/b evicted" in out
    node = await api.registry.get("nodes", None, "edge-1")
    assert node["spec"]["unschedulable"] is True
    assert (await api.registry.list("pods", "default"))["items"] == []
    await api.client.aclose()


@pytest.mark.kubectl
async def test_kubectl_generators_send_protobuf(tls_api: Api, tmp_path: Path) -> None:
    """kubectl's typed clients send built-in kinds as application/vnd.kubernetes.protobuf."""
    k = Kubectl(tls_api, tmp_path)
    assert "namespace/team created" in await k.out("create", "namespace", "team")
    assert "configmap/settings created" in await k.out("create", "configmap", "settings", "--from-literal=a=b", "-n", "team")
    assert "deployment.apps/web created" in await k.out(
        "create", "deployment", "web", "--image=nginx:1.25", "--replicas=0", "--port=8080", "-n", "team")
    assert "service/web exposed" in await k.out("expose", "deployment", "web", "--port=80", "--target-port=8080", "-n", "team")
    reg = tls_api.registry
    assert (await reg.get("configmaps", "team", "settings"))["data"] == {"a": "b"}
    web = await reg.get("deployments", "team", "web")
    assert web["spec"]["replicas"] == 0  # an explicit 0 of a pointer field survives
    container = web["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "nginx:1.25" and container["ports"][0]["containerPort"] == 8080
    assert "hostPort" not in container["ports"][0] and "stdin" not in container  # Go zero values dropped
    assert web["spec"]["selector"] == {"matchLabels": {"app": "web"}}
    svc = await reg.get("services", "team", "web")
    assert svc["spec"]["ports"][0]["port"] == 80 and svc["spec"]["ports"][0]["targetPort"] == 8080
    assert svc["spec"]["selector"] == {"app": "web"}


@pytest.mark.kubectl
async def test_kubectl_get_in_chunks_shows_one_consistent_list(
        tls_api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # kubectl get lists in chunks (--chunk-size, 500 by default); Kubernetes serves every chunk at
    # the first chunk's resourceVersion, so writes made while kubectl pages do not show. Here the
    # writes are made when kubectl asks for its second chunk (so the interleaving is certain).
    k = Kubectl(tls_api, tmp_path)
    reg = tls_api.registry
    for i in range(6):
        await reg.create("configmaps", "default", {"metadata": {"name": f"c{i}"}, "data": {"k": "v"}})
    writes: list[Any] = []
    pages: list[str | None] = []
    list_kvs = reg.list_kvs

    async def list_kvs_writing_before_the_second_chunk(*args: Any, **kw: Any) -> Any:
        pages.append(kw.get("continue_token"))
        if kw.get("continue_token") and writes:
            await writes.pop(0)()
        return await list_kvs(*args, **kw)

    monkeypatch.setattr(reg, "list_kvs", list_kvs_writing_before_the_second_chunk)

    async def edit(n: int) -> None:
        await reg.delete("configmaps", "default", f"c{n}")  # a later chunk's: still listed
        await reg.delete("configmaps", "default", "c0")  # in the first chunk already
        await reg.create("configmaps", "default", {"metadata": {"name": f"c{n}5"}, "data": {"k": "v"}})
        await reg.patch("configmaps", "default", f"c{n + 1}", "merge", {"data": {"a": "1", "b": "2"}})
        await reg.create("configmaps", "default", {"metadata": {"name": "c0"}, "data": {}})

    writes.append(lambda: edit(3))
    table = await k.out("get", "configmaps", "--chunk-size=2")
    assert len(pages) == 3 and pages[0] is None and all(pages[1:])  # three chunks, writes before the 2nd
    rows = [line.split()[:2] for line in table.splitlines()[1:]]
    assert rows == [[f"c{i}", "1"] for i in range(6)]  # NAME, DATA: as they were at the first chunk
    # the same with the objects themselves: each at the resourceVersion it had then
    seen = lambda items: [(cm["metadata"]["name"], cm["metadata"]["resourceVersion"], cm.get("data"))  # noqa: E731
                          for cm in items]
    before = await reg.list("configmaps", "default")
    assert [cm[0] for cm in seen(before["items"])] == ["c0", "c1", "c2", "c35", "c4", "c5"]
    writes.append(lambda: edit(4))
    pages.clear()
    as_json = json.loads(await k.out("get", "configmaps", "--chunk-size=2", "-o", "json"))
    assert len(pages) == 3 and not writes
    assert seen(as_json["items"]) == seen(before["items"])
    now = await reg.list("configmaps", "default")
    assert [cm[0] for cm in seen(now["items"])] == ["c0", "c1", "c2", "c35", "c45", "c5"]
