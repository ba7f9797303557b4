"""The hollow-node runner's lease path: NodeLease says when a renewal came late, and a runner's
Leases are renewed by its lease lane (a process of its own) through a real API server, and stop
being renewed once the runner is gone."""

from __future__ import annotations

import itertools
import logging
import os
from typing import Any

import pytest
import trio

from controlplane.apiserver import StaticTokenAuthenticator, User, create_app
from controlplane.registry import Registry
from edge_agent import ApiError, NodeLease, run_hollow_nodes
from raftstore import MemoryStore
from tests.api_serving import serve_on_free_port

TOKEN = "hollow-runner-test-token"
# API server ports for these tests, inside H9N's 26000-26999 share.
_PORTS = itertools.cycle(range(26500 + (os.getpid() % 10) * 20, 26700))


class _LeaseStore:
    """A session holding one Lease, enough for NodeLease's logic (pure; the API is tested
    below with a real server)."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.rv = 0
        self.conflict_next = False

    def _stored(self, lease: dict[str, Any]) -> dict[str, Any]:
        self.rv += 1
        self.lease = {**lease, "metadata": {**lease["metadata"], "resourceVersion": str(self.rv)}}
        return self.lease

    async def get_lease(self, name: str) -> dict[str, Any] | None:
        return self.lease

    async def create_lease(self, lease: dict[str, Any]) -> dict[str, Any]:
        return self._stored(lease)

    async def update_lease(self, lease: dict[str, Any]) -> dict[str, Any]:
        assert self.lease is not None
        if self.conflict_next or lease["metadata"].get("resourceVersion") != str(self.rv):
            self.conflict_next = False
            self.rv += 1  # someone else wrote it
            self.lease["metadata"]["resourceVersion"] = str(self.rv)
            raise ApiError(409, "Conflict", "the object has been modified")
        return self._stored(lease)


async def test_node_lease_counts_and_logs_a_late_renewal(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    session = _LeaseStore()
    lease = NodeLease("n1", 20, 5.0, clock=lambda: now[0])
    lease.node_uid = "uid-1"
    assert lease.late_after == 10.0  # renew interval + a quarter of the 20 s Lease
    await lease.renew(session)  # type: ignore[arg-type]
    assert session.lease is not None
    assert session.lease["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    now[0] += 5.0
    await lease.renew(session)  # type: ignore[arg-type]
    assert lease.late_renewals == 0
    # A conflict (another writer) is re-read and retried within the same renewal.
    session.conflict_next = True
    now[0] += 4.0
    await lease.renew(session)  # type: ignore[arg-type]
    assert lease.late_renewals == 0 and session.lease["spec"]["holderIdentity"] == "n1"
    with caplog.at_level(logging.WARNING, logger="edge_agent.lease"):
        now[0] += 12.5
        assert lease.silent_for() == 12.5
        await lease.renew(session)  # type: ignore[arg-type]
    assert lease.late_renewals == 1
    assert "lease of node n1 renewed 12.5s after the previous renewal" in caplog.text


async def _serve_master(nursery: trio.Nursery) -> tuple[Registry, str]:
    store = MemoryStore()
    registry = Registry(store)
    await registry.ensure_namespaces()
    auth = StaticTokenAuthenticator({TOKEN: User("system:node:hollow", ("system:nodes",), "node")})
    app = create_app(registry, store=store, authenticator=auth, info={})
    return registry, await serve_on_free_port(nursery, app, _PORTS)


async def _renew_times(registry: Registry, prefix: str) -> dict[str, str]:
    items = (await registry.list("leases", "kube-node-lease"))["items"]
    return {x["metadata"]["name"]: x["spec"]["renewTime"] for x in items
            if x["metadata"]["name"].startswith(prefix)}


@pytest.mark.slow
async def test_runner_leases_are_renewed_by_its_lane_until_it_stops(tmp_path: Any) -> None:
    nodes = 6
    prefix = f"hl-{os.getpid()}"
    figures: list[dict[str, Any]] = []
    async with trio.open_nursery() as outer:
        registry, url = await _serve_master(outer)
        with trio.CancelScope() as runner_scope:
            async with trio.open_nursery() as nursery:
                agents = await nursery.start(lambda task_status: run_hollow_nodes(
                    nodes, servers=[url], token=TOKEN, data_dir=str(tmp_path), name_prefix=prefix,
                    lease_renew=0.5, stats_observer=figures.append, task_status=task_status))
                assert len(agents) == nodes
                assert all(a.lease_renewed_elsewhere for a in agents)
                with trio.fail_after(30):
                    while len(first := await _renew_times(registry, prefix)) < nodes:
                        await trio.sleep(0.1)
                    # Every node's Lease moves on: the lane renews each of them.
                    while any(t == first[n] for n, t in (await _renew_times(
                            registry, prefix)).items()):
                        await trio.sleep(0.1)
                    while not any(f.get("renewals") for f in figures):  # the lane's summary
                        await trio.sleep(0.1)
                lease = next(x for x in (await registry.list("leases", "kube-node-lease"))["items"]
                             if x["metadata"]["name"] == f"{prefix}-0000")
                node = await registry.get("nodes", None, f"{prefix}-0000")
                assert lease["metadata"]["ownerReferences"][0]["uid"] == node["metadata"]["uid"]
                report = next(f for f in figures if f.get("renewals"))
                assert report["nodes"] == nodes and report["failures_total"] == 0
                assert report["request_p99_s"] < 5 and report["loop_lag_max_s"] is not None
                runner_scope.cancel()
        # The runner is gone: so is its lane, and nothing renews these Leases any more.
        stopped = await _renew_times(registry, prefix)
        await trio.sleep(1.5)  # a window in which nothing may renew: three renew intervals of the lane
        assert await _renew_times(registry, prefix) == stopped
        outer.cancel_scope.cancel()


async def test_lane_renews_nodes_whose_uids_came_with_its_config() -> None:
    """A runner whose nodes register at once sends their uids right behind the config, and
    the lane may read both in one piece: those nodes must be renewed all the same (they were
    not, until the runner wrote again -- never, if every node had registered)."""
    import json
    import subprocess
    import sys

    prefix = f"hlc-{os.getpid()}"
    names = [f"{prefix}-{i}" for i in range(3)]
    config = {"names": names, "token": TOKEN, "verify": False, "renew_interval": 0.5,
              "lease_seconds": 20}
    async with trio.open_nursery() as nursery:
        registry, url = await _serve_master(nursery)
        config["servers"] = [url]
        uids = {name: f"uid-{name}" for name in names}
        lane: trio.Process = await nursery.start(lambda task_status: trio.run_process(
            [sys.executable, "-m", "edge_agent._lease_lane"], stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, check=False, task_status=task_status))
        assert lane.stdin is not None
        await lane.stdin.send_all(json.dumps(config).encode() + b"\n"
                                  + json.dumps(uids).encode() + b"\n")  # one write
        with trio.fail_after(15):
            while len(await _renew_times(registry, prefix)) < len(names):
                await trio.sleep(0.1)
        lease = next(x for x in (await registry.list("leases", "kube-node-lease"))["items"]
                     if x["metadata"]["name"] == names[0])
        assert lease["metadata"]["ownerReferences"][0]["uid"] == f"uid-{names[0]}"
        await lane.stdin.aclose()  # the lane ends with its stdin
        with trio.fail_after(10):
            await lane.wait()
        nursery.cancel_scope.cancel()


@pytest.mark.slow
async def test_hollow_pods_share_their_template_parts_and_nothing_changes_them(
        tmp_path: Any) -> None:
    """Pods of one template on different hollow nodes of a runner hold one copy of their
    containers, labels and owner; after the nodes ran them (statuses written), those shared
    parts still equal what the API holds: no agent changed a part another node's pod uses."""
    prefix = f"hs-{os.getpid()}"
    template = {"containers": [{"name": "web", "image": "demo:1.0",
                                "resources": {"requests": {"cpu": "10m"}}}],
                "tolerations": [{"key": "k", "operator": "Exists"}]}
    async with trio.open_nursery() as outer:
        registry, url = await _serve_master(outer)
        agents = await outer.start(lambda task_status: run_hollow_nodes(
            2, servers=[url], token=TOKEN, data_dir=str(tmp_path), name_prefix=prefix,
            task_status=task_status))
        for i in range(4):
            await registry.create("pods", "default", {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": f"{prefix}-p{i}", "labels": {"app": prefix},
                             "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                                  "name": "rs", "uid": "rs-uid"}]},
                "spec": {**template, "nodeName": f"{prefix}-{i % 2:04d}"}})

        async def running() -> int:
            items = (await registry.list("pods", "default"))["items"]
            return sum(1 for p in items if p["metadata"]["name"].startswith(prefix)
                       and (p.get("status") or {}).get("phase") == "Running")

        with trio.fail_after(30):
            while await running() < 4:
                await trio.sleep(0.1)
        pods = [pod for agent in agents for pod in agent.syncer.desired.values()]
        assert len(pods) == 4
        first = pods[0]
        for pod in pods[1:]:
            assert pod["spec"]["containers"] is first["spec"]["containers"]
            assert pod["spec"]["tolerations"] is first["spec"]["tolerations"]
            assert pod["metadata"]["labels"] is first["metadata"]["labels"]
            assert pod["metadata"]["ownerReferences"] is first["metadata"]["ownerReferences"]
        stored = await registry.get("pods", "default", first["metadata"]["name"])
        for part in ("containers", "tolerations"):
            assert first["spec"][part] == stored["spec"][part]
        assert first["metadata"]["labels"] == stored["metadata"]["labels"]
        assert first["metadata"]["ownerReferences"] == stored["metadata"]["ownerReferences"]
        assert {p["spec"]["nodeName"] for p in pods} == {f"{prefix}-0000", f"{prefix}-0001"}
        outer.cancel_scope.cancel()


def test_a_node_whose_lease_is_renewed_elsewhere_sleeps_until_its_status_is_due(
        tmp_path: Any) -> None:
    """An agent renewing its own Lease wakes every renew interval (up to 15 % early); one
    whose Lease a runner's lane renews has only its node status to write, and sleeps through
    the heartbeats until the one at which that is due (one wake-up, same moment)."""
    import time

    from edge_agent import AgentConfig, EdgeAgent, HollowRuntime

    agent = EdgeAgent(AgentConfig(node_name="hb", data_dir=str(tmp_path), lease_renew=10.0,
                                  node_status_interval=300.0), runtime=HollowRuntime("hb"))
    agent._last_node_status = time.monotonic()
    assert all(8.5 <= agent._heartbeat_delay() <= 10.0 for _ in range(200))
    agent.lease_renewed_elsewhere = True
    delays = [agent._heartbeat_delay() for _ in range(200)]
    assert all(300.0 <= d < 310.0 for d in delays), (min(delays), max(delays))
    agent._last_node_status -= 295.0  # due in 5 s: the next heartbeat, as before
    assert all(5.0 <= agent._heartbeat_delay() <= 10.0 for _ in range(200))


@pytest.mark.slow
async def test_hollow_node_status_is_still_written_every_interval(tmp_path: Any) -> None:
    """With its Lease renewed by the lane, a hollow node still writes its node status every
    node_status_interval."""
    prefix = f"hst-{os.getpid()}"
    async with trio.open_nursery() as outer:
        registry, url = await _serve_master(outer)
        [agent] = await outer.start(lambda task_status: run_hollow_nodes(
            1, servers=[url], token=TOKEN, data_dir=str(tmp_path), name_prefix=prefix,
            lease_renew=0.3, node_status_interval=1.0, task_status=task_status))
        versions: list[str] = []
        with trio.fail_after(20):
            await agent.registered.wait()
            while len(versions) < 4:  # registration's write and three more
                node = await registry.get("nodes", None, f"{prefix}-0000")
                rv = node["metadata"]["resourceVersion"]
                if not versions or versions[-1] != rv:
                    versions.append(rv)
                await trio.sleep(0.05)
        outer.cancel_scope.cancel()
