"""The scheduling loop against the real object layer (Registry over an in-process MemoryStore)."""

from __future__ import annotations

import trio
from _sched_factories import make_node, make_pod

from controlplane.controllers._informer import Informer
from controlplane.controllers.events import EventRecorder
from controlplane.registry import Registry
from controlplane.scheduler import SchedulerService
from raftstore import MemoryStore


def _strip(obj: dict) -> dict:
    # The factories add fields the API server owns (uid); let it assign them.
    obj = dict(obj)
    obj["metadata"] = {k: v for k, v in obj["metadata"].items() if k != "uid"}
    return obj


async def _until(predicate, timeout: float = 5.0) -> None:
    with trio.fail_after(timeout):
        while not await predicate():
            await trio.sleep(0.01)


async def _setup(nursery, registry):
    pods, nodes = Informer(registry, "pods"), Informer(registry, "nodes")
    await nursery.start(pods.run)
    await nursery.start(nodes.run)
    recorder = EventRecorder(registry, "default-scheduler")
    await nursery.start(recorder.run)
    svc = SchedulerService(registry, pods, nodes, recorder)
    await nursery.start(svc.run)
    return svc


async def test_binds_pods_and_reports_unschedulable_then_retries_when_a_node_appears():
    registry = Registry(MemoryStore())
    await registry.ensure_namespaces()
    for i in range(3):
        await registry.create("nodes", None, make_node(f"n{i}", cpu="1"))
    async with trio.open_nursery() as nursery:
        await _setup(nursery, registry)
        for i in range(3):
            await registry.create("pods", "default", _strip(make_pod(f"p{i}", cpu="600m")))
        await registry.create("pods", "default", _strip(make_pod("big", cpu="2")))

        async def all_small_bound():
            items = (await registry.list("pods", "default"))["items"]
            return sum(1 for p in items if p["spec"].get("nodeName")) == 3

        await _until(all_small_bound)
        items = {p["metadata"]["name"]: p for p in (await registry.list("pods", "default"))["items"]}
        # 600m each on 1-cpu nodes: one per node.
        assert sorted(items[f"p{i}"]["spec"]["nodeName"] for i in range(3)) == ["n0", "n1", "n2"]
        scheduled = next(c for c in items["p0"]["status"]["conditions"] if c["type"] == "PodScheduled")
        assert scheduled["status"] == "True"

        async def big_unschedulable():
            pod = await registry.get("pods", "default", "big")
            cond = next((c for c in pod["status"].get("conditions") or [] if c["type"] == "PodScheduled"), None)
            return cond is not None and cond["status"] == "False"

        await _until(big_unschedulable)
        pod = await registry.get("pods", "default", "big")
        cond = next(c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled")
        assert cond["reason"] == "Unschedulable"
        assert cond["message"] == "0/3 nodes are available: 3 Insufficient cpu."

        async def failed_event():
            evs = (await registry.list("events", "default"))["items"]
            return any(e["reason"] == "FailedScheduling" and e["involvedObject"]["name"] == "big" for e in evs)

        await _until(failed_event)

        await registry.create("nodes", None, make_node("huge", cpu="8"))

        async def big_bound():
            return (await registry.get("pods", "default", "big"))["spec"].get("nodeName") == "huge"

        await _until(big_bound)
        nursery.cancel_scope.cancel()


async def test_many_pods_are_bound_in_batches_without_overcommitting():
    store = MemoryStore()
    registry = Registry(store)
    await registry.ensure_namespaces()
    for i in range(20):
        await registry.create("nodes", None, make_node(f"n{i}", cpu="2", pods="110"))
    for i in range(50):
        await registry.create("pods", "default", _strip(make_pod(f"p{i}", cpu="500m")))
    async with trio.open_nursery() as nursery:
        svc = await _setup(nursery, registry)
        svc.recorder = None  # count only binding writes below

        async def bound():
            items = (await registry.list("pods", "default"))["items"]
            return all(p["spec"].get("nodeName") for p in items)

        await _until(bound)
        nursery.cancel_scope.cancel()
    items = (await registry.list("pods", "default"))["items"]
    per_node: dict[str, int] = {}
    for p in items:
        per_node[p["spec"]["nodeName"]] = per_node.get(p["spec"]["nodeName"], 0) + 1
    assert max(per_node.values()) <= 4  # 2 cpu / 500m
    assert svc.bound_total == 50


async def test_unschedulable_pod_is_retried_with_backoff_not_on_every_event(autojump_clock):
    """A burst of cluster changes must not re-run and re-write a pending pod each time
    (kube-scheduler's per-pod backoff: 1 s doubling to 10 s)."""
    registry = Registry(MemoryStore())
    await registry.ensure_namespaces()
    pod = await registry.create("pods", "default", _strip(make_pod("big", cpu="64")))
    writes: list[float] = []

    async def count_writes():
        async for batch in registry.watch("pods", "default", resource_version=pod["metadata"]["resourceVersion"]):
            writes.extend(trio.current_time() for ev in batch if ev.type == "MODIFIED")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(count_writes)
        await _setup(nursery, registry)
        start = trio.current_time()
        for i in range(40):  # a node joins every 100 ms for 4 s, none big enough
            await registry.create("nodes", None, make_node(f"n{i}", cpu="1"))
            await trio.sleep(0.1)
        await trio.sleep(1)  # back-off timing test: the window itself is what is measured
        # Attempts at ~0 s, then no sooner than 1, 3 (1+2) s after: at most 3 status writes.
        assert 1 <= len(writes) <= 3, [round(t - start, 2) for t in writes]
        cond = next(c for c in (await registry.get("pods", "default", "big"))["status"]["conditions"]
                    if c["type"] == "PodScheduled")
        assert cond["reason"] == "Unschedulable" and "Insufficient cpu" in cond["message"]
        nursery.cancel_scope.cancel()


async def test_required_anti_affinity_replicas_one_per_node_rest_unschedulable():
    """Five replicas that refuse to share a node, three nodes: three bound on distinct nodes,
    two Pending with the anti-affinity reason (and identical pods are not re-evaluated wrongly)."""
    registry = Registry(MemoryStore())
    await registry.ensure_namespaces()
    for i in range(3):
        await registry.create("nodes", None, make_node(f"n{i}"))
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}]}}
    for i in range(5):
        await registry.create("pods", "default", _strip(make_pod(f"db-{i}", labels={"app": "db"}, affinity=anti)))
    async with trio.open_nursery() as nursery:
        await _setup(nursery, registry)

        async def settled():
            items = (await registry.list("pods", "default"))["items"]
            pending = [p for p in items if any(c["type"] == "PodScheduled" and c["status"] == "False"
                                               for c in p["status"].get("conditions") or [])]
            return sum(1 for p in items if p["spec"].get("nodeName")) == 3 and len(pending) == 2

        await _until(settled)
        items = (await registry.list("pods", "default"))["items"]
        assert sorted(p["spec"]["nodeName"] for p in items if p["spec"].get("nodeName")) == ["n0", "n1", "n2"]
        for p in items:
            if not p["spec"].get("nodeName"):
                cond = next(c for c in p["status"]["conditions"] if c["type"] == "PodScheduled")
                assert cond["message"] == (
                    "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules."
                )
        nursery.cancel_scope.cancel()


async def test_status_updates_of_a_bound_pod_keep_its_room_until_it_finishes():
    # The scheduler skips re-counting a bound pod on status-only events; the room it holds
    # must stay taken through them, and be freed when the pod finishes.
    registry = Registry(MemoryStore())
    await registry.ensure_namespaces()
    await registry.create("nodes", None, make_node("n0", cpu="1"))
    async with trio.open_nursery() as nursery:
        await _setup(nursery, registry)
        await registry.create("pods", "default", _strip(make_pod("a", cpu="600m")))

        async def a_bound():
            return bool((await registry.get("pods", "default", "a"))["spec"].get("nodeName"))

        await _until(a_bound)
        for phase in ("Pending", "Running", "Running"):
            pod = await registry.get("pods", "default", "a")
            status = {**pod.get("status", {}), "phase": phase, "podIP": f"10.0.0.{len(phase)}"}
            await registry.update_status("pods", "default", "a", {**pod, "status": status})
        await registry.create("pods", "default", _strip(make_pod("b", cpu="600m")))

        async def b_unschedulable():
            pod = await registry.get("pods", "default", "b")
            cond = next((c for c in pod["status"].get("conditions") or [] if c["type"] == "PodScheduled"), None)
            return cond is not None and cond["status"] == "False"

        await _until(b_unschedulable)
        assert "Insufficient cpu" in next(
            c for c in (await registry.get("pods", "default", "b"))["status"]["conditions"]
            if c["type"] == "PodScheduled")["message"]

        pod = await registry.get("pods", "default", "a")
        await registry.update_status("pods", "default", "a", {**pod, "status": {**pod["status"], "phase": "Succeeded"}})

        async def b_bound():
            return (await registry.get("pods", "default", "b"))["spec"].get("nodeName") == "n0"

        await _until(b_bound, timeout=15)
        nursery.cancel_scope.cancel()


async def test_snapshot_counts_each_bound_pod_once_as_its_bound_version():
    # The bound version of a pod the scheduler assumed replaces the assumed copy's object
    # without counting the pod twice (room, spread counts).
    registry = Registry(MemoryStore())
    await registry.ensure_namespaces()
    for i in range(4):
        await registry.create("nodes", None, make_node(f"n{i}", cpu="2", pods="110"))
    for i in range(12):
        await registry.create("pods", "default", _strip(make_pod(f"p{i}", cpu="500m", owner_uid="rs-1")))
    async with trio.open_nursery() as nursery:
        svc = await _setup(nursery, registry)

        def all_bound_seen() -> bool:
            return all(p["spec"].get("nodeName") for p in svc.pods.cache.values()) and len(svc.pods.cache) == 12

        with trio.fail_after(10):
            while not all_bound_seen():
                await svc.pods.wait_for(all_bound_seen)
        nursery.cancel_scope.cancel()
    counted = {k: (n.name, p) for n in svc.snapshot.nodes.values() for k, p in n.pods.items()}
    assert len(counted) == 12
    for key, (node, info) in counted.items():
        assert info.obj["spec"]["nodeName"] == node == svc.pods.get(key)["spec"]["nodeName"]
    for n in svc.snapshot.nodes.values():
        assert n.req_cpu == 500 * len(n.pods) and len(n.pods) == 3  # spread evenly, counted once
    assert sum(svc.snapshot.owner_counts["rs-1"].values()) == 12


async def test_batches_bound_while_the_next_is_scheduled_never_overcommit():
    # Small batches: several binding rounds are in flight while later pods are scheduled
    # against the assumed ones; no node may end up with more than it can hold.
    registry = Registry(MemoryStore())
    await registry.ensure_namespaces()
    for i in range(6):
        await registry.create("nodes", None, make_node(f"n{i}", cpu="2", pods="110"))
    for i in range(30):  # room for 24: 6 stay unschedulable
        await registry.create("pods", "default", _strip(make_pod(f"p{i}", cpu="500m")))
    async with trio.open_nursery() as nursery:
        pods, nodes = Informer(registry, "pods"), Informer(registry, "nodes")
        await nursery.start(pods.run)
        await nursery.start(nodes.run)
        svc = SchedulerService(registry, pods, nodes, None, batch_size=4)
        await nursery.start(svc.run)

        async def settled():
            items = (await registry.list("pods", "default"))["items"]
            bound = sum(1 for p in items if p["spec"].get("nodeName"))
            waiting = sum(1 for p in items if any(
                c["type"] == "PodScheduled" and c["status"] == "False" for c in p["status"].get("conditions") or []))
            return bound == 24 and waiting == 6

        await _until(settled, timeout=15)
        nursery.cancel_scope.cancel()
    per_node: dict[str, int] = {}
    for p in (await registry.list("pods", "default"))["items"]:
        if p["spec"].get("nodeName"):
            per_node[p["spec"]["nodeName"]] = per_node.get(p["spec"]["nodeName"], 0) + 1
    assert per_node == {f"n{i}": 4 for i in range(6)}
    assert svc.bound_total == 24
