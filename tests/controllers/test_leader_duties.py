"""Leader duties end to end on one in-process store: scheduler + controllers follow leadership."""

from __future__ import annotations

import trio

from controlplane.controllers import NodeLifecycleConfig
from controlplane.leader import DUTIES_LEASE_NAME, DutiesState, LeaderConfig, run_leader_duties
from controlplane.registry import Registry
from raftstore import MemoryStore


def node_body(name: str) -> dict:
    return {
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": {},
        "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                   "conditions": [{"type": "Ready", "status": "True"}]},
    }


def deployment_body(replicas: int) -> dict:
    labels = {"app": "web"}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "c", "image": "nginx:1",
                                                       "resources": {"requests": {"cpu": "100m"}}}]}}},
    }


async def fake_agents(registry: Registry) -> None:
    """What the node agents would do: every bound pod starts and turns Ready; leases renew."""
    i = 0
    while True:
        for pod in (await registry.list("pods", "default"))["items"]:
            if pod["spec"].get("nodeName") and pod["status"].get("phase") == "Pending" \
                    and not pod["metadata"].get("deletionTimestamp"):
                pod["status"] = {**pod["status"], "phase": "Running", "hostIP": "127.0.1.1",
                                 "conditions": [*pod["status"].get("conditions", []),
                                                {"type": "Ready", "status": "True"}]}
                try:
                    await registry.update_status("pods", "default", pod["metadata"]["name"], pod)
                except Exception:
                    pass
            elif pod["metadata"].get("deletionTimestamp"):
                try:
                    await registry.delete("pods", "default", pod["metadata"]["name"], grace_period_seconds=0)
                except Exception:
                    pass
        for n in ("n1", "n2", "n3"):
            spec = {"holderIdentity": n, "renewTime": f"2026-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}.000000Z"}
            try:
                cur = await registry.get("leases", "kube-node-lease", n)
                await registry.update("leases", "kube-node-lease", n, {**cur, "spec": spec})
            except Exception:
                await registry.create("leases", "kube-node-lease", {
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": n, "namespace": "kube-node-lease"}, "spec": spec})
        i += 1
        await trio.sleep(0.05)


def duties_config() -> LeaderConfig:
    # A node grace far above these tests' length: no node is ever marked lost here.
    return LeaderConfig(name="m1", node_lifecycle=NodeLifecycleConfig(grace_period=8.0))


async def seed(registry: Registry, replicas: int) -> None:
    """Namespaces, three equal nodes n1..n3 and the Deployment "web"."""
    await registry.ensure_namespaces()
    for n in ("n1", "n2", "n3"):
        await registry.create("nodes", None, node_body(n))
    await registry.create("deployments", "default", deployment_body(replicas))


async def start_duties(nursery: trio.Nursery, registry: Registry, store: MemoryStore) -> DutiesState:
    """Fake agents plus the leader duties of m1; returns the duties' state."""
    config = duties_config()
    nursery.start_soon(fake_agents, registry)
    return await nursery.start(lambda task_status: run_leader_duties(registry, store, config=config,
                                                                     task_status=task_status))


async def wait_until(predicate, timeout: float = 10.0) -> None:
    with trio.fail_after(timeout):
        while not await predicate():
            await trio.sleep(0.02)


async def available(registry: Registry, n: int) -> bool:
    d = await registry.get("deployments", "default", "web")
    st = d.get("status") or {}
    return (st.get("availableReplicas") == n and st.get("updatedReplicas") == n and st.get("replicas") == n
            and st.get("observedGeneration") == d["metadata"]["generation"])


async def test_duties_follow_leadership_and_restart_fresh():
    store = MemoryStore()
    registry = Registry(store)
    await seed(registry, 6)
    async with trio.open_nursery() as nursery:
        state = await start_duties(nursery, registry, store)
        await wait_until(lambda: available(registry, 6))
        assert state.running and state.terms == 1
        pods = (await registry.list("pods", "default"))["items"]
        assert len(pods) == 6
        # Spread: 6 replicas of one owner on 3 equal nodes -> 2 each.
        per_node: dict[str, int] = {}
        for p in pods:
            per_node[p["spec"]["nodeName"]] = per_node.get(p["spec"]["nodeName"], 0) + 1
        assert sorted(per_node.values()) == [2, 2, 2]
        lease = await registry.get("leases", "kube-system", DUTIES_LEASE_NAME)
        assert lease["spec"]["holderIdentity"] == "m1"

        # Leadership lost: duties stop at once and a scale-up is not acted on.
        store.set_leader(False)
        await wait_until(lambda: _false(state.running))
        d = await registry.get("deployments", "default", "web")
        d["spec"]["replicas"] = 9
        await registry.update("deployments", "default", "web", d)
        await trio.sleep(0.5)  # observation window: no pod may be created while not leading
        assert len((await registry.list("pods", "default"))["items"]) == 6

        # Leadership back: a fresh term (new list+watch) converges to the new spec.
        store.set_leader(True)
        await wait_until(lambda: available(registry, 9))
        assert state.terms == 2
        nursery.cancel_scope.cancel()


async def _false(value: bool) -> bool:
    return not value


class _CountingRegistry(Registry):
    """Counts the lists of Nodes (only the duties' informers list them here)."""

    node_lists = 0

    async def list_kvs(self, resource, *args, **kw):  # type: ignore[no-untyped-def, override]
        if resource == "nodes":
            self.node_lists += 1
        return await super().list_kvs(resource, *args, **kw)


async def test_a_short_leadership_lapse_keeps_the_caches(monkeypatch):
    # Under load a leader can miss one lease renewal and regain it a moment later: duties stop at
    # once (no write without the lease) but resume over the same informers, without re-listing
    # every object, and each term's handlers go away with it (nothing is handled twice).
    from controlplane import leader

    monkeypatch.setattr(leader, "RESTART_BACKOFF", 0.05)
    store = MemoryStore()
    registry = _CountingRegistry(store)
    await seed(registry, 3)
    async with trio.open_nursery() as nursery:
        state = await start_duties(nursery, registry, store)
        await wait_until(lambda: available(registry, 3))
        assert registry.node_lists == 1
        store.set_leader(False)
        await wait_until(lambda: _false(state.running))
        store.set_leader(True)
        d = await registry.get("deployments", "default", "web")
        d["spec"]["replicas"] = 5
        await registry.update("deployments", "default", "web", d)
        await wait_until(lambda: available(registry, 5))
        assert state.terms == 2
        assert registry.node_lists == 1  # the informers did not list again
        assert len((await registry.list("pods", "default"))["items"]) == 5
        nursery.cancel_scope.cancel()
