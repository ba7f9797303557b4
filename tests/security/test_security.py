"""Issue 7 on a real cluster: every denial path, join tokens that pin the CA, node credentials
restricted like NodeRestriction, revocation, and secrets that stay out of logs and output.

One 1-master cluster with two hollow nodes (``edgectl up``) serves the module; tests that need
their own processes (a fake master, a joining node, an intruding replica) start them on free
loopback ports.
"""

from __future__ import annotations

import json
import os
import pathlib
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from conftest_cluster import LocalClusterHandle, edgectl, start_cluster

from cli._local import free_ports
from controlplane._master_tls import new_ca
from controlplane._security import ca_hash, log_credential, parse_join_token

pytestmark = pytest.mark.slow

# Waits for a condition (a node registering, a token expiring) on a busy CI host.
WAIT_S = 30.0


def wait_for(what: str, check: Callable[[], Any], timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


class Api:
    """Plain HTTPS requests to the cluster's first master, verified by the cluster CA."""

    def __init__(self, cluster: LocalClusterHandle) -> None:
        self.cluster = cluster
        self.url = cluster.masters()[0]["apiAddress"]
        self.verify = ssl.create_default_context(cafile=str(cluster.dir / "ca.crt"))

    def call(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = kwargs.pop("headers", {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.request(method, self.url + path, headers=headers, verify=self.verify,
                             timeout=20.0, **kwargs)

    def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.call(method, path, self.cluster.token, **kwargs)

    def token(self, *args: str) -> str:
        return self.cluster.edgectl("token", "create", *args).stdout.strip()


@pytest.fixture(scope="module")
def cluster(module_tmp_path: pathlib.Path) -> Iterator[LocalClusterHandle]:
    with start_cluster(module_tmp_path / "c", masters=1, nodes=2, hollow=True,
                       node_prefix="sec") as handle:
        yield handle


@pytest.fixture(scope="module")
def api(cluster: LocalClusterHandle) -> Api:
    return Api(cluster)


def node_token(cluster: LocalClusterHandle, node: str) -> str:
    data = json.loads((cluster.dir / node / "node-credentials.json").read_text())
    assert data["nodeName"] == node
    return str(data["token"])


def _pod(name: str, node: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}}


# ---------------------------------------------------------------- authentication


def test_no_token_and_unknown_tokens_get_401(api: Api) -> None:
    for token in (None, "nonsense", "deadbeef.00112233445566778899aabbccddeeff",
                  api.cluster.token + "x"):
        r = api.call("GET", "/api/v1/namespaces", token)
        assert r.status_code == 401, (token, r.text)
        assert r.json()["reason"] == "Unauthorized"
    r = api.call("GET", "/edgeplane/v1/cluster/status")
    assert r.status_code == 401
    # Health and the CA stay public (a joiner needs the CA before it trusts anything).
    assert api.call("GET", "/healthz").status_code == 200
    cacerts = api.call("GET", "/edgeplane/v1/cacerts")
    assert cacerts.status_code == 200
    assert cacerts.content == (api.cluster.dir / "ca.crt").read_bytes()


def test_expired_token_gets_401(api: Api) -> None:
    token = api.token("--role", "viewer", "--name", "shortlived", "--ttl", "2s")
    created = time.monotonic()
    first = api.call("GET", "/api/v1/namespaces", token)
    if time.monotonic() - created < 1.5:  # only meaningful while it is still valid
        assert first.status_code == 200, first.text
    wait_for("the token to expire",
             lambda: api.call("GET", "/api/v1/namespaces", token).status_code == 401)
    listed = json.loads(api.cluster.edgectl("token", "list", "-o", "json").stdout)
    entry = next(t for t in listed if t["name"] == "shortlived")
    assert entry["expired"] is True


def test_revoked_token_gets_401(api: Api) -> None:
    token = api.token("--role", "viewer", "--name", "bob")
    assert api.call("GET", "/api/v1/namespaces", token).status_code == 200
    token_id = token.split(".")[0]
    out = api.cluster.edgectl("token", "delete", token_id).stdout
    assert f"token {token_id} deleted" in out
    r = api.call("GET", "/api/v1/namespaces", token)
    assert r.status_code == 401
    again = api.cluster.edgectl("token", "delete", token_id, check=False)
    assert again.returncode != 0 and "not found" in again.stderr


def test_token_list_never_shows_secrets(api: Api) -> None:
    join = api.token("--description", "listing")
    viewer = api.token("--role", "viewer", "--name", "carol")
    for output in ("text", "json"):
        listed = api.cluster.edgectl("token", "list", "-o", output).stdout
        for secret in (parse_join_token(join).secret, viewer.split(".")[1]):
            assert secret not in listed
        assert parse_join_token(join).token_id in listed and "carol" in listed


# ---------------------------------------------------------------- viewer and admin tokens


def test_viewer_reads_but_cannot_write(api: Api) -> None:
    viewer = api.token("--role", "viewer", "--name", "alice")
    assert api.call("GET", "/api/v1/nodes", viewer).status_code == 200
    assert api.call("GET", "/api/v1/namespaces/default/pods?watch=1&timeoutSeconds=1",
                    viewer).status_code == 200
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "by-alice"}}
    r = api.call("POST", "/api/v1/namespaces/default/configmaps", viewer, json=cm)
    assert r.status_code == 403, r.text
    assert 'User "alice" cannot create resource "configmaps"' in r.json()["message"]
    assert api.call("DELETE", "/api/v1/nodes/sec1", viewer).status_code == 403
    # The master's own endpoints: reading yes, tokens and membership no.
    assert api.call("GET", "/edgeplane/v1/cluster/status", viewer).status_code == 200
    assert api.call("GET", "/edgeplane/v1/tokens", viewer).status_code == 403
    assert api.call("POST", "/edgeplane/v1/join", viewer).status_code == 403


def test_named_admin_token_may_write(api: Api) -> None:
    admin = api.token("--role", "admin", "--name", "dave")
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "by-dave"}}
    r = api.call("POST", "/api/v1/namespaces/default/configmaps", admin, json=cm)
    assert r.status_code == 201, r.text
    assert api.call("DELETE", "/api/v1/namespaces/default/configmaps/by-dave", admin).status_code == 200


def test_named_tokens_need_a_name_and_a_valid_ttl(api: Api) -> None:
    r = api.cluster.edgectl("token", "create", "--role", "viewer", check=False)
    assert r.returncode != 0 and "--name is required" in r.stderr
    r = api.cluster.edgectl("token", "create", "--ttl", "soon", check=False)
    assert r.returncode != 0 and "invalid duration" in r.stderr and "Traceback" not in r.stderr


# ---------------------------------------------------------------- node credentials


def test_nodes_got_their_own_credentials(api: Api) -> None:
    cluster = api.cluster
    for node in ("sec1", "sec2"):
        path = cluster.dir / node / "node-credentials.json"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        token = node_token(cluster, node)
        assert token != cluster.token
        assert token not in (cluster.dir / "node-join-token").read_text()
    listed = json.loads(cluster.edgectl("token", "list", "-o", "json").stdout)
    creds = {t["name"] for t in listed if t["kind"] == "auth" and t["role"] == "node"}
    assert {"sec1", "sec2"} <= creds
    # The agents' processes were never given the admin token.
    for record in cluster.processes():
        if record["role"] == "node":
            assert cluster.token not in " ".join(record["argv"])
            assert "admin-token" not in " ".join(record["argv"])


def test_node_may_update_only_its_own_node_and_lease(api: Api) -> None:
    n1 = node_token(api.cluster, "sec1")
    own = api.call("GET", "/api/v1/nodes/sec1", n1)
    assert own.status_code == 200
    put = api.call("PUT", "/api/v1/nodes/sec1/status", n1, json=own.json())
    assert put.status_code == 200, put.text
    other = api.call("GET", "/api/v1/nodes/sec2", n1).json()
    r = api.call("PUT", "/api/v1/nodes/sec2/status", n1, json=other)
    assert r.status_code == 403
    assert r.json()["message"] == 'nodes "sec2" is forbidden: node "sec1" can only update its own Node'
    r = api.call("PATCH", "/api/v1/nodes/sec2", n1, json={"metadata": {"labels": {"x": "y"}}},
                 headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 403
    r = api.call("DELETE", "/api/v1/nodes/sec2", n1)
    assert r.status_code == 403
    lease = api.call("GET", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/sec2", n1)
    assert lease.status_code == 200
    r = api.call("PUT", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/sec2", n1,
                 json=lease.json())
    assert r.status_code == 403 and "can only update its own Lease" in r.json()["message"]
    mine = api.call("GET", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/sec1", n1)
    r = api.call("PUT", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/sec1", n1,
                 json=mine.json())
    assert r.status_code in (200, 409), r.text  # 409: the agent renewed it in between


def test_node_may_write_status_only_of_its_own_pods(api: Api) -> None:
    n1 = node_token(api.cluster, "sec1")
    for name, node in (("on-sec1", "sec1"), ("on-sec2", "sec2")):
        r = api.admin("POST", "/api/v1/namespaces/default/pods", json=_pod(name, node))
        assert r.status_code == 201, r.text
    patch = {"status": {"message": "written by sec1"}}
    headers = {"Content-Type": "application/merge-patch+json"}
    r = api.call("PATCH", "/api/v1/namespaces/default/pods/on-sec2/status", n1, json=patch,
                 headers=headers)
    assert r.status_code == 403, r.text
    assert r.json()["message"].startswith(
        'pods "on-sec2" is forbidden: node "sec1" can only update pod status for pods with '
        "spec.nodeName set to itself")
    pod = api.call("GET", "/api/v1/namespaces/default/pods/on-sec2", n1).json()
    assert api.call("PUT", "/api/v1/namespaces/default/pods/on-sec2/status", n1,
                    json=pod).status_code == 403
    assert api.call("DELETE", "/api/v1/namespaces/default/pods/on-sec2", n1).status_code == 403
    # Its own pod: the status write works; the spec is still off limits.
    r = api.call("PATCH", "/api/v1/namespaces/default/pods/on-sec1/status", n1, json=patch,
                 headers=headers)
    assert r.status_code == 200, r.text
    r = api.call("PATCH", "/api/v1/namespaces/default/pods/on-sec1", n1,
                 json={"metadata": {"labels": {"a": "b"}}}, headers=headers)
    assert r.status_code == 403
    for name in ("on-sec1", "on-sec2"):
        api.admin("DELETE", f"/api/v1/namespaces/default/pods/{name}?gracePeriodSeconds=0")


def test_node_cannot_create_pods_or_touch_other_resources(api: Api) -> None:
    n1 = node_token(api.cluster, "sec1")
    r = api.call("POST", "/api/v1/namespaces/default/pods", n1, json=_pod("sneaky", "sec1"))
    assert r.status_code == 403, r.text
    assert r.json()["message"] == 'pods is forbidden: node "sec1" may not create pods'
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "from-node"}}
    assert api.call("POST", "/api/v1/namespaces/default/configmaps", n1, json=cm).status_code == 403
    assert api.call("GET", "/apis/apps/v1/deployments", n1).status_code == 403
    assert api.call("POST", "/api/v1/namespaces", n1,
                    json={"metadata": {"name": "x"}}).status_code == 403
    # What an agent and its proxy need to read, it may.
    for path in ("/api/v1/pods?fieldSelector=spec.nodeName%3Dsec1", "/api/v1/services",
                 "/api/v1/endpoints", "/api/v1/nodes", "/api/v1/configmaps"):
        assert api.call("GET", path, n1).status_code == 200, path
    # Not the master's endpoints (tokens, status, membership).
    assert api.call("GET", "/edgeplane/v1/tokens", n1).status_code == 403
    assert api.call("GET", "/edgeplane/v1/cluster/status", n1).status_code == 403


def test_agent_log_endpoint_refuses_api_credentials(api: Api) -> None:
    node = api.admin("GET", "/api/v1/nodes/sec1").json()
    address = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
    port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
    url = f"http://{address}:{port}/containerLogs/default/p/c"
    for token in (api.cluster.token, node_token(api.cluster, "sec1"), None):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        r = httpx.get(url, headers=headers, timeout=10)
        assert r.status_code == 401, (token, r.text)
    # What the masters send (derived from the cluster secret) gets past the door: the pod is
    # simply not on this node.
    secret = (api.cluster.dir / "secret").read_text().strip()
    r = httpx.get(url, headers={"Authorization": f"Bearer {log_credential(secret, 'sec1')}"},
                  timeout=10)
    assert r.status_code == 404, r.text
    # ... and only sec1's: sec2's credential does not open sec1's endpoint.
    r = httpx.get(url, headers={"Authorization": f"Bearer {log_credential(secret, 'sec2')}"},
                  timeout=10)
    assert r.status_code == 401


# ---------------------------------------------------------------- join tokens


def test_join_token_pins_the_cluster_ca(api: Api) -> None:
    token = api.token()
    parsed = parse_join_token(token)
    assert token.startswith("K10") and parsed.ca_hash == ca_hash((api.cluster.dir / "ca.crt").read_bytes())
    assert len(parsed.secret) * 4 >= 128  # hex digits: at least 128 bits


class _FakeMaster:
    """A TLS server that records every byte it receives, and serves ``ca_pem`` as its CA."""

    def __init__(self, ca_pem: bytes, directory: pathlib.Path) -> None:
        fake_ca = new_ca("not-the-cluster-ca")
        cert_pem, key_pem = fake_ca.issue_server("127.0.0.1")
        self.files = []
        for suffix, data in (("crt", cert_pem), ("key", key_pem)):
            path = directory / f"fake-master.{suffix}"
            path.write_bytes(data)
            self.files.append(path)
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(str(self.files[0]), str(self.files[1]))
        self.ca_pem = ca_pem
        self.received = bytearray()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"https://127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            try:
                conn = self.context.wrap_socket(raw, server_side=True)
            except (ssl.SSLError, OSError):
                raw.close()
                continue  # the client refused our certificate: nothing was sent
            try:
                conn.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                self.received += data
                body = self.ca_pem if b"/edgeplane/v1/cacerts" in data else b"{}"
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                             % len(body) + body)
            except OSError:
                pass
            finally:
                conn.close()

    def close(self) -> None:
        self.sock.close()
        for path in self.files:
            path.unlink(missing_ok=True)


def _node_join(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return edgectl("node", "join", *args, check=False, timeout=timeout)


@pytest.mark.parametrize("serves", ["its own CA", "the cluster's CA (stolen certificate)"])
def test_wrong_ca_is_refused_before_the_secret_is_sent(api: Api, tmp_path: pathlib.Path,
                                                       serves: str) -> None:
    token = api.token("--ttl", "10m")
    secret = parse_join_token(token).secret
    real_ca = (api.cluster.dir / "ca.crt").read_bytes()
    fake = _FakeMaster(new_ca("mitm").cert_pem if serves == "its own CA" else real_ca, tmp_path)
    try:
        r = _node_join("--name", "victim", "--data-dir", str(tmp_path / "victim"), "--hollow",
                       "--server", fake.url, "--token", token)
    finally:
        fake.close()
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    if serves == "its own CA":
        assert "refusing to join" in r.stderr and "The token's secret was not sent" in r.stderr
    else:
        assert "CERTIFICATE_VERIFY_FAILED" in r.stderr or "certificate verify failed" in r.stderr
    assert b"GET /edgeplane/v1/cacerts" in fake.received
    assert secret.encode() not in fake.received
    assert parse_join_token(token).token_id.encode() not in fake.received
    assert b"authorization" not in fake.received.lower()
    assert not (tmp_path / "victim" / "node-credentials.json").exists()


def test_node_joins_with_a_join_token_once_then_uses_its_own_credential(
        api: Api, tmp_path: pathlib.Path) -> None:
    token = api.token("--ttl", "10m")
    data_dir = tmp_path / "sec9"
    argv = [sys.executable, "-m", "cli", "node", "join", "--name", "sec9", "--data-dir", str(data_dir),
            "--hollow", "--address", "127.0.0.1", "--log-port", "0", "--server", api.url,
            "--token", token]
    log_path = tmp_path / "sec9.log"

    def run() -> subprocess.Popen[bytes]:
        with open(log_path, "ab") as log:
            return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)

    def lease_renewed_after(when: str) -> bool:
        r = api.admin("GET", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/sec9")
        return r.status_code == 200 and r.json()["spec"].get("renewTime", "") > when

    proc = run()
    try:
        wait_for("sec9 to register", lambda: api.admin("GET", "/api/v1/nodes/sec9").status_code == 200)
        assert stat.S_IMODE((data_dir / "node-credentials.json").stat().st_mode) == 0o600
        proc.terminate()
        proc.wait(timeout=20)
        # The join token is revoked: a restart must not need it.
        api.cluster.edgectl("token", "delete", parse_join_token(token).token_id)
        since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        proc = run()
        wait_for("sec9 to renew its Lease after the restart", lambda: lease_renewed_after(since))
        assert proc.poll() is None
        # Revoking the node: its credential is refused from then on.
        out = api.cluster.edgectl("node", "revoke", "sec9").stdout
        assert "revoked" in out
        creds = json.loads((data_dir / "node-credentials.json").read_text())
        assert api.call("GET", "/api/v1/nodes/sec9", creds["token"]).status_code == 401
        wait_for("the agent to log 401s", lambda: "401" in log_path.read_text())
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        api.admin("DELETE", "/api/v1/nodes/sec9")
    assert "Traceback" not in log_path.read_text()


def test_expired_and_deleted_join_tokens_are_refused(api: Api, tmp_path: pathlib.Path) -> None:
    expired = api.token("--ttl", "1s")
    time.sleep(1.5)  # the token's whole lifetime; nothing to poll for
    r = _node_join("--name", "late", "--data-dir", str(tmp_path / "late"), "--hollow",
                   "--server", api.url, "--token", expired)
    assert r.returncode != 0 and "401" in r.stderr and "expired" in r.stderr
    deleted = api.token()
    api.cluster.edgectl("token", "delete", parse_join_token(deleted).token_id)
    r = _node_join("--name", "late", "--data-dir", str(tmp_path / "late2"), "--hollow",
                   "--server", api.url, "--token", deleted)
    assert r.returncode != 0 and "401" in r.stderr
    # A join token is not an API credential.
    assert api.call("GET", "/api/v1/nodes", parse_join_token(api.token()).bearer).status_code == 401


def test_node_token_cannot_join_a_master(api: Api, tmp_path: pathlib.Path) -> None:
    token = api.token()
    raft_port, api_port = free_ports(2)
    r = edgectl("master", "join", "--server", api.url, "--token", token, "--name", "m9",
                "--data-dir", str(tmp_path / "m9"), "--raft-addr", f"127.0.0.1:{raft_port}",
                "--api-addr", f"127.0.0.1:{api_port}", check=False, timeout=30)
    assert r.returncode != 0
    assert "403" in r.stderr and "a node join token cannot join a master" in r.stderr
    assert not (tmp_path / "m9" / "secret").exists()
    # The same through the API: 403 with a Status.
    r = api.call("POST", "/edgeplane/v1/join", parse_join_token(token).bearer)
    assert r.status_code == 403 and r.json()["reason"] == "Forbidden"
    # And a master token cannot join a node.
    master_token = parse_join_token(api.token("--role", "master", "--ttl", "5m"))
    r = api.call("POST", "/edgeplane/v1/nodes/join", master_token.bearer, json={"nodeName": "x"})
    assert r.status_code == 403


# ---------------------------------------------------------------- transport


def test_plain_http_to_the_tls_port_gets_a_clear_error(api: Api) -> None:
    plain = api.url.replace("https://", "http://")
    r = httpx.get(plain + "/version", timeout=10)
    assert r.status_code == 400
    assert "Client sent an HTTP request to an HTTPS server" in r.text
    # edgectl with an http:// server says so too, and the master still serves HTTPS.
    kubeconfig = (api.cluster.dir / "kubeconfig").read_text().replace("https://", "http://")
    path = api.cluster.dir / "plain-kubeconfig"
    path.write_text(kubeconfig)
    out = edgectl("get", "nodes", env={"KUBECONFIG": str(path)}, check=False)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "Client sent an HTTP request to an HTTPS server" in out.stderr
    assert api.admin("GET", "/version").status_code == 200


def test_insecure_http_is_refused_off_loopback(tmp_path: pathlib.Path) -> None:
    raft_port, api_port = free_ports(2)
    r = edgectl("master", "init", "--name", "m1", "--data-dir", str(tmp_path / "m"),
                "--raft-addr", f"127.0.0.1:{raft_port}", "--api-addr", f"0.0.0.0:{api_port}",
                "--insecure-http", check=False, timeout=30)
    assert r.returncode != 0
    assert "--insecure-http" in r.stderr and "loopback" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.kubectl
def test_kubectl_works_over_https_with_the_kubeconfig_from_up(api: Api) -> None:
    out = api.cluster.kubectl("get", "nodes", "-o", "name").stdout.split()
    assert {"node/sec1", "node/sec2"} <= set(out)
    config = api.cluster.kubectl("config", "view", "--raw", "-o", "json").stdout
    assert "https://" in config and "certificate-authority-data" in config
    # A viewer token through kubectl: reads work, writes are Forbidden.
    viewer = api.token("--role", "viewer", "--name", "kubectl-viewer")
    assert "node/sec1" in api.cluster.kubectl("--token", viewer, "get", "nodes", "-o", "name").stdout
    denied = api.cluster.kubectl("--token", viewer, "create", "configmap", "v", check=False)
    assert denied.returncode != 0 and "forbidden: User \"kubectl-viewer\" cannot create" in denied.stderr


def test_wrong_cluster_secret_cannot_join_the_raft_group(api: Api, tmp_path: pathlib.Path) -> None:
    cluster = api.cluster
    m1 = cluster.masters()[0]
    raft_port, api_port = free_ports(2)
    wrong = tmp_path / "secret"
    wrong.write_text("f" * 64 + "\n")
    os.chmod(wrong, 0o600)
    intruder_api = f"https://127.0.0.1:{api_port}"
    argv = [sys.executable, "-m", "cli", "master", "start", "--name", "intruder",
            "--data-dir", str(tmp_path / "intruder"), "--raft-addr", f"127.0.0.1:{raft_port}",
            "--api-addr", f"127.0.0.1:{api_port}", "--peer", m1["raftAddress"],
            "--secret-file", str(wrong), "--admin-token-file", str(cluster.dir / "admin-token"),
            "--ca-cert-file", str(cluster.dir / "ca.crt"), "--ca-key-file", str(cluster.dir / "ca.key")]
    log_path = tmp_path / "intruder.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        def intruder_answers() -> bool:
            try:
                return httpx.get(intruder_api + "/healthz", verify=api.verify, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for("the intruder's API", intruder_answers)
        cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "injected"}}
        try:
            r = httpx.post(intruder_api + "/api/v1/namespaces/default/configmaps", json=cm,
                           headers={"Authorization": f"Bearer {cluster.token}"}, verify=api.verify,
                           timeout=15)
            assert r.status_code >= 500, r.text
        except httpx.TimeoutException:
            pass  # no leader ever answers the intruder: also a refusal
        status = cluster.status()
        assert [m["name"] for m in status["members"]] == ["m1"]
        assert status["isLeader"] and status["leader"] == "m1"
        assert api.admin("GET", "/api/v1/namespaces/default/configmaps/injected").status_code == 404
        assert api.admin("POST", "/api/v1/namespaces/default/configmaps",
                         json={"metadata": {"name": "still-writable"}}).status_code == 201
    finally:
        proc.terminate()
        proc.wait(timeout=20)


# ---------------------------------------------------------------- secrets at rest and in output


def test_secret_files_are_private(api: Api) -> None:
    d = api.cluster.dir
    for path in [d / "secret", d / "admin-token", d / "ca.key", d / "node-join-token",
                 d / "m1" / "secret", d / "m1" / "admin-token", d / "m1" / "ca.key",
                 d / "m1" / "tls.key", d / "sec1" / "node-credentials.json"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_secrets_never_appear_in_logs_or_output(api: Api) -> None:
    cluster = api.cluster
    viewer = api.token("--role", "viewer", "--name", "erin")
    join = api.token()
    api.call("GET", "/api/v1/nodes", viewer)
    api.call("GET", "/api/v1/nodes", viewer[:-1] + "0")  # a near miss, logged or not
    api.call("POST", "/edgeplane/v1/nodes/join", parse_join_token(join).bearer, json={"nodeName": "BAD name"})
    secrets = {
        "cluster secret": (cluster.dir / "secret").read_text().strip(),
        "admin token": cluster.token,
        "viewer secret": viewer.split(".")[1],
        "join secret": parse_join_token(join).secret,
        "node-join-token secret": parse_join_token((cluster.dir / "node-join-token").read_text()).secret,
        "node credential": node_token(cluster, "sec1").split(".")[1],
        "CA key": (cluster.dir / "ca.key").read_text().splitlines()[1],
    }
    outputs = {
        "cluster status": cluster.edgectl("cluster", "status", "-o", "json").stdout,
        "get nodes -o yaml": cluster.edgectl("get", "nodes", "-o", "yaml").stdout,
        "get all namespaces": cluster.edgectl("get", "configmaps,leases", "-A", "-o", "yaml").stdout,
        "token list": cluster.edgectl("token", "list", "-o", "json").stdout,
        "members": api.admin("GET", "/edgeplane/v1/members").text,
    }
    for record in cluster.processes():
        outputs[f"log of {record['name']}"] = pathlib.Path(record["log"]).read_text()
    for where, text in outputs.items():
        for what, value in secrets.items():
            assert value not in text, f"the {what} appears in {where}"

