"""The agent against the real Docker engine, with pods fed in-process (no master yet).

Each test uses a unique node name; the `node_name` fixture removes every container labelled with
it. Pods use the offline demo image (busybox httpd on port 80, page naming the pod).
"""

from __future__ import annotations

import contextlib
import functools
import json
import subprocess
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio

from edge_agent import AgentConfig, BackoffPolicy, EdgeAgent, PodSyncer, run_agent

from .conftest import pod, wait_for

pytestmark = [pytest.mark.docker]

# Only loopback registries may be contacted from these tests (nothing leaves the machine).
LOCAL_REGISTRIES = ["127.0.0.1:24999"]


class Recorder:
    """status_sink that keeps every status handed out, per pod name."""

    def __init__(self) -> None:
        self.history: dict[str, list[tuple[dict[str, Any], str]]] = {}

    def __call__(self, p: dict[str, Any], status: dict[str, Any], ports: str) -> None:
        self.history.setdefault(p["metadata"]["name"], []).append((status, ports))

    def last(self, name: str) -> dict[str, Any]:
        return self.history.get(name, [({}, "")])[-1][0]

    def ports(self, name: str) -> dict[str, int]:
        return json.loads(self.history.get(name, [({}, "{}")])[-1][1])

    def container(self, name: str) -> dict[str, Any]:
        statuses = self.last(name).get("containerStatuses") or [{}]
        return statuses[0]


@contextlib.asynccontextmanager
async def syncer(node_name: str, address: str, **kw: Any) -> AsyncIterator[tuple[PodSyncer,
                                                                              Recorder]]:
    from edge_agent import DockerRuntime

    rec = Recorder()
    runtime = DockerRuntime(node_name)
    s = PodSyncer(runtime, node_name=node_name, node_address=address, status_sink=rec,
                  pull_registries=LOCAL_REGISTRIES, **kw)
    async with trio.open_nursery() as nursery:
        await nursery.start(s.serve)
        yield s, rec
        nursery.cancel_scope.cancel()
    await runtime.aclose()


def running(rec: Recorder, name: str) -> bool:
    return "running" in (rec.container(name).get("state") or {})


def ready(rec: Recorder, name: str) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in rec.last(name).get("conditions") or [])


def docker_ids(node_name: str, *, all_: bool = False) -> list[str]:
    args = ["docker", "ps", "-q", "--no-trunc", "--filter", f"label=io.edgeplane.node={node_name}"]
    if all_:
        args.insert(2, "-a")
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout.split()


async def http_get(url: str) -> httpx.Response:
    async with httpx.AsyncClient(trust_env=False, timeout=3) as client:
        return await client.get(url)


def test_demo_image_is_built_offline_and_idempotently(demo_image):
    from cli._image import build_demo_image

    started = time.monotonic()
    assert build_demo_image() == demo_image  # present: nothing rebuilt
    assert time.monotonic() - started < 5
    out = subprocess.run(["docker", "run", "--rm", "--pull=never", "--entrypoint", "/bin/sh",
                          demo_image, "-c", "httpd --help 2>&1 | head -1; cat /entrypoint.sh"],
                         capture_output=True, text=True, timeout=60)
    assert "BusyBox" in out.stdout and "httpd -f -p" in out.stdout


async def test_pod_serves_http_on_its_host_port(demo_image, node_name, node_address):
    async with syncer(node_name, node_address) as (s, rec):
        s.upsert(pod("web-1", node_name=node_name, resources={"limits": {"cpu": "250m",
                                                                         "memory": "32Mi"}}))
        await wait_for(lambda: ready(rec, "web-1"), 20, "web-1 Running and Ready")
        st = rec.last("web-1")
        assert st["phase"] == "Running" and st["hostIP"] == node_address
        assert st["podIP"].count(".") == 3 and st["podIP"] != node_address
        port = rec.ports("web-1")["80/TCP"]
        resp = await http_get(f"http://{node_address}:{port}/")
        assert resp.status_code == 200 and "pod: web-1" in resp.text
        cid = rec.container("web-1")["containerID"].removeprefix("docker://")
        inspect = json.loads(subprocess.run(["docker", "inspect", cid], capture_output=True,
                                            text=True, check=True).stdout)[0]
        assert inspect["HostConfig"]["NanoCpus"] == 250_000_000
        assert inspect["HostConfig"]["Memory"] == 32 * 1024 * 1024
        labels = inspect["Config"]["Labels"]
        assert labels["io.edgeplane.pod.name"] == "web-1"
        assert labels["io.edgeplane.container.name"] == "web"


async def test_killed_container_is_restarted_and_counted(demo_image, node_name, node_address):
    async with syncer(node_name, node_address) as (s, rec):
        s.upsert(pod("k-1", node_name=node_name))
        await wait_for(lambda: running(rec, "k-1"), 20, "k-1 running")
        first = rec.container("k-1")["containerID"].removeprefix("docker://")
        subprocess.run(["docker", "kill", first], check=True, capture_output=True)
        await wait_for(lambda: rec.container("k-1").get("restartCount") == 1
                       and running(rec, "k-1"), 20, "restarted container")
        cs = rec.container("k-1")
        assert cs["containerID"] != f"docker://{first}"
        assert cs["lastState"]["terminated"]["exitCode"] == 137
        port = rec.ports("k-1")["80/TCP"]
        assert "pod: k-1" in (await http_get(f"http://{node_address}:{port}/")).text


async def test_restart_policy_never_leaves_a_failed_pod(demo_image, node_name, node_address):
    async with syncer(node_name, node_address) as (s, rec):
        s.upsert(pod("once", node_name=node_name, restart_policy="Never", ports=[],
                     command=["sh", "-c", "exit 3"]))
        await wait_for(lambda: rec.last("once").get("phase") == "Failed", 20, "phase Failed")
        term = rec.container("once")["state"]["terminated"]
        assert (term["exitCode"], term["reason"]) == (3, "Error")
        await s.wait_rounds(3)
        assert rec.container("once")["restartCount"] == 0


async def test_crash_loop_backs_off(demo_image, node_name, node_address):
    async with syncer(node_name, node_address, backoff=BackoffPolicy(base=1.0, cap=4.0)) as (
            s, rec):
        s.upsert(pod("crash", node_name=node_name, ports=[], command=["sh", "-c", "exit 1"]))
        await wait_for(lambda: (rec.container("crash").get("state") or {}).get(
            "waiting", {}).get("reason") == "CrashLoopBackOff", 30, "CrashLoopBackOff")
        waits = [st["containerStatuses"][0]["state"]["waiting"]["message"]
                 for st, _ in rec.history["crash"]
                 if "waiting" in st["containerStatuses"][0]["state"]
                 and st["containerStatuses"][0]["state"]["waiting"]["reason"] == "CrashLoopBackOff"]
        # 1 s after the first restart's exit, unless that exit was only seen once its 1 s had
        # passed (a relist a second later under load): then the next back-off is the first.
        seconds = [float(w.split()[1].removesuffix("s")) for w in waits]
        assert seconds and seconds[0] in (1.0, 2.0) and seconds == sorted(seconds), waits
        # The back-off doubles: reaching restart 3 takes >= 0 + 1 + 2 s after the first exit.
        started = time.monotonic()
        await wait_for(lambda: rec.container("crash").get("restartCount", 0) >= 3, 30,
                       "third restart")
        assert rec.last("crash")["phase"] == "Running"
        assert time.monotonic() - started >= 1.5


async def test_deleted_pod_stops_within_its_grace_period(demo_image, node_name, node_address):
    finalized: list[str] = []

    async with syncer(node_name, node_address) as (s, rec):
        async def on_finalized(p: dict[str, Any]) -> None:
            finalized.append(p["metadata"]["name"])
        s._on_finalized = on_finalized
        # A container that ignores SIGTERM: it must be SIGKILLed when the grace period ends.
        stubborn = pod("stubborn", node_name=node_name, grace=2, ports=[],
                       command=["sh", "-c", "trap '' TERM; while true; do sleep 1; done"])
        polite = pod("polite", node_name=node_name, grace=30)
        s.upsert(stubborn)
        s.upsert(polite)
        await wait_for(lambda: running(rec, "stubborn") and running(rec, "polite"), 20, "running")
        t0 = time.monotonic()
        for p in (stubborn, polite):
            p = json.loads(json.dumps(p))
            p["metadata"]["deletionTimestamp"] = "2026-11-26T00:00:00Z"
            s.upsert(p)
        await wait_for(lambda: len(finalized) == 2, 20, "both pods finalized")
        elapsed = time.monotonic() - t0
        assert 1.5 <= elapsed < 8, elapsed  # SIGKILL after the 2 s grace, not 30 s
        assert docker_ids(node_name, all_=True) == []
        assert s.desired == {}


async def test_removed_pod_is_stopped_as_orphan(demo_image, node_name, node_address):
    async with syncer(node_name, node_address) as (s, rec):
        p = pod("gone", node_name=node_name, grace=5)
        s.upsert(p)
        await wait_for(lambda: running(rec, "gone"), 20, "running")
        t0 = time.monotonic()
        s.remove(p["metadata"]["uid"])
        await wait_for(lambda: not docker_ids(node_name, all_=True), 10, "containers removed")
        assert time.monotonic() - t0 < 5


async def test_unreachable_registry_reports_err_image_pull_then_back_off(node_name,
                                                                        node_address):
    image = "127.0.0.1:24999/edgeplane/absent:1.0"
    async with syncer(node_name, node_address, backoff=BackoffPolicy(base=2.0, cap=8.0)) as (
            s, rec):
        s.upsert(pod("pull", node_name=node_name, image=image, imagePullPolicy="Always"))

        def reasons() -> list[str]:
            return [st["containerStatuses"][0]["state"].get("waiting", {}).get("reason", "")
                    for st, _ in rec.history.get("pull", [])]

        await wait_for(lambda: "ImagePullBackOff" in reasons(), 20, "ImagePullBackOff")
        seen = [r for i, r in enumerate(reasons()) if i == 0 or reasons()[i - 1] != r]
        assert seen.index("ErrImagePull") < seen.index("ImagePullBackOff")
        st = rec.last("pull")
        assert st["phase"] == "Pending"
        messages = [w["message"] for st, _ in rec.history["pull"]
                    for w in [st["containerStatuses"][0]["state"].get("waiting", {})]
                    if w.get("reason") == "ErrImagePull"]
        assert "127.0.0.1:24999" in messages[0]
        # After the back-off it tries again and fails again with ErrImagePull.
        await wait_for(lambda: reasons().count("ErrImagePull") >= 2, 20, "second pull attempt")
        assert docker_ids(node_name, all_=True) == []


async def test_registry_outside_the_allowed_list_is_never_contacted(node_name, node_address):
    async with syncer(node_name, node_address) as (s, rec):
        s.upsert(pod("far", node_name=node_name, image="registry.example.com/app:1"))
        def pull_errors() -> list[str]:
            return [w["message"] for st, _ in rec.history.get("far", [])
                    for w in [st["containerStatuses"][0]["state"].get("waiting", {})]
                    if w.get("reason") == "ErrImagePull"]

        await wait_for(pull_errors, 10, "ErrImagePull")
        assert "not in this node's pull registries" in pull_errors()[0]


async def test_liveness_failure_restarts_the_container(demo_image, node_name, node_address):
    async with syncer(node_name, node_address) as (s, rec):
        # Healthy while /tmp/alive exists; the test removes it to make the probe fail.
        s.upsert(pod("live", node_name=node_name, ports=[],
                     command=["sh", "-c", "touch /tmp/alive; exec sleep 3600"],
                     livenessProbe={"exec": {"command": ["cat", "/tmp/alive"]},
                                    "periodSeconds": 1, "failureThreshold": 2,
                                    "terminationGracePeriodSeconds": 1}))
        await wait_for(lambda: running(rec, "live"), 20, "running")
        cid = rec.container("live")["containerID"].removeprefix("docker://")
        await trio.sleep(2.5)  # several successful probes: no restart
        assert rec.container("live")["restartCount"] == 0
        subprocess.run(["docker", "exec", cid, "rm", "/tmp/alive"], check=True)
        await wait_for(lambda: rec.container("live").get("restartCount") == 1
                       and running(rec, "live"), 20, "restart after liveness failure")


async def test_readiness_probe_drives_ready(demo_image, node_name, node_address):
    async with syncer(node_name, node_address) as (s, rec):
        s.upsert(pod("rdy", node_name=node_name,
                     readinessProbe={"httpGet": {"path": "/ready.html", "port": 80},
                                     "periodSeconds": 1, "failureThreshold": 1}))
        await wait_for(lambda: running(rec, "rdy"), 20, "running")
        await s.wait_rounds(2)
        assert not ready(rec, "rdy")  # /ready.html does not exist yet: 404
        cid = rec.container("rdy")["containerID"].removeprefix("docker://")
        subprocess.run(["docker", "exec", cid, "sh", "-c", "echo ok > /www/ready.html"],
                       check=True)
        await wait_for(lambda: ready(rec, "rdy"), 10, "Ready after the page appears")
        subprocess.run(["docker", "exec", cid, "rm", "/www/ready.html"], check=True)
        await wait_for(lambda: not ready(rec, "rdy"), 10, "not Ready after it is removed")
        assert rec.container("rdy")["restartCount"] == 0  # readiness never restarts


async def test_tcp_socket_probe_and_named_port(demo_image, node_name, node_address):
    async with syncer(node_name, node_address) as (s, rec):
        s.upsert(pod("tcp", node_name=node_name,
                     ports=[{"name": "http", "containerPort": 80}],
                     readinessProbe={"tcpSocket": {"port": "http"}, "periodSeconds": 1}))
        await wait_for(lambda: ready(rec, "tcp"), 20, "Ready via tcpSocket")


async def test_agent_restart_adopts_its_containers(demo_image, node_name, node_address,
                                                   tmp_path):
    """Edge autonomy: pods recovered from the cache, containers adopted (same IDs)."""
    config = AgentConfig(node_name=node_name, data_dir=str(tmp_path), address=node_address,
                         log_port=None, pull_registries=LOCAL_REGISTRIES)
    pods = [pod(f"a-{i}", node_name=node_name) for i in range(2)]

    async with trio.open_nursery() as nursery:
        agent: EdgeAgent = await nursery.start(run_agent, config)
        for p in pods:
            await agent.cache.put(p)
            agent.syncer.upsert(p)
        await wait_for(lambda: all(
            any(c.running for c in agent.syncer.containers.get(p["metadata"]["uid"], []))
            for p in pods), 20, "both pods running")
        before = sorted(docker_ids(node_name))
        assert len(before) == 2
        nursery.cancel_scope.cancel()

    # A container dies while the agent is down: it must be restarted, the other one adopted.
    subprocess.run(["docker", "kill", before[0]], check=True, capture_output=True)
    async with trio.open_nursery() as nursery:
        agent = await nursery.start(run_agent, config)
        assert set(agent.syncer.desired) == {p["metadata"]["uid"] for p in pods}
        await wait_for(lambda: len(docker_ids(node_name)) == 2, 20, "two running again")
        after = docker_ids(node_name)
        assert before[1] in after and before[0] not in after
        await agent.syncer.wait_rounds(3)
        assert before[1] in docker_ids(node_name)  # still the same container
        nursery.cancel_scope.cancel()


async def test_log_endpoint_serves_container_logs(demo_image, node_name, node_address,
                                                  tmp_path, free_port):
    config = AgentConfig(node_name=node_name, data_dir=str(tmp_path), address=node_address,
                         log_port=free_port(), log_credential="s3cret",
                         pull_registries=LOCAL_REGISTRIES)
    p = pod("talk", node_name=node_name, ports=[],
            command=["sh", "-c", "for i in 1 2 3; do echo line-$i; done; "
                     "sleep 1; echo later; exec sleep 3600"])
    async with trio.open_nursery() as nursery:
        agent: EdgeAgent = await nursery.start(run_agent, config)
        agent.syncer.upsert(p)
        base = f"http://{node_address}:{agent.log_port}"
        url = f"{base}/api/v1/namespaces/default/pods/talk/log"
        auth = {"Authorization": "Bearer s3cret"}
        async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
            assert (await client.get(url)).status_code == 401
            assert (await client.get(url, headers={"Authorization": "Bearer nope"})
                    ).status_code == 401
            missing = await client.get(f"{base}/api/v1/namespaces/default/pods/nope/log",
                                       headers=auth)
            assert missing.status_code == 404 and missing.json()["kind"] == "Status"

            async def logged() -> str:
                r = await client.get(url, headers=auth)
                return r.text if r.status_code == 200 else ""

            text = ""
            with trio.move_on_after(20):
                while "line-3" not in text:
                    text = await logged()
                    await trio.sleep(0.1)
            assert text.splitlines()[:3] == ["line-1", "line-2", "line-3"]
            r = await client.get(url, params={"tailLines": "1", "container": "web"},
                                 headers=auth)
            assert r.text.splitlines() == [text.splitlines()[-1]]
            # follow: streams until we hang up; "later" arrives after the request began.
            got = b""
            with trio.move_on_after(10):
                async with client.stream("GET", f"{base}/containerLogs/default/talk/web",
                                         params={"follow": "true"}, headers=auth) as resp:
                    async for chunk in resp.aiter_bytes():
                        got += chunk
                        if b"later" in got:
                            break
            assert b"later" in got
        nursery.cancel_scope.cancel()


async def test_startup_probe_holds_readiness_and_liveness_until_it_passes(
        demo_image, node_name, node_address):
    async with syncer(node_name, node_address) as (s, rec):
        # Liveness would fail at once (no /tmp/started yet) if it ran before the startup probe.
        check = {"exec": {"command": ["cat", "/tmp/started"]}, "periodSeconds": 1}
        s.upsert(pod("slow", node_name=node_name, ports=[],
                     command=["sh", "-c", "sleep 2; touch /tmp/started; exec sleep 3600"],
                     startupProbe={**check, "failureThreshold": 30},
                     livenessProbe={**check, "failureThreshold": 1}))
        await wait_for(lambda: running(rec, "slow"), 20, "running")
        assert rec.container("slow")["started"] is False and not ready(rec, "slow")
        await wait_for(lambda: ready(rec, "slow"), 15, "Ready once the startup probe passed")
        assert rec.container("slow")["started"] is True
        await s.wait_rounds(3)
        assert rec.container("slow")["restartCount"] == 0


async def test_host_port_conflict_is_reported_and_retried_with_back_off(
        demo_image, node_name, node_address, free_port):
    port = free_port()
    async with syncer(node_name, node_address, backoff=BackoffPolicy(base=1.0, cap=2.0)) as (
            s, rec):
        first = pod("first", node_name=node_name, grace=1,
                    ports=[{"containerPort": 80, "hostPort": port}])
        s.upsert(first)
        await wait_for(lambda: running(rec, "first"), 20, "first running")
        assert rec.ports("first") == {"80/TCP": port}
        s.upsert(pod("second", node_name=node_name,
                     ports=[{"containerPort": 80, "hostPort": port}]))

        def reasons() -> list[str]:
            return [st["containerStatuses"][0]["state"].get("waiting", {}).get("reason", "")
                    for st, _ in rec.history.get("second", [])]

        await wait_for(lambda: "CrashLoopBackOff" in reasons(), 20, "back-off after the conflict")
        assert "RunContainerError" in reasons()
        attempts = reasons().count("RunContainerError")
        await trio.sleep(1.5)  # a back-off timing window: count the retries made during it
        assert reasons().count("RunContainerError") <= attempts + 2  # no tight retry loop
        s.remove(first["metadata"]["uid"])
        await wait_for(lambda: running(rec, "second"), 20, "second running once the port is free")
        resp = await http_get(f"http://{node_address}:{port}/")
        assert "pod: second" in resp.text


def test_demo_image_build_without_busybox_is_a_clear_error():
    from click.testing import CliRunner

    from cli._image import ImageBuildError, build_demo_image, image_group

    with pytest.raises(ImageBuildError, match="busybox-static"):
        build_demo_image("edgeplane/demo-missing:test", force=True, busybox="/nonexistent/busybox")
    result = CliRunner().invoke(image_group, ["build-demo", "--tag", "edgeplane/demo:latest"])
    assert result.exit_code == 0 and result.output.startswith("edgeplane/demo:latest sha256:")


async def test_containers_of_a_deleted_pod_share_one_grace_period(demo_image, node_name,
                                                                  node_address):
    finalized: list[str] = []
    stubborn = {"image": "edgeplane/demo:latest", "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", "trap '' TERM; while true; do sleep 1; done"]}
    p = pod("pair", node_name=node_name, grace=3, ports=[], **stubborn)
    p["spec"]["containers"].append({"name": "side", **stubborn})
    async with syncer(node_name, node_address) as (s, rec):
        async def on_finalized(pod_: dict[str, Any]) -> None:
            finalized.append(pod_["metadata"]["name"])
        s._on_finalized = on_finalized
        s.upsert(p)
        await wait_for(lambda: all("running" in cs["state"] for cs in
                                   rec.last("pair").get("containerStatuses", [{"state": {}}])),
                       20, "both containers running")
        deleting = json.loads(json.dumps(p))
        deleting["metadata"]["deletionTimestamp"] = "2026-11-26T00:00:00Z"
        t0 = time.monotonic()
        s.upsert(deleting)
        await wait_for(lambda: finalized == ["pair"], 20, "pod finalized")
        assert time.monotonic() - t0 < 5.5  # one 3 s grace period, not two in a row


async def test_relist_does_not_wait_for_a_start_in_progress(demo_image, node_name, node_address):
    """The engine holds a container's lock while it starts it, so a relist that inspected the
    new container waited for its start -- and every other new pod of the node behind it."""
    from edge_agent import DockerRuntime
    from edge_agent._podspec import container_spec

    p = pod("relist", node_name=node_name)
    uid = p["metadata"]["uid"]
    spec = container_spec(p, p["spec"]["containers"][0], node_name=node_name,
                          node_address=node_address, restart_count=0)
    runtime = DockerRuntime(node_name)
    started = trio.Event()

    async def start() -> None:
        await runtime.start_container(spec)
        started.set()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(start)
            # Created, start in progress (a start takes the engine well over 100 ms).
            await wait_for(lambda: runtime._starting, 30, "the container to be created", 0.002)
            listing = await runtime.list_containers()
            assert not started.is_set(), "the relist waited for the container's start"
            assert [c for c in listing if c.pod_uid == uid] == []  # its starter knows about it
        listing = await runtime.list_containers()
        assert [c.state for c in listing if c.pod_uid == uid] == ["running"]
    finally:
        await runtime.aclose()


async def test_docker_kill_is_seen_through_the_event_stream(demo_image, node_name,
                                                           node_address):
    """Evented PLEG: the exit comes from the engine's event stream, not from a relist."""
    async with syncer(node_name, node_address, relist_interval=600.0) as (s, rec):
        await wait_for(lambda: s.events_live, 10, "events stream live")
        s.resync_interval = 600.0  # neither relist can happen within the test
        s.upsert(pod("ev", node_name=node_name))
        await wait_for(lambda: running(rec, "ev"), 20, "ev running")
        first = rec.container("ev")["containerID"].removeprefix("docker://")
        events = s.container_events
        t0 = time.monotonic()
        # In a thread: the agent handles the event while `docker kill` is still returning.
        # (The engine sends "die" before its container list says "exited": an agent that
        # trusted a list made at once saw the container still running and waited 30 s.)
        await trio.to_thread.run_sync(functools.partial(
            subprocess.run, ["docker", "kill", first], check=True, capture_output=True))
        await wait_for(lambda: rec.container("ev").get("restartCount") == 1
                       and running(rec, "ev"), 10, "restarted container")
        # A restart includes creating and starting a container (~0.2-0.5 s here).
        assert time.monotonic() - t0 < 5
        assert s.container_events > events


class SocketCutter:
    """A unix-socket relay to the Docker engine whose connections the test can cut: what a
    dockerd restart does to the agent's event stream, without restarting the shared engine."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._open: set[trio.CancelScope] = set()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                    ) -> None:
        with trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM) as listener:
            await listener.bind(self.path)
            listener.listen()
            task_status.started()
            async with trio.open_nursery() as nursery:
                while True:
                    sock, _ = await listener.accept()
                    nursery.start_soon(self._relay, trio.SocketStream(sock))

    def cut(self) -> None:
        """Drop every connection open now (new ones are relayed again)."""
        for scope in self._open:
            scope.cancel()

    async def _relay(self, client: trio.SocketStream) -> None:
        async def pump(src: trio.abc.Stream, dst: trio.abc.Stream) -> None:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                async for chunk in src:
                    await dst.send_all(chunk)
            nursery.cancel_scope.cancel()  # one side hung up: so does the relay

        scope = trio.CancelScope()
        self._open.add(scope)
        try:
            with scope:
                async with client, await trio.open_unix_socket("/var/run/docker.sock") as engine:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(pump, client, engine)
                        nursery.start_soon(pump, engine, client)
        finally:
            self._open.discard(scope)


async def test_event_stream_reconnects_after_the_engine_connection_breaks(
        demo_image, node_name, node_address, tmp_path):
    from edge_agent import DockerRuntime

    cutter = SocketCutter(str(tmp_path / "docker.sock"))
    rec = Recorder()
    async with trio.open_nursery() as nursery:
        await nursery.start(cutter.serve)
        runtime = DockerRuntime(node_name, base_url=f"unix://{cutter.path}")
        s = PodSyncer(runtime, node_name=node_name, node_address=node_address,
                      status_sink=rec, pull_registries=LOCAL_REGISTRIES, relist_interval=600.0)
        await nursery.start(s.serve)
        await wait_for(lambda: s.events_live, 10, "events stream live")
        s.upsert(pod("rc", node_name=node_name))
        await wait_for(lambda: running(rec, "rc"), 20, "rc running")
        relists = s.relists
        cutter.cut()  # the stream breaks as if dockerd had gone away
        await wait_for(lambda: s.events_connects == 2 and s.events_live, 15, "reconnected")
        await wait_for(lambda: s.relists > relists, 5, "relist after the break")
        s.resync_interval = 600.0  # from here on only the new stream can report an exit
        first = rec.container("rc")["containerID"].removeprefix("docker://")
        subprocess.run(["docker", "kill", first], check=True, capture_output=True)
        await wait_for(lambda: rec.container("rc").get("restartCount") == 1
                       and running(rec, "rc"), 10, "restart seen through the new stream")
        nursery.cancel_scope.cancel()
    await runtime.aclose()


async def test_host_network_pod_serves_on_the_node_port(demo_image, node_name, node_address,
                                                       free_port):
    port = free_port()
    p = pod("hostnet", node_name=node_name, ports=[{"containerPort": port}],
            # The demo's httpd on the node's address and a port of this test's range (the
            # node's network is the machine's: never port 80 on every address).
            env=[{"name": "PORT", "value": f"{node_address}:{port}"},
                 {"name": "POD_NAME", "value": "hostnet"}],
            readinessProbe={"httpGet": {"path": "/", "port": port}, "periodSeconds": 1})
    p["spec"]["hostNetwork"] = True
    async with syncer(node_name, node_address) as (s, rec):
        s.upsert(p)
        await wait_for(lambda: ready(rec, "hostnet"), 20, "Ready (probed on the node address)")
        st = rec.last("hostnet")
        assert st["podIP"] == st["hostIP"] == node_address
        assert rec.ports("hostnet") == {f"{port}/TCP": port}
        resp = await http_get(f"http://{node_address}:{port}/")
        assert "pod: hostnet" in resp.text
        cid = rec.container("hostnet")["containerID"].removeprefix("docker://")
        inspect = json.loads(subprocess.run(["docker", "inspect", cid], capture_output=True,
                                            text=True, check=True).stdout)[0]
        assert inspect["HostConfig"]["NetworkMode"] == "host"
        assert inspect["HostConfig"]["PortBindings"] in (None, {})
