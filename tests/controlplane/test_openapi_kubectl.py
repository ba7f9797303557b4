"""Real kubectl 1.32 reading our OpenAPI documents and tables: `explain`, client-side `apply`
(strategic merge patch computed from the v3 schema's merge keys), and server-side strict field
validation (kubectl only sends ?fieldValidation=Strict when the v3 PATCH operation lists it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

from controlplane._master_tls import ensure_serving_cert, new_ca
from controlplane.apiserver import StaticTokenAuthenticator, User, create_app, serve_api
from controlplane.registry import Registry
from raftstore import MemoryStore

TOKEN = "helper-b-openapi-test-token"

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: IMAGE
        env: ENV
"""


class Kubectl:
    def __init__(self, url: str, ca: Path, workdir: Path) -> None:
        self.workdir = workdir
        kubeconfig = workdir / "kubeconfig"
        kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters: [{{name: t, cluster: {{server: '{url}', certificate-authority: '{ca}'}}}}]\n"
            f"users: [{{name: admin, user: {{token: {TOKEN}}}}}]\n"
            "contexts: [{name: t, context: {cluster: t, user: admin, namespace: default}}]\n"
            "current-context: t\n")
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(workdir)}

    async def run(self, *args: str, stdin: str = "") -> tuple[int, str, str]:
        with trio.fail_after(60):
            proc = await trio.run_process(["kubectl", *args], stdin=stdin.encode(), capture_stdout=True,
                                          capture_stderr=True, check=False, env=self.env, cwd=self.workdir)
        return proc.returncode, proc.stdout.decode(), proc.stderr.decode()

    async def ok(self, *args: str, stdin: str = "") -> str:
        code, out, err = await self.run(*args, stdin=stdin)
        assert code == 0, f"kubectl {' '.join(args)} failed: {err}"
        assert "warning" not in err.lower(), err
        return out


@pytest.fixture
async def kubectl(nursery: trio.Nursery, tmp_path: Path) -> Kubectl:
    ca = new_ca("helper-b-test-ca")
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    ensure_serving_cert(ca, "127.0.0.1", tmp_path / "server.crt", tmp_path / "server.key")
    registry = Registry(MemoryStore())
    await registry.ensure_namespaces()
    app = create_app(registry, store=registry.store, info={},
                     authenticator=StaticTokenAuthenticator({TOKEN: User("admin", ("system:masters",), "admin")}))
    urls = await nursery.start(lambda task_status: serve_api(
        app, host="127.0.0.1", port=0, ssl_certfile=str(tmp_path / "server.crt"),
        ssl_keyfile=str(tmp_path / "server.key"), task_status=task_status))
    url = next(u for u in urls if u.startswith("https://"))
    return Kubectl(url, tmp_path / "ca.crt", tmp_path)


@pytest.mark.kubectl
async def test_explain_uses_our_descriptions(kubectl: Kubectl) -> None:
    out = await kubectl.ok("explain", "pod.spec.containers.ports")
    assert "FIELD: ports <[]ContainerPort>" in out
    assert "containerPort\t<integer> -required-" in out
    assert "List of ports to expose from the container" in out
    out = await kubectl.ok("explain", "deployments.spec.strategy.rollingUpdate.maxSurge")
    assert "GROUP:      apps" in out and "The maximum number of pods that can be scheduled above" in out
    out = await kubectl.ok("explain", "lease.spec")
    assert "holderIdentity" in out and "renewTime" in out
    code, _, err = await kubectl.run("explain", "pod.spec.nosuchfield")
    assert code != 0 and 'field "nosuchfield" does not exist' in err


@pytest.mark.kubectl
async def test_apply_computes_strategic_patch_from_v3_merge_keys(kubectl: Kubectl) -> None:
    first = DEPLOYMENT.replace("IMAGE", "nginx:1.25").replace(
        "ENV", '[{name: A, value: "1"}, {name: B, value: "2"}]')
    await kubectl.ok("apply", "-f", "-", stdin=first)
    # Someone else adds a container; apply must keep it (merge by name), drop env A (which the
    # last-applied configuration had) and change the image.
    await kubectl.ok("patch", "deployment", "web", "--type=strategic", "-p",
                     '{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox"}]}}}}')
    second = DEPLOYMENT.replace("IMAGE", "nginx:1.26").replace("ENV", '[{name: B, value: "2"}]')
    code, out, err = await kubectl.run("apply", "-f", "-", "-v=6", stdin=second)
    assert code == 0, err
    assert "error calculating patch from openapi v3 spec" not in err
    assert "/openapi/v3/apis/apps/v1?hash=" in err  # the patch came from our v3 schema
    assert "fieldValidation=Strict" in err
    got = await kubectl.ok("get", "deployment", "web", "-o",
                           "jsonpath={range .spec.template.spec.containers[*]}{.name}={.image} {.env}|{end}")
    assert got == 'web=nginx:1.26 [{"name":"B","value":"2"}]|sidecar=busybox |'


@pytest.mark.kubectl
async def test_strict_field_validation_by_default(kubectl: Kubectl) -> None:
    bad = ("apiVersion: v1\nkind: Pod\nmetadata: {name: typo}\n"
           "spec:\n  containers:\n  - {name: c, image: nginx, imagePullPolicyx: Always}\n")
    code, _, err = await kubectl.run("apply", "-f", "-", stdin=bad)
    assert code != 0
    assert 'strict decoding error: unknown field "spec.containers[0].imagePullPolicyx"' in err
    code, _, err = await kubectl.run("create", "-f", "-", stdin=bad)
    assert code != 0 and "unknown field" in err
    await kubectl.ok("create", "-f", "-", "--validate=false", stdin=bad)
    out = await kubectl.ok("get", "pods")
    assert out.split("\n")[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert out.split("\n")[1].split()[:4] == ["typo", "0/1", "Pending", "0"]
