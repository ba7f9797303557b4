"""CPU per pod of the leader duties (controllers, scheduler, events, informers), in-process.

bench.scale's workload without HTTP and Raft: the real object layer (Registry over the
in-process MemoryStore, with its watch cache) and the real leader duties (``run_duties``:
Deployment, ReplicaSet, scheduler, events, node lifecycle, GC, endpoints). Deployments of
bench.scale's template (100 replicas, its nodeSelector) are created at ``--rate`` per second onto
``--nodes`` Ready nodes; a simulated kubelet marks each bound pod Running and Ready with one
status patch (as a hollow node does). The clock runs from the first create until every
Deployment reports all replicas ready. What it reports is the CPU of this one process over that
span divided by the pods: the duties' work per pod plus the registry's writes, watch cache and
the simulated kubelet's patches (the same in both arms of an A/B), without the API server's
HTTP and the Raft replication a real leader adds.

    python -m bench.duties [--nodes N] [--pods P] [--rate R] [--json] [--profile FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime

import trio

from bench.scale import GROUP_LABEL, HOLLOW_PREFIX, IMAGE, REPLICAS_PER_DEPLOYMENT, deployment_body
from controlplane.controllers import NodeLifecycleConfig
from controlplane.errors import ApiError
from controlplane.leader import LeaderConfig, run_duties
from controlplane.registry import Registry
from raftstore import MemoryStore

# bench.scale's Deployments (100 replicas, its nodeSelector and image), in a namespace of ours.
NS = "bench"
# Generous: 10,000 pods converge in well under a minute on this machine.
TIMEOUT_S = 300.0
# How often the progress (ready replicas of every Deployment) is read: cheap, from the registry.
POLL_S = 0.1


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _node(i: int) -> dict:
    name = f"{HOLLOW_PREFIX}-{i:05d}"
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {GROUP_LABEL: HOLLOW_PREFIX, "kubernetes.io/hostname": name}},
        "spec": {},
        "status": {
            "capacity": {"cpu": "64", "memory": "256Gi", "pods": "110"},
            "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": _now(),
                            "lastTransitionTime": _now(), "reason": "KubeletReady", "message": "ready"}],
            "addresses": [{"type": "InternalIP", "address": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"}],
        },
    }


def _lease(name: str) -> dict:
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": name, "leaseDurationSeconds": 40,
                     "renewTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}}


def _running_status(pod: dict, n: int) -> dict:
    now = _now()
    cond = [{"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": now}
            for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")]
    return {"status": {
        "phase": "Running", "hostIP": "10.0.0.1", "podIP": f"10.244.{n // 256 % 256}.{n % 256}",
        "podIPs": [{"ip": f"10.244.{n // 256 % 256}.{n % 256}"}], "startTime": now, "conditions": cond,
        "containerStatuses": [{"name": "web", "ready": True, "started": True, "restartCount": 0, "image": IMAGE,
                               "imageID": "", "containerID": f"hollow://{pod['metadata']['uid']}",
                               "state": {"running": {"startedAt": now}}, "lastState": {}}],
    }}


async def _kubelet(registry: Registry) -> None:
    """Every pod bound to a node turns Running and Ready (one merge patch of its status)."""
    started: set[str] = set()
    n = 0
    async with trio.open_nursery() as nursery:
        async for batch in registry.watch("pods", NS, resource_version="0"):
            for ev in batch:
                pod = ev.object
                md = pod["metadata"]
                if ev.type == "DELETED" or not pod["spec"].get("nodeName") or md["uid"] in started:
                    continue
                started.add(md["uid"])
                n += 1
                nursery.start_soon(_patch, registry, pod, n)


async def _patch(registry: Registry, pod: dict, n: int) -> None:
    md = pod["metadata"]
    body = _running_status(pod, n)
    body["metadata"] = {"uid": md["uid"]}
    try:
        await registry.patch("pods", NS, md["name"], "merge", body, subresource="status")
    except ApiError:
        pass


async def _ready(registry: Registry) -> int:
    body = await registry.list("deployments", NS)
    return sum(int((d.get("status") or {}).get("readyReplicas") or 0) for d in body["items"])


async def run(nodes: int, pods: int, rate: float) -> dict:
    store = MemoryStore(history_limit=max(100_000, 20 * pods))
    registry = Registry(store)
    await registry.ensure_namespaces(("default", "kube-system", "kube-public", "kube-node-lease", NS))
    for i in range(nodes):
        node = await registry.create("nodes", None, _node(i))
        await registry.create("leases", "kube-node-lease", _lease(node["metadata"]["name"]))
    # A grace period far beyond the run: no node is judged lost (their Leases are not renewed).
    config = LeaderConfig(name="bench", node_lifecycle=NodeLifecycleConfig(grace_period=3600.0))
    result: dict = {"benchmark": "duties", "mode": "in-process Registry over MemoryStore",
                    "nodes": nodes, "pods": pods, "rate_deployments_per_s": rate}
    async with trio.open_nursery() as nursery:
        await nursery.start(registry.serve_watch_cache)
        nursery.start_soon(run_duties, registry, config)
        nursery.start_soon(_kubelet, registry)
        await trio.sleep(1.0)  # the duties' informers list and sync before the clock starts
        t0, c0, rev0 = time.perf_counter(), time.process_time(), int(store.revision)
        deployments = -(-pods // REPLICAS_PER_DEPLOYMENT)
        remaining = pods
        for d in range(deployments):
            replicas = min(REPLICAS_PER_DEPLOYMENT, remaining)
            remaining -= replicas
            await registry.create("deployments", NS, deployment_body(f"scale-{d:04d}", NS, replicas, HOLLOW_PREFIX))
            delay = t0 + (d + 1) / rate - time.perf_counter()
            if delay > 0:
                await trio.sleep(delay)
        ready = 0
        with trio.move_on_after(TIMEOUT_S):
            while (ready := await _ready(registry)) < pods:
                await trio.sleep(POLL_S)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        writes = int(store.revision) - rev0
        nursery.cancel_scope.cancel()
    events = (await registry.list("events", NS))["items"]
    result.update(ready=ready, seconds=round(elapsed, 2), cpu_s=round(cpu, 3),
                  cpu_us_per_pod=round(cpu / max(1, ready) * 1e6, 1),
                  # every stored change (pods, bindings, statuses, Events, ReplicaSets...)
                  store_writes_per_pod=round(writes / max(1, ready), 2),
                  scheduled_events=sum(1 for e in events if e.get("reason") == "Scheduled"))
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.duties", description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--pods", type=int, default=6000)
    ap.add_argument("--rate", type=float, default=5.0, help="Deployments created per second (bench.scale's 5)")
    ap.add_argument("--json", action="store_true", help="print only the JSON result")
    ap.add_argument("--profile", metavar="FILE", help="write cProfile stats of the run to FILE")
    args = ap.parse_args(argv)
    if args.nodes < 1 or args.pods < 1 or args.rate <= 0:
        ap.error("--nodes and --pods must be at least 1 and --rate positive")
    if args.profile:
        import cProfile

        prof = cProfile.Profile()
        result = prof.runcall(trio.run, run, args.nodes, args.pods, args.rate)
        prof.dump_stats(args.profile)
    else:
        result = trio.run(run, args.nodes, args.pods, args.rate)
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>24}: {v}")
    return 0 if result["ready"] >= args.pods else 1


if __name__ == "__main__":
    sys.exit(main())
