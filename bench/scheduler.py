"""Scheduler throughput: pods/s bound for 10,000 pods onto 1,000 simulated nodes.

Default (in-process): the real object layer (Registry) over the in-process MemoryStore, the real
informers and the real scheduling loop with batched bindings; no HTTP and no Raft round trips,
so this measures the scheduler itself. Pods are created before the clock starts; the clock stops
when every pod is bound.

``--cluster``: the same on a real 3-master local cluster (``edgectl up``): the masters' leader
duties bind, through Raft. The pods are created first while no node exists (they wait as
Unschedulable); the clock starts when the nodes are registered and stops when no pod is left
unbound. The simulated nodes renew their Leases meanwhile, as agents would.

    python -m bench.scheduler [--pods N] [--nodes N] [--cluster] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime

import trio

from controlplane.controllers._informer import Informer
from controlplane.registry import Registry
from controlplane.scheduler import SchedulerService
from raftstore import MemoryStore

# The target from issue 4.
TARGET_PODS_PER_S = 1000
# Concurrent HTTP writes while preparing a cluster run (creates, Lease renewals).
HTTP_CONCURRENCY = 64
# Simulated agents renew their Leases this often, as the real agent does (grace period 8 s).
LEASE_RENEW_S = 5.0


def _node(i: int) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": f"node-{i:04d}", "labels": {"zone": f"z{i % 3}"}},
        "spec": {},
        "status": {
            "allocatable": {"cpu": "16", "memory": "64Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def _pod(i: int, owners: int) -> dict:
    owner = i % owners
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"pod-{i:05d}",
            "namespace": "default",
            "labels": {"app": f"app-{owner}"},
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"rs-{owner}",
                 "uid": f"00000000-0000-0000-0000-{owner:012d}", "controller": True}
            ],
        },
        "spec": {
            "containers": [
                {"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}
            ]
        },
    }


def _replicaset(i: int, replicas: int) -> dict:
    labels = {"app": f"app-{i}"}
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": f"rs-{i}", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": _pod(0, 1)["spec"]},
        },
    }


async def run(pods: int, nodes: int) -> dict:
    store = MemoryStore(history_limit=max(100_000, 4 * pods))
    registry = Registry(store)
    await registry.ensure_namespaces()
    for i in range(nodes):
        await registry.create("nodes", None, _node(i))
    for i in range(pods):
        await registry.create("pods", "default", _pod(i, owners=max(1, pods // 100)))
    async with trio.open_nursery() as nursery:
        pod_inf, node_inf = Informer(registry, "pods"), Informer(registry, "nodes")
        await nursery.start(pod_inf.run)
        await nursery.start(node_inf.run)
        t0, c0 = time.perf_counter(), time.process_time()
        svc = SchedulerService(registry, pod_inf, node_inf)
        await nursery.start(svc.run)
        while svc.bound_total < pods:
            await trio.sleep(0.01)
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - c0
        nursery.cancel_scope.cancel()
    listed = (await registry.list("pods", "default"))["items"]
    bound = sum(1 for p in listed if p["spec"].get("nodeName"))
    per_node: dict[str, int] = {}
    for p in listed:
        per_node[p["spec"]["nodeName"]] = per_node.get(p["spec"]["nodeName"], 0) + 1
    return {
        "benchmark": "scheduler",
        "mode": "in-process Registry over MemoryStore",
        "pods": pods,
        "nodes": nodes,
        "bound": bound,
        "seconds": round(elapsed, 3),
        "pods_per_s": round(bound / elapsed, 1),
        # CPU time of this process: on a shared, loaded machine the wall-clock rate understates
        # what the scheduler does per core.
        "cpu_seconds": round(cpu, 3),
        "pods_per_cpu_s": round(bound / cpu, 1) if cpu > 0 else None,
        "target_pods_per_s": TARGET_PODS_PER_S,
        "max_pods_per_node": max(per_node.values()),
        "min_pods_per_node": min(per_node.values()) if len(per_node) == nodes else 0,
    }


async def _concurrently(fn, items) -> None:
    limiter = trio.CapacityLimiter(HTTP_CONCURRENCY)

    async def one(item) -> None:
        async with limiter:
            await fn(item)

    async with trio.open_nursery() as nursery:
        for item in items:
            nursery.start_soon(one, item)


async def _create(client, resource: str, obj: dict) -> None:
    """Create, riding out leader elections: retry 5xx, and a 409 means an earlier try landed."""
    from controlplane.client import ApiError, ClusterUnreachable

    for _ in range(50):
        try:
            await client.create(resource, obj, namespace=obj["metadata"].get("namespace"))
            return
        except ApiError as exc:
            if exc.code == 409:
                return
            if exc.code < 500:
                raise
        except ClusterUnreachable:
            pass
        await trio.sleep(0.2)
    raise RuntimeError(f"could not create {resource} {obj['metadata']['name']}")


async def _count_pods(client, *, unbound: bool) -> int:
    """Pods in the namespace (all, or only those without a node: 0 or 1 then); -1 on a failover."""
    from controlplane.client import ApiError, ClusterUnreachable

    try:
        if unbound:
            body = await client.list("pods", namespace="default", field_selector="spec.nodeName=", limit=1)
            return len(body.get("items") or [])
        return len((await client.list_all("pods", namespace="default"))["items"])
    except (ApiError, ClusterUnreachable):
        return -1


async def _renew_lease(client, name: str) -> None:
    spec = {"holderIdentity": name, "leaseDurationSeconds": 40,
            "renewTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
    body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": "kube-node-lease"}, "spec": spec}
    try:
        # PUT creates a Lease that does not exist yet (as the agents' heartbeat does).
        await client.update("leases", body)
    except Exception:  # an election in progress: the next round renews
        pass


async def _join(client, i: int) -> None:
    """What an agent does on joining: register its Node, then start its Lease."""
    node = _node(i)
    await _create(client, "nodes", node)
    await _renew_lease(client, node["metadata"]["name"])


async def _renew_leases(client, names: list[str]) -> None:
    while True:
        # A period, not a pause: when a round of renewals is slow, the next starts at once.
        started = trio.current_time()
        await _concurrently(lambda name: _renew_lease(client, name), names)
        await trio.sleep(max(0.0, LEASE_RENEW_S - (trio.current_time() - started)))


async def run_cluster(kubeconfig: str, pods: int, nodes: int) -> dict:
    from controlplane.client import ApiClient

    async with ApiClient.from_kubeconfig(kubeconfig) as client:
        # Real owners (the garbage collector deletes pods whose owner does not exist): the
        # ReplicaSet controller of the leader creates the pods.
        owners = max(1, pods // 100)
        t_create = time.perf_counter()
        await _concurrently(
            lambda i: _create(client, "replicasets", _replicaset(i, pods // owners + (i < pods % owners))),
            range(owners),
        )
        while await _count_pods(client, unbound=False) < pods:
            await trio.sleep(1)
        create_s = time.perf_counter() - t_create
        # Let the pods' first scheduling attempt (0 nodes) and its 1 s backoff pass, so the
        # measurement starts with every pod eligible.
        await trio.sleep(3)
        names = [_node(i)["metadata"]["name"] for i in range(nodes)]
        bound_at: dict[str, float] = {}
        start_rv = (await client.list("pods", namespace="default", limit=1))["metadata"]["resourceVersion"]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_record_bindings, client, start_rv, bound_at)
            t0 = time.perf_counter()
            nursery.start_soon(_renew_leases, client, names)
            await _concurrently(lambda i: _join(client, i), range(nodes))
            nodes_s = time.perf_counter() - t0
            while await _count_pods(client, unbound=True) != 0:
                await trio.sleep(0.1)
            elapsed = time.perf_counter() - t0
            nursery.cancel_scope.cancel()
        times = sorted(t - t0 for t in bound_at.values())
        # Busiest second: the scheduler's rate once enough nodes have joined to take pods.
        peak = max((sum(1 for t in times if w <= t < w + 1.0) for w in times), default=0)
        after_join = [t for t in times if t >= nodes_s]
        listed = await client.list_all("pods", namespace="default")
    live = [p for p in listed["items"] if not p["metadata"].get("deletionTimestamp")]
    bound = sum(1 for p in live if p["spec"].get("nodeName"))
    # Pods evicted meanwhile (a simulated node whose Lease renewal fell behind the grace
    # period on a loaded machine): their replacements are counted, they are not.
    evicted = len(listed["items"]) - len(live)
    return {
        "benchmark": "scheduler",
        "mode": "3-master local cluster (edgectl up), leader duties over Raft, via HTTP",
        "pods": pods,
        "nodes": nodes,
        "bound": bound,
        "pod_create_seconds": round(create_s, 3),
        "node_register_seconds": round(nodes_s, 3),
        "seconds": round(elapsed, 3),
        "pods_per_s": round(bound / elapsed, 1),
        "peak_pods_per_s_1s_window": peak,
        "bound_after_all_nodes_joined": len(after_join),
        "evicted_during_run": evicted,
        "target_pods_per_s": TARGET_PODS_PER_S,
    }


async def _record_bindings(client, start_rv: str, bound_at: dict[str, float]) -> None:
    async for ev in client.watch("pods", namespace="default", resource_version=start_rv):
        obj = ev.get("object") or {}
        if (obj.get("spec") or {}).get("nodeName"):
            bound_at.setdefault(obj["metadata"]["name"], time.perf_counter())


def _run_on_local_cluster(pods: int, nodes: int) -> dict:
    from cli._local import start_local_cluster, stop_local_cluster

    with tempfile.TemporaryDirectory(prefix="bench-scheduler-") as tmp:
        cluster = start_local_cluster(tmp, masters=3)
        try:
            return trio.run(run_cluster, str(cluster.kubeconfig), pods, nodes)
        finally:
            stop_local_cluster(cluster)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pods", type=int, default=10_000)
    ap.add_argument("--nodes", type=int, default=1_000)
    ap.add_argument("--cluster", action="store_true",
                    help="measure on a real 3-master local cluster instead of in-process")
    ap.add_argument("--json", action="store_true", help="print only the JSON object")
    args = ap.parse_args(argv)
    if args.pods <= 0 or args.nodes <= 0:
        print("error: --pods and --nodes must be positive", file=sys.stderr)
        return 2
    if args.cluster:
        result = _run_on_local_cluster(args.pods, args.nodes)
    else:
        result = trio.run(run, args.pods, args.nodes)
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>20}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
