"""The agent against the project's real API server (controlplane.apiserver over a MemoryStore,
served by hypercorn on loopback), with one or two "masters" sharing the store.

Registration, Lease renewal, the pod watch, status writes, graceful deletion, fail-over between
masters, re-list on 410, and edge autonomy: every master gone, agent restarted, masters back.
API servers listen on 127.0.0.1:24600-24699 (this package's port range).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
from typing import Any

import httpx
import pytest
import trio

from controlplane.apiserver import StaticTokenAuthenticator, User, create_app, serve_api
from controlplane.errors import ApiError as RegistryError
from controlplane.registry import Registry
from edge_agent import (
    HOST_PORTS_ANNOTATION,
    AgentConfig,
    EdgeAgent,
    HollowRuntime,
    HttpApiSession,
    ResourceExpired,
    run_agent,
)
from raftstore import MemoryStore

from .conftest import pod, wait_for

TOKEN = "agent-test-token"
# API server ports for these tests (inside this package's 24000-24999 share).
_API_PORTS = itertools.cycle(range(24600 + (os.getpid() % 10) * 10, 24700))


class Master:
    """One API server over a shared store; `stop()` and `start()` like a master process."""

    def __init__(self, nursery: trio.Nursery, store: MemoryStore, registry: Registry) -> None:
        self.nursery, self.store, self.registry = nursery, store, registry
        auth = StaticTokenAuthenticator({TOKEN: User("system:node:test", ("system:nodes",), "node")})
        self.app = create_app(registry, store=store, authenticator=auth, info={},
                              bookmark_interval=0.5)
        self.port = 0
        self.scope: trio.CancelScope | None = None

    async def start(self) -> None:
        for _ in range(10):
            port = self.port or next(_API_PORTS)
            scope = trio.CancelScope()

            async def run(task_status: trio.TaskStatus[None], port: int = port,
                          scope: trio.CancelScope = scope) -> None:
                with scope:
                    await serve_api(self.app, host="127.0.0.1", port=port,
                                    task_status=task_status)

            try:
                await self.nursery.start(run)
            except OSError:
                if self.port:
                    await trio.sleep(0.2)  # our own old socket is still closing
                continue
            self.port, self.scope = port, scope
            return
        raise RuntimeError("could not bind an API server port")

    def stop(self) -> None:
        assert self.scope is not None
        self.scope.cancel()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


async def masters(nursery: trio.Nursery, n: int, **store_kw: Any) -> list[Master]:
    store = MemoryStore(**store_kw)
    registry = Registry(store)
    await registry.ensure_namespaces()
    out = [Master(nursery, store, registry) for _ in range(n)]
    for m in out:
        await m.start()
    return out


async def get(registry: Registry, resource: str, namespace: str | None,
              name: str) -> dict[str, Any] | None:
    try:
        return await registry.get(resource, namespace, name)
    except RegistryError:
        return None


async def hollow_agent(nursery: trio.Nursery, cfg: AgentConfig) -> EdgeAgent:
    """An agent on a HollowRuntime (statuses only, no containers), started in `nursery`."""
    return await nursery.start(lambda task_status: run_agent(
        cfg, runtime=HollowRuntime(cfg.node_name), task_status=task_status))


def config(node_name: str, address: str, tmp_path: Any, urls: list[str], **kw: Any) -> AgentConfig:
    return AgentConfig(node_name=node_name, data_dir=str(tmp_path / node_name), address=address,
                       servers=urls, token=TOKEN, log_port=None, lease_renew=0.3,
                       pull_registries=["127.0.0.1:24999"], **kw)


async def test_agent_registers_its_node_and_renews_its_lease(node_name, node_address, tmp_path):
    async with trio.open_nursery() as nursery:
        [m] = await masters(nursery, 1)
        cfg = config(node_name, node_address, tmp_path, [m.url], labels={"site": "shop-7"})
        agent: EdgeAgent = await hollow_agent(nursery, cfg)
        node = await wait_for_async(lambda: get(m.registry, "nodes", None, node_name), 10,
                                    "the Node")
        st = node["status"]
        assert st["capacity"]["cpu"] == str(os.cpu_count())
        assert st["capacity"]["pods"] == "110" and st["capacity"]["memory"].endswith("Ki")
        assert {"type": "InternalIP", "address": node_address} in st["addresses"]
        assert node["metadata"]["labels"]["kubernetes.io/hostname"] == node_name
        assert node["metadata"]["labels"]["site"] == "shop-7"
        ready = next(c for c in st["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True"
        lease = await wait_for_async(
            lambda: get(m.registry, "leases", "kube-node-lease", node_name), 10, "the Lease")
        assert lease["spec"]["holderIdentity"] == node_name
        first = lease["spec"]["renewTime"]

        async def renewed() -> bool:
            later = await get(m.registry, "leases", "kube-node-lease", node_name)
            return bool(later and later["spec"]["renewTime"] > first)

        await wait_for_async(renewed, 5, "a renewed Lease")
        assert agent.registered.is_set()
        nursery.cancel_scope.cancel()


async def wait_for_async(fn: Any, timeout: float, what: str) -> Any:
    with trio.move_on_after(timeout):
        while True:
            value = await fn()
            if value:
                return value
            await trio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def test_pod_status_and_graceful_deletion_through_the_api(node_name, node_address,
                                                               tmp_path):
    async with trio.open_nursery() as nursery:
        [m] = await masters(nursery, 1)
        cfg = config(node_name, node_address, tmp_path, [m.url])
        await hollow_agent(nursery, cfg)
        created = await m.registry.create("pods", "default", pod("h-1", node_name=node_name))

        async def running() -> dict[str, Any] | None:
            p = await get(m.registry, "pods", "default", "h-1")
            conds = {c["type"]: c["status"] for c in (p or {}).get("status", {}).get(
                "conditions", [])}
            return p if p and p["status"].get("phase") == "Running" and conds.get(
                "Ready") == "True" else None

        p = await wait_for_async(running, 10, "h-1 Running and Ready in the API")
        assert p["metadata"]["uid"] == created["metadata"]["uid"]
        assert p["status"]["hostIP"] == node_address
        ports = json.loads(p["metadata"]["annotations"][HOST_PORTS_ANNOTATION])
        assert set(ports) == {"80/TCP"}
        cs = p["status"]["containerStatuses"][0]
        assert cs["containerID"].startswith("hollow://") and cs["ready"] is True

        # Graceful delete: the server only marks the pod; the agent stops it and removes it.
        await m.registry.delete("pods", "default", "h-1", grace_period_seconds=30)
        marked = await get(m.registry, "pods", "default", "h-1")
        assert marked is None or marked["metadata"].get("deletionTimestamp")

        async def gone() -> bool:
            return await get(m.registry, "pods", "default", "h-1") is None

        await wait_for_async(gone, 10, "the pod object removed by the agent")
        nursery.cancel_scope.cancel()


async def test_watch_from_a_compacted_revision_is_410_and_the_agent_relists(
        node_name, node_address, tmp_path):
    async with trio.open_nursery() as nursery:
        [m] = await masters(nursery, 1, history_limit=5)
        session = HttpApiSession([m.url], TOKEN)
        _, rv = await session.list_pods(node_name)
        for i in range(12):  # push the start revision out of the bounded history
            await m.registry.create("configmaps", "default",
                                    {"metadata": {"name": f"cm-{i}"}, "data": {"i": str(i)}})

        async def ignore(etype: str, obj: dict[str, Any]) -> None:
            pass

        with pytest.raises(ResourceExpired):
            await session.watch_pods(node_name, rv, ignore)
        await session.aclose()
        # The agent re-lists and still converges.
        cfg = config(node_name, node_address, tmp_path, [m.url])
        agent: EdgeAgent = await hollow_agent(nursery, cfg)
        await m.registry.create("pods", "default", pod("after", node_name=node_name))
        await wait_for(lambda: agent.syncer.find_pod("default", "after"), 10, "pod seen")
        nursery.cancel_scope.cancel()


@pytest.mark.docker
@pytest.mark.slow
async def test_edge_autonomy_masters_gone_agent_restarted_masters_back(
        demo_image, node_name, node_address, tmp_path):
    """Issue 5: masters all stopped -> pods keep serving; agent restart during the outage keeps
    them; masters back -> no pod recreated, pods deleted meanwhile are stopped."""
    async def serves(ports: dict[str, int], name: str) -> bool:
        try:
            async with httpx.AsyncClient(trust_env=False, timeout=2) as c:
                r = await c.get(f"http://{node_address}:{ports['80/TCP']}/")
                return f"pod: {name}" in r.text
        except httpx.HTTPError:
            return False

    def container_ids() -> set[str]:
        return set(subprocess.run(
            ["docker", "ps", "-q", "--no-trunc", "--filter", f"label=io.edgeplane.node={node_name}"],
            capture_output=True, text=True, check=True).stdout.split())

    async with trio.open_nursery() as outer:
        a, b = await masters(outer, 2)
        cfg = config(node_name, node_address, tmp_path, [a.url, b.url])

        async def agent_run(task_status: trio.TaskStatus[EdgeAgent]) -> None:
            await run_agent(cfg, task_status=task_status)

        agent_scope = trio.CancelScope()
        agent_ended = trio.Event()

        async def scoped_agent(task_status: trio.TaskStatus[EdgeAgent]) -> None:
            try:
                with agent_scope:
                    await agent_run(task_status=task_status)
            finally:
                agent_ended.set()

        agent: EdgeAgent = await outer.start(scoped_agent)
        for name in ("keep", "drop"):
            await a.registry.create("pods", "default", pod(name, node_name=node_name))

        async def host_ports(name: str) -> dict[str, int] | None:
            p = await get(a.registry, "pods", "default", name)
            ann = ((p or {}).get("metadata", {}).get("annotations") or {}).get(
                HOST_PORTS_ANNOTATION)
            if not ann or (p or {}).get("status", {}).get("phase") != "Running":
                return None
            ports = json.loads(ann)
            return ports if ports and await serves(ports, name) else None

        keep_ports = await wait_for_async(lambda: host_ports("keep"), 30, "keep serving")
        await wait_for_async(lambda: host_ports("drop"), 30, "drop serving")
        ids_before = container_ids()
        assert len(ids_before) == 2

        # Fail-over: the first master goes away; work continues through the second.
        a.stop()
        await a.registry.create("pods", "default", pod("late", node_name=node_name))
        await wait_for_async(lambda: host_ports("late"), 30, "late serving (via master b)")

        # Every master gone. Pods keep serving; a crashed container is restarted locally.
        b.stop()
        ids = container_ids()
        keep_id = next(i for i in ids if i in ids_before and subprocess.run(
            ["docker", "inspect", "-f", '{{index .Config.Labels "io.edgeplane.pod.name"}}', i],
            capture_output=True, text=True).stdout.strip() == "keep")
        assert await serves(keep_ports, "keep")

        # The agent restarts during the outage: it recovers pods from its cache and adopts.
        agent_scope.cancel()
        with trio.fail_after(10):
            await agent_ended.wait()
        agent_scope, agent_ended = trio.CancelScope(), trio.Event()
        agent = await outer.start(scoped_agent)
        assert len(agent.syncer.desired) == 3
        await agent.syncer.wait_rounds(3)
        assert container_ids() == ids  # adopted, nothing recreated
        assert await serves(keep_ports, "keep")

        # Meanwhile "drop" is deleted (grace 0: gone from the store at once).
        await a.registry.delete("pods", "default", "drop", grace_period_seconds=0)
        # Masters come back: no pod recreated, the deleted one is stopped.
        await a.start()
        await b.start()
        await wait_for(lambda: agent.synced_with_master.is_set(), 30, "re-list after outage")
        await wait_for(lambda: len(container_ids()) == 2, 30, "drop stopped")
        assert keep_id in container_ids()
        assert await serves(keep_ports, "keep")
        outer.cancel_scope.cancel()


@pytest.mark.slow
async def test_many_hollow_nodes_in_one_process(tmp_path):
    """Scale-test mode: simulated nodes (no containers) register, heartbeat and run pods."""
    from edge_agent import run_hollow_nodes

    nodes, pods = 30, 120
    prefix = f"hollow-{os.getpid()}"
    async with trio.open_nursery() as nursery:
        [m] = await masters(nursery, 1)
        agents = await nursery.start(lambda task_status: run_hollow_nodes(
            nodes, servers=[m.url], token=TOKEN, data_dir=str(tmp_path), name_prefix=prefix,
            task_status=task_status))
        assert len(agents) == nodes

        async def registered() -> bool:
            items = (await m.registry.list("nodes"))["items"]
            return len([n for n in items if n["metadata"]["name"].startswith(prefix)]) == nodes

        await wait_for_async(registered, 20, f"{nodes} hollow Nodes")
        for i in range(pods):
            await m.registry.create("pods", "default", pod(
                f"s-{i}", node_name=f"{prefix}-{i % nodes:04d}",
                readinessProbe={"httpGet": {"port": 80}}))

        async def all_ready() -> bool:
            items = (await m.registry.list("pods", "default"))["items"]
            return sum(1 for p in items if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in (p.get("status") or {}).get("conditions", []))) == pods

        await wait_for_async(all_ready, 30, f"{pods} hollow pods Ready")
        leases = (await m.registry.list("leases", "kube-node-lease"))["items"]
        assert len([x for x in leases if x["metadata"]["name"].startswith(prefix)]) == nodes
        node = await m.registry.get("nodes", None, f"{prefix}-0000")
        assert node["metadata"]["labels"]["edgeplane.io/hollow"] == "true"
        assert node["status"]["nodeInfo"]["containerRuntimeVersion"] == "hollow://simulated"
        nursery.cancel_scope.cancel()


async def test_agent_talks_to_a_tls_master_verified_with_the_cluster_ca(node_name, node_address,
                                                                       tmp_path):
    from controlplane._master_tls import new_ca

    ca = new_ca()
    cert_pem, key_pem = ca.issue_server("127.0.0.1")
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    (tmp_path / "tls.crt").write_bytes(cert_pem)
    (tmp_path / "tls.key").write_bytes(key_pem)
    store = MemoryStore()
    registry = Registry(store)
    await registry.ensure_namespaces()
    app = create_app(registry, store=store, info={}, authenticator=StaticTokenAuthenticator(
        {TOKEN: User("system:node:test", ("system:nodes",), "node")}))
    async with trio.open_nursery() as nursery:
        port = next(_API_PORTS)
        await nursery.start(lambda task_status: serve_api(
            app, host="127.0.0.1", port=port, ssl_certfile=str(tmp_path / "tls.crt"),
            ssl_keyfile=str(tmp_path / "tls.key"), task_status=task_status))
        cfg = config(node_name, node_address, tmp_path, [f"https://127.0.0.1:{port}"],
                     verify=str(tmp_path / "ca.crt"))
        agent: EdgeAgent = await hollow_agent(nursery, cfg)
        await wait_for(agent.registered.is_set, 10, "registration over TLS")
        nursery.cancel_scope.cancel()


@pytest.mark.docker
async def test_agent_restart_does_not_flap_readiness(demo_image, node_name, node_address,
                                                     tmp_path):
    """Adopted containers keep their last readiness: a Service does not lose its endpoints
    because the agent restarted (probes are slow here, so a reset would show for 30 s)."""
    async with trio.open_nursery() as outer:
        [m] = await masters(outer, 1)
        cfg = config(node_name, node_address, tmp_path, [m.url])
        scope = trio.CancelScope()

        agent_ended = trio.Event()

        async def agent_run(task_status: trio.TaskStatus[EdgeAgent]) -> None:
            try:
                with scope:
                    await run_agent(cfg, task_status=task_status)
            finally:
                agent_ended.set()

        await outer.start(agent_run)
        await m.registry.create("pods", "default", pod(
            "steady", node_name=node_name,
            readinessProbe={"tcpSocket": {"port": 80}, "periodSeconds": 30}))

        async def ready_state() -> bool | None:
            p = await get(m.registry, "pods", "default", "steady")
            for c in (p or {}).get("status", {}).get("conditions", []):
                if c["type"] == "Ready":
                    return c["status"] == "True"
            return None

        await wait_for_async(ready_state, 30, "steady Ready")
        cache_dir = tmp_path / node_name / "pods"
        await wait_for(lambda: any('"ready":true' in f.read_text()
                                   for f in cache_dir.glob("*.json")), 10, "readiness cached")
        scope.cancel()
        with trio.fail_after(10):
            await agent_ended.wait()
        scope, agent_ended = trio.CancelScope(), trio.Event()
        seen: list[bool | None] = []

        async def watch_ready() -> None:
            while True:
                seen.append(await ready_state())
                await trio.sleep(0.02)

        outer.start_soon(watch_ready)
        agent: EdgeAgent = await outer.start(agent_run)
        await wait_for(lambda: agent.synced_with_master.is_set(), 10, "re-listed")
        await agent.syncer.wait_rounds(3)
        await trio.sleep(0.5)  # observation window: Ready must stay True throughout, nothing to wait for
        assert seen and all(seen), "Ready went False after the agent restarted"
        outer.cancel_scope.cancel()


@pytest.mark.docker
async def test_lost_cache_keeps_containers_until_the_masters_list_says_otherwise(
        demo_image, node_name, node_address, tmp_path):
    from edge_agent import AgentConfig as Config

    # A first agent (no masters) runs a pod; then the node's cache is lost.
    first = Config(node_name=node_name, data_dir=str(tmp_path / "old"), address=node_address,
                   log_port=None, pull_registries=["127.0.0.1:24999"])
    async with trio.open_nursery() as nursery:
        agent: EdgeAgent = await nursery.start(run_agent, first)
        p = pod("survivor", node_name=node_name)
        await agent.cache.put(p)
        agent.syncer.upsert(p)
        await wait_for(lambda: any(c.running for c in agent.syncer.containers.get(
            p["metadata"]["uid"], [])), 20, "running")
        nursery.cancel_scope.cancel()

    def running_ids() -> list[str]:
        return subprocess.run(["docker", "ps", "-q", "--filter",
                               f"label=io.edgeplane.node={node_name}"],
                              capture_output=True, text=True, check=True).stdout.split()

    assert len(running_ids()) == 1
    async with trio.open_nursery() as nursery:
        store = MemoryStore()
        registry = Registry(store)
        await registry.ensure_namespaces()
        m = Master(nursery, store, registry)
        m.port = next(_API_PORTS)
        cfg = config(node_name, node_address, tmp_path / "new", [m.url])
        agent = await nursery.start(run_agent, cfg)
        await agent.syncer.wait_rounds(3)
        assert len(running_ids()) == 1  # no master has answered: nothing is killed
        await m.start()  # the masters know no such pod
        await wait_for(lambda: not running_ids(), 30, "orphan removed after the list")
        nursery.cancel_scope.cancel()
