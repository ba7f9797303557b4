"""netproxy end to end (issue 6): a real 3-master, 2-node cluster (`edgectl up`), busybox httpd
pods in Docker behind a Service, and real traffic to its VIP through the node agents' proxies.

Both data-plane modes run where they can: userspace everywhere, nftables as root. The offline
demo image (`edgectl image build-demo`) serves a page naming the pod, which is how a request is
traced to its pod.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import pathlib
import random
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from conftest_cluster import (  # noqa: E402
    UP_TIMEOUT_S,
    LocalClusterHandle,
    edgectl,
    module_tmp_path,  # noqa: F401 - fixture
)

pytestmark = [pytest.mark.slow, pytest.mark.docker]

# What the scheduler, the agents and the endpoints controller need to bring 3 pods to Ready
# (image already present: imagePullPolicy IfNotPresent with the offline demo image).
READY_TIMEOUT_S = 60.0
# Endpoints changes reach the data plane within 200 ms (issue 6); with the watch, the endpoints
# controller and a kubectl round trip on a busy CI host, a few seconds is the honest bound.
CONVERGE_TIMEOUT_S = 15.0
# A request to a VIP on this machine answers in milliseconds; a stuck one is a failure.
REQUEST_TIMEOUT_S = 2.0

APP = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
        - name: httpd
          image: edgeplane/demo:latest
          imagePullPolicy: IfNotPresent
          env:
            - name: POD_NAME
              valueFrom: {fieldRef: {fieldPath: metadata.name}}
          ports: [{name: http, containerPort: 80}]
          readinessProbe:
            httpGet: {path: /, port: 80}
            periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
"""


def _modes() -> list[Any]:
    import os

    root = os.geteuid() == 0 and shutil.which("nft") is not None
    return ["userspace", pytest.param("nftables", marks=[
        pytest.mark.root,
        pytest.mark.skipif(not root, reason="nftables mode needs root and nft")])]


def get_pod_name(ip: str, port: int, timeout: float = REQUEST_TIMEOUT_S) -> str:
    """GET / on ip:port; the demo page says which pod answered."""
    conn = http.client.HTTPConnection(ip, port, timeout=timeout)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        body = response.read().decode(errors="replace")
    finally:
        conn.close()
    if response.status != 200 or "pod: " not in body:
        raise OSError(f"unexpected answer {response.status}: {body[:80]!r}")
    return body.split("pod: ", 1)[1].split("<", 1)[0].strip()


def wait_for(what: str, check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except (OSError, AssertionError, KeyError, ValueError) as exc:
            last, result = exc, None
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class VipClient:
    """A client looping on the VIP in a thread: every request counted, failures kept."""

    def __init__(self, ip: str, port: int) -> None:
        self.ip, self.port = ip, port
        self.ok = 0
        self.failures: list[str] = []
        self.pods: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.pods.add(get_pod_name(self.ip, self.port))
                self.ok += 1
            except OSError as exc:
                self.failures.append(repr(exc))
            time.sleep(0.01)

    def __enter__(self) -> VipClient:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


class ProxyCluster:
    def __init__(self, handle: LocalClusterHandle, mode: str, node_net: str) -> None:
        self.handle, self.mode, self.node_net = handle, mode, node_net
        self.service_ip = ""

    def kubectl(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.handle.kubectl(*args, **kw)

    def get(self, kind: str, name: str = "") -> Any:
        # edgectl fails over between masters (kubectl uses the first, which a test may kill)
        return json.loads(self.handle.edgectl("get", kind, *([name] if name else []), "-o", "json").stdout)

    def vip(self, name: str = "web") -> str:
        return str(self.get("service", name)["spec"]["clusterIP"])

    def ready_pods(self) -> dict[str, str]:
        """Ready, not terminating pods of the app: name -> node."""
        out = {}
        for pod in self.get("pods", "")["items"]:
            ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                        for c in (pod.get("status") or {}).get("conditions") or [])
            if ready and not pod["metadata"].get("deletionTimestamp"):
                out[pod["metadata"]["name"]] = pod["spec"].get("nodeName")
        return out

    def pods_through_vip(self, expected: set[str], tries: int = 60) -> set[str]:
        vip, seen = self.service_ip or self.vip(), set()  # no API needed once known
        for _ in range(tries):
            seen.add(get_pod_name(vip, 80))
            if seen >= expected:
                break
        return seen

    def node_addresses(self) -> list[str]:
        return [p["address"] for p in self.handle.processes() if p["role"] == "node"]

    def node_names(self) -> list[str]:
        return [p["name"] for p in self.handle.processes() if p["role"] == "node"]


@contextlib.contextmanager
def proxy_cluster(directory: pathlib.Path, mode: str) -> Iterator[ProxyCluster]:
    node_net = f"127.{random.randint(200, 230)}.{random.randint(1, 254)}"
    prefix = f"px{random.randrange(16**4):04x}n"
    handle = LocalClusterHandle(directory.absolute())
    try:
        edgectl("up", "--dir", str(directory), "--masters", "3", "--nodes", "2",
                "--node-prefix", prefix, "--node-net", node_net, "--proxy-mode", mode,
                "--timeout", str(UP_TIMEOUT_S), timeout=UP_TIMEOUT_S + 30)
        yield ProxyCluster(handle, mode, node_net)
    finally:
        if (handle.dir / "cluster.json").exists():
            handle.down()


@pytest.fixture(scope="module", params=_modes())
def cluster(request: pytest.FixtureRequest, module_tmp_path: pathlib.Path) -> Iterator[ProxyCluster]:  # noqa: F811
    if subprocess.run(["docker", "image", "inspect", "edgeplane/demo:latest"],
                      capture_output=True).returncode != 0:
        edgectl("image", "build-demo", timeout=120)
    with proxy_cluster(module_tmp_path / request.param, request.param) as c:
        c.kubectl("apply", "-f", "-", stdin=APP)
        wait_for("3 Ready pods", lambda: len(c.ready_pods()) == 3, READY_TIMEOUT_S)
        c.service_ip = c.vip()
        yield c


def test_vip_reaches_every_pod_and_follows_scaling(cluster: ProxyCluster) -> None:
    vip = cluster.vip()
    assert vip.startswith("127.10."), f"allocated from the local service range, got {vip}"
    pods = cluster.ready_pods()
    assert set(pods.values()) <= set(cluster.node_names())
    wait_for("every pod answering through the VIP",
             lambda: cluster.pods_through_vip(set(pods)) == set(pods), CONVERGE_TIMEOUT_S)

    cluster.kubectl("scale", "deployment/web", "--replicas=1")
    wait_for("one Ready pod", lambda: len(cluster.ready_pods()) == 1, READY_TIMEOUT_S)
    [survivor] = cluster.ready_pods()
    # only the remaining pod answers once the endpoints change reached the data plane
    wait_for("only the remaining pod answering",
             lambda: cluster.pods_through_vip(set(), tries=20) == {survivor}, CONVERGE_TIMEOUT_S)

    cluster.kubectl("scale", "deployment/web", "--replicas=3")
    wait_for("3 Ready pods again", lambda: len(cluster.ready_pods()) == 3, READY_TIMEOUT_S)
    pods = cluster.ready_pods()
    wait_for("all 3 pods answering again",
             lambda: cluster.pods_through_vip(set(pods)) == set(pods), CONVERGE_TIMEOUT_S)


def test_deleting_a_pod_under_load(cluster: ProxyCluster) -> None:
    pods = cluster.ready_pods()
    victim = sorted(pods)[0]
    with VipClient(cluster.vip(), 80) as client:
        wait_for("the client getting answers", lambda: client.ok > 20, CONVERGE_TIMEOUT_S)
        cluster.kubectl("delete", "pod", victim, "--wait=true")
        wait_for("3 Ready pods after the replacement",
                 lambda: len(cluster.ready_pods()) == 3 and victim not in cluster.ready_pods(),
                 READY_TIMEOUT_S)
        replacement = set(cluster.ready_pods()) - set(pods)
        wait_for("the replacement answering", lambda: replacement <= client.pods, CONVERGE_TIMEOUT_S)
    # userspace skips an endpoint that refuses and tries the next: no failure at all; nftables
    # can only lose requests in flight to the stopping container.
    allowed = 0 if cluster.mode == "userspace" else 3
    assert len(client.failures) <= allowed, (client.ok, client.failures[:5])
    assert client.ok > 50


def test_node_port_on_every_node(cluster: ProxyCluster) -> None:
    cluster.kubectl("patch", "service", "web", "-p", '{"spec": {"type": "NodePort"}}')
    svc = cluster.get("service", "web")
    node_port = svc["spec"]["ports"][0]["nodePort"]
    assert 30000 <= node_port <= 32767
    for address in cluster.node_addresses():
        wait_for(f"NodePort {address}:{node_port}", lambda a=address: get_pod_name(a, node_port),
                 CONVERGE_TIMEOUT_S)
    # back to ClusterIP: the node port is released and stops answering
    cluster.kubectl("patch", "service", "web", "-p", '{"spec": {"type": "ClusterIP"}}')
    assert "nodePort" not in cluster.get("service", "web")["spec"]["ports"][0]

    def closed() -> bool:
        try:
            get_pod_name(cluster.node_addresses()[0], node_port, timeout=0.5)
        except OSError:
            return True
        return False

    wait_for("the node port closed", closed, CONVERGE_TIMEOUT_S)


def test_concurrent_creates_on_every_master_never_share_a_vip(cluster: ProxyCluster) -> None:
    if cluster.mode != "userspace":
        pytest.skip("allocation does not depend on the proxy mode: checked once")
    handle = cluster.handle
    urls = [m["apiAddress"] for m in handle.masters() if m.get("apiAddress")]
    live = []
    for url in urls:
        try:
            httpx.get(f"{url}/readyz", verify=False, timeout=2)
            live.append(url)
        except httpx.HTTPError:
            pass
    assert len(live) == 3, urls
    context = ssl.create_default_context(cafile=str(handle.dir / "ca.crt"))
    headers = {"Authorization": f"Bearer {handle.token}"}

    def create(i: int) -> str:
        body = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"c{i}"},
                "spec": {"selector": {"app": "none"}, "ports": [{"port": 80}]}}
        url = live[i % len(live)]
        for _ in range(20):  # a follower forwards; a lost election answers 503: try again
            response = httpx.post(f"{url}/api/v1/namespaces/default/services", json=body,
                                  headers=headers, verify=context, timeout=15)
            if response.status_code == 201:
                return str(response.json()["spec"]["clusterIP"])
            assert response.status_code in (503, 504), response.text
            time.sleep(0.2)
        raise AssertionError(f"c{i} not created")

    with ThreadPoolExecutor(max_workers=12) as pool:
        ips = list(pool.map(create, range(36)))
    assert len(set(ips)) == 36, sorted(ips)
    listed = {s["metadata"]["name"]: s["spec"]["clusterIP"] for s in cluster.get("services")["items"]}
    assert len(set(listed.values())) == len(listed)
    # a chosen VIP that another Service holds is refused with Kubernetes' message
    taken = ips[0]
    proc = cluster.kubectl("create", "service", "clusterip", "dup", f"--clusterip={taken}",
                           "--tcp=80:80", check=False)
    assert proc.returncode != 0 and "provided IP is already allocated" in proc.stderr
    for i in range(36):
        cluster.kubectl("delete", "service", f"c{i}", "--wait=false")


def test_leader_kill_does_not_disturb_vip_traffic(cluster: ProxyCluster) -> None:
    leader = cluster.handle.wait_for_leader()
    with VipClient(cluster.vip(), 80) as client:
        wait_for("the client getting answers", lambda: client.ok > 20, CONVERGE_TIMEOUT_S)
        cluster.handle.kill(leader, signal.SIGKILL)
        cluster.handle.wait_for_leader(exclude=leader, timeout=30)
        before = client.ok
        wait_for("more answers after the election", lambda: client.ok > before + 50, CONVERGE_TIMEOUT_S)
    assert client.failures == [], client.failures[:5]


def test_nftables_table_removed_on_clean_agent_shutdown(cluster: ProxyCluster) -> None:
    if cluster.mode != "nftables":
        pytest.skip("the nftables table is an nftables-mode matter")
    first, second = cluster.node_names()
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    assert f"edgeplane-{first}" in tables and f"edgeplane-{second}" in tables
    cluster.handle.kill(first, signal.SIGTERM)
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    assert f"edgeplane-{first}" not in tables
    # the other agent's table is its own: still there, and the VIP still answers through it
    # (the address was read before the leader test; kubectl may name the killed master)
    assert f"edgeplane-{second}" in tables
    get_pod_name(cluster.service_ip, 80)


def test_agents_restarted_while_every_master_is_down_serve_from_their_cache(cluster: ProxyCluster) -> None:
    """The data plane outlives the control plane, restarts included: every master dead, every
    agent stopped (its rules removed) and started again -- the VIP answers from the agents'
    proxy caches. Runs last: it leaves the masters dead."""
    import os

    handle = cluster.handle
    before = set(cluster.ready_pods())
    for master in handle.masters():
        if master.get("pid") and pathlib.Path(f"/proc/{master['pid']}").exists():
            handle.kill(master["name"], signal.SIGKILL)
    restarted: list[subprocess.Popen[bytes]] = []
    try:
        for node in [p for p in handle.processes() if p["role"] == "node"]:
            if pathlib.Path(f"/proc/{node['pid']}").exists():
                handle.kill(node["name"], signal.SIGTERM)
            with open(node["log"], "ab") as log:
                restarted.append(subprocess.Popen(
                    node["argv"], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}))
        wait_for("every pod answering through the VIP from the restarted agents' caches",
                 lambda: cluster.pods_through_vip(before) == before, CONVERGE_TIMEOUT_S)
    finally:
        for proc in restarted:  # SIGTERM: they remove their rules on the way out
            proc.send_signal(signal.SIGTERM)
        for proc in restarted:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
