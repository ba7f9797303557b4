"""Scheduler throughput: pods/s bound for 10,000 pods onto 1,000 simulated nodes.

In-process: the real object layer (Registry) over the in-process MemoryStore, the real informers
and the real scheduling loop with batched bindings; no HTTP and no Raft round trips, so this
measures the scheduler itself. Pods are created before the clock starts; the clock stops when
every pod is bound.

    python -m bench.scheduler [--pods N] [--nodes N] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import trio

from controlplane.controllers._informer import Informer
from controlplane.registry import Registry
from controlplane.scheduler import SchedulerService
from raftstore import MemoryStore

# The target from issue 4.
TARGET_PODS_PER_S = 1000


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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pods", type=int, default=10_000)
    ap.add_argument("--nodes", type=int, default=1_000)
    ap.add_argument("--json", action="store_true", help="print only the JSON object")
    args = ap.parse_args(argv)
    if args.pods <= 0 or args.nodes <= 0:
        print("error: --pods and --nodes must be positive", file=sys.stderr)
        return 2
    result = trio.run(run, args.pods, args.nodes)
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>20}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
