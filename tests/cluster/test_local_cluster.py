"""`edgectl up` / `down` and failover, with real master processes, kubectl and the ApiClient."""

from __future__ import annotations

import json

import pytest
import trio
from conftest_cluster import pid_alive, start_cluster

from controlplane.client import ApiClient, ApiError, ClusterUnreachable

pytestmark = [pytest.mark.slow, pytest.mark.kubectl]

async def create_retrying(client: ApiClient, resource: str, obj: dict) -> None:
    """Create, retrying writes whose outcome a failover left unknown (a 504, or a connection
    that broke mid-request): an AlreadyExists on a retry means the first try was applied."""
    for _ in range(20):
        try:
            await client.create(resource, obj)
            return
        except ClusterUnreachable as exc:
            if not exc.maybe_committed:
                raise
        except ApiError as exc:
            if exc.code == 409 and exc.reason == "AlreadyExists":
                return
            if exc.code != 504:
                raise
        await trio.sleep(0.1)
    raise AssertionError(f"could not create {obj['metadata']['name']}")


CONFIGMAP = """
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: default}
data: {mode: edge}
"""


def test_up_serves_every_master_survives_leader_kill_and_down_stops_all(tmp_path) -> None:
    with start_cluster(tmp_path / "c", masters=3) as cluster:
        masters = cluster.masters()
        assert [m["name"] for m in masters] == ["m1", "m2", "m3"]
        for m in masters:
            assert m["log"].endswith(f"{m['name']}.log") and m["apiAddress"].startswith("https://")

        # kubectl reads the same kubeconfig: the standard namespaces exist, a write is visible
        # through every master (each kubeconfig context points at one master).
        out = cluster.kubectl("get", "namespaces", "-o", "name").stdout.split()
        assert {"namespace/default", "namespace/kube-system", "namespace/kube-node-lease"} <= set(out)
        cluster.kubectl("apply", "-f", "-", stdin=CONFIGMAP)
        for m in masters:
            got = cluster.kubectl("get", "configmap", "settings", "-o", "json",
                                  context=f"edgeplane-{m['name']}")
            assert json.loads(got.stdout)["data"] == {"mode": "edge"}

        leader = cluster.wait_for_leader()
        status = cluster.status()
        assert {m["name"] for m in status["members"]} == {"m1", "m2", "m3"}
        assert status["leaderDuties"]["holder"] == leader
        assert status["commitIndex"] >= 1 and status["term"] >= 1

        # kill -9 the leader: the client fails over and the others elect a new leader.
        killed_pid = cluster.kill(leader)
        new_leader = cluster.wait_for_leader(exclude=leader)
        assert new_leader != leader

        async def use_client() -> None:
            async with ApiClient.from_kubeconfig(str(cluster.kubeconfig)) as client:
                await create_retrying(client, "configmaps", {
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "after-failover"}, "data": {"k": "v"}})
                names = {i["metadata"]["name"] for i in (await client.list("configmaps"))["items"]}
                assert {"settings", "after-failover"} <= names
                for name in ("tmp-a", "tmp-b"):
                    await create_retrying(client, "configmaps", {
                        "metadata": {"name": name, "labels": {"scratch": "yes"}}})
                await client.delete_collection("configmaps", label_selector="scratch=yes")
                left = await client.list("configmaps", label_selector="scratch=yes")
                assert left["items"] == []

        trio.run(use_client)
        # kubectl's context for the dead master fails; the others answer.
        alive = [m for m in masters if m["name"] != leader]
        for m in alive:
            cluster.kubectl("get", "configmap", "after-failover", context=f"edgeplane-{m['name']}")

        pids = [m["pid"] for m in masters]
        cluster.down()
        assert not any(pid_alive(pid) for pid in pids), "edgectl down left a process behind"
        assert not pid_alive(killed_pid)


def test_watch_resumes_on_another_master_when_its_master_dies(tmp_path) -> None:
    """A watch opened on one master continues on another from the last resourceVersion: no
    event lost, none repeated (every replica applies the same log, so revisions agree)."""
    with start_cluster(tmp_path / "w", masters=3) as cluster:

        def cm(name: str) -> dict:
            return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}

        async def scenario() -> list[tuple[str, str]]:
            seen: list[tuple[str, str]] = []
            async with ApiClient.from_kubeconfig(str(cluster.kubeconfig)) as watcher, \
                    ApiClient.from_kubeconfig(str(cluster.kubeconfig)) as writer:
                listed = await watcher.list("configmaps")
                rv = listed["metadata"]["resourceVersion"]
                watched_server = watcher.current_server
                events = watcher.watch("configmaps", resource_version=rv)
                await writer.create("configmaps", cm("before"))
                async for event in events:
                    seen.append((event["type"], event["object"]["metadata"]["name"]))
                    if len(seen) == 1:
                        victim = next(m["name"] for m in cluster.masters()
                                      if m["apiAddress"] == watched_server)
                        await trio.to_thread.run_sync(cluster.kill, victim)
                        await create_retrying(writer, "configmaps", cm("after"))
                    if len(seen) == 2:
                        break
                await events.aclose()
                assert watcher.current_server != watched_server
            return seen

        async def bounded() -> list[tuple[str, str]]:
            with trio.fail_after(60):
                return await scenario()

        assert trio.run(bounded) == [("ADDED", "before"), ("ADDED", "after")]


def test_up_after_down_restarts_the_same_cluster_with_its_data(tmp_path) -> None:
    with start_cluster(tmp_path / "r", masters=3) as cluster:
        cluster.edgectl("apply", "-f", "-", stdin=CONFIGMAP)
        before = {m["name"]: m["apiAddress"] for m in cluster.masters()}
        old_pids = [m["pid"] for m in cluster.masters()]
        cluster.down()
        assert not any(pid_alive(pid) for pid in old_pids)

        out = cluster.edgectl("up", "--dir", str(cluster.dir)).stdout
        assert "cluster is up" in out and "3 master(s)" in out
        assert {m["name"]: m["apiAddress"] for m in cluster.masters()} == before
        got = cluster.edgectl("get", "configmap", "settings", "-o", "json")
        assert json.loads(got.stdout)["data"] == {"mode": "edge"}


def test_up_retries_on_new_ports_when_a_probed_port_was_taken(tmp_path, monkeypatch) -> None:
    import socket

    import cli._local as local

    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    real_free_ports = local.free_ports
    calls = []

    def racy_free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
        ports = real_free_ports(count, host)
        calls.append(ports)
        if len(calls) == 1:
            ports[1] = taken  # m1's API port, taken between the probe and the bind
        return ports

    monkeypatch.setattr(local, "free_ports", racy_free_ports)
    notes: list[str] = []
    try:
        cluster = local.start_local_cluster(tmp_path / "p", masters=3, progress=notes.append)
        try:
            assert len(calls) == 2
            assert any("retrying on new ports" in n for n in notes)
            assert all(str(taken) not in (m.api_address or "") for m in cluster.masters())
        finally:
            local.stop_local_cluster(cluster, grace=5)
    finally:
        squatter.close()


def test_node_lifecycle_flags_reach_the_leader_duties(tmp_path) -> None:
    """`up --node-grace-period` is passed to every master: a dead agent's node turns NotReady
    after that grace, well before the default 8 s."""
    import time

    from conftest_cluster import UP_TIMEOUT_S

    directory = tmp_path / "g"
    from conftest_cluster import LocalClusterHandle, edgectl

    edgectl("up", "--dir", str(directory), "--masters", "1", "--nodes", "1", "--hollow",
            "--node-grace-period", "3", "--node-net", "127.201.7", "--timeout", str(UP_TIMEOUT_S),
            timeout=UP_TIMEOUT_S + 30)

    cluster = LocalClusterHandle(directory)
    try:
        assert json.loads((directory / "m1" / "master.json").read_text())["node_grace_period"] == 3.0
        cluster.wait_for_leader()
        deadline = time.monotonic() + 30
        while cluster.status()["nodes"]["ready"] != 1:
            assert time.monotonic() < deadline, "the node never became Ready"
            time.sleep(0.2)
        cluster.kill("n1")
        killed = time.monotonic()
        while cluster.status()["nodes"]["notReady"] != 1:
            assert time.monotonic() - killed < 7.0, "NotReady took longer than the default grace"
            time.sleep(0.2)
    finally:
        cluster.down()
