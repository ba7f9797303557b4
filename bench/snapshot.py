"""What a Raft snapshot of a full-size state costs the machine: ``python -m bench.snapshot [--json]``.

A master compacts its log every few thousand entries by forking a writer that pickles and
compresses the whole KVState (keys, values and watch history) to ``raft.snapshot``. At 1,000
nodes / 30,000 pods that is 2-4 snapshots per master per bench.scale run, each on a box whose
cores are already saturated, so every CPU-second it takes is one the replicas wait for.

Setup, in this process: a real single-replica Raft store (``raftstore._replica.Replica``, its
tick thread, journal and snapshot writer) filled through Raft with a bench.scale-like state:
``--pods`` pods (~1.7 KB msgpack each, created, bound, reported Running: three versions each),
one Event object per pod, ``--nodes`` Nodes and Leases (renewed), so that the watch history is
full (100,000 events). Objects are then frozen out of the collector, as a master's GC policy does.
Then ``--snapshots`` times: a writer thread proposes ``--rate`` writes/s (pod status rewrites,
in Raft entries of 10 writes, about a loaded master's pace) for a window without a snapshot
(the baseline) and for a window with one (log compaction forced, the window lasting from the
fork until the tick thread has reaped the writer).

Reported (medians over the snapshots; ``runs`` has each one). The writer is a forked child
(older releases) or a thread of the replica's process (now): the figures cover both.
- child_cpu_s: CPU time (user + system) of a forked writer (getrusage of reaped children; 0
  for a thread); child_minflt: its minor page faults (copy-on-write copies of the pages it
  touches, fresh memory).
- writer_wall_s: from the start of the snapshot until the tick thread has seen it written.
- tick_pause_ms: what the tick thread spent starting it (``Replica.last_snapshot_fork_s``:
  the fork, or the frozen view and starting the writer thread).
- parent_minflt_extra / parent_cpu_extra_s: this process's minor faults and CPU while the
  writer lives minus the baseline window's, scaled to the same length: a writer thread's own
  CPU, or the copy-on-write copies the replica pays while a child lives.
- total_cpu_s: child_cpu_s + parent_cpu_extra_s, what one snapshot costs the machine.
- write_p99_ms / write_max_ms, and their _baseline twins: latency of the load's Raft writes
  (propose to applied) while the writer lives and in the baseline window: how much the
  writer delays the tick thread (GIL, CPU); null when no write ended in the window.
- snapshot_bytes: size of the last snapshot file.
- load_s: a replica restarted on the data directory (after a final snapshot) until it has
  loaded it (``Replica.loaded``), as a restarted master does before serving.

To compare two versions back to back, run the other version's code with this file:
``cd /tmp/old && PYTHONPATH=/tmp/old .venv/bin/python /work/main/bench/snapshot.py --json``
(``code`` in the output says which raftstore was imported).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import random
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from typing import Any

import msgpack

from raftstore import _replica as replica_module
from raftstore import encode_batch, encode_put
from raftstore._replica import Replica, ReplicaConfig

# Puts per Raft entry while filling (one batch command) and while measuring: a loaded master's
# entries carry a few to tens of writes (group commit).
FILL_BATCH = 500
LOAD_BATCH = 10
# bench.scale's history bound (ReplicaConfig.history_limit default).
HISTORY_LIMIT = 100_000
PORTS = range(24500, 25000)


def _ts(rng: random.Random) -> str:
    return f"2026-11-26T16:{rng.randrange(60):02d}:{rng.randrange(60):02d}Z"


def _pod(rng: random.Random, i: int, stage: int) -> tuple[str, dict[str, Any]]:
    """A pod of Deployment ``i // 100`` as bench.scale makes it; stage 0 created, 1 bound,
    2 Running (what its agent reports)."""
    app = f"scale-{i // 100:04d}"
    rs = f"{app}-{(i // 100) * 7919 % 10**10:010d}"
    name = f"{rs}-{i:05x}"
    uid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": rs + "-",
            "namespace": "scale",
            "labels": {"app": app, "pod-template-hash": rs[-10:]},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": rs,
                    "uid": str(uuid.UUID(int=(i // 100) * 31 + 7, version=4)),
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
            "uid": uid,
            "creationTimestamp": _ts(rng),
            "generation": 1,
            "name": name,
        },
        "spec": {
            "nodeSelector": {"bench.edgeplane.io/group": "hollow"},
            "containers": [
                {
                    "name": "web",
                    "image": "edgeplane/demo:1.0",
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                    "imagePullPolicy": "IfNotPresent",
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                }
            ],
            "restartPolicy": "Always",
            "dnsPolicy": "ClusterFirst",
            "terminationGracePeriodSeconds": 30,
            "securityContext": {},
            "schedulerName": "default-scheduler",
            "enableServiceLinks": True,
            "priority": 0,
            "preemptionPolicy": "PreemptLowerPriority",
        },
        "status": {"phase": "Pending", "qosClass": "Burstable"},
    }
    node = f"hollow-{rng.randrange(1000):04d}"
    conditions = []
    if stage >= 1:
        pod["spec"]["nodeName"] = node
        conditions.append(
            {
                "type": "PodScheduled",
                "status": "True",
                "lastProbeTime": None,
                "lastTransitionTime": _ts(rng),
            }
        )
    if stage >= 2:
        for kind in ("Initialized", "Ready", "ContainersReady"):
            conditions.insert(
                0,
                {
                    "type": kind,
                    "status": "True",
                    "lastProbeTime": None,
                    "lastTransitionTime": _ts(rng),
                },
            )
        ip = f"127.2.{rng.randrange(4)}.{rng.randrange(1, 255)}"
        pod["status"].update(
            phase="Running",
            hostIP=ip,
            hostIPs=[{"ip": ip}],
            startTime=_ts(rng),
            containerStatuses=[
                {
                    "name": "web",
                    "image": "edgeplane/demo:1.0",
                    "imageID": f"hollow://sha256:{rng.getrandbits(32):064x}",
                    "ready": True,
                    "restartCount": 0,
                    "started": True,
                    "state": {"running": {"startedAt": _ts(rng)}},
                    "lastState": {},
                    "containerID": f"hollow://{i:064x}",
                }
            ],
            podIP=f"198.51.{rng.randrange(256)}.{rng.randrange(256)}",
        )
    if conditions:
        pod["status"]["conditions"] = conditions
    return f"/registry/pods/scale/{name}", pod


def _event(rng: random.Random, i: int) -> tuple[str, dict[str, Any]]:
    name = f"scale-{i // 100:04d}.{rng.getrandbits(64):016x}"
    return f"/registry/events/scale/{name}", {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": name,
            "namespace": "scale",
            "uid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "creationTimestamp": _ts(rng),
            "generation": 1,
        },
        "involvedObject": {
            "kind": "ReplicaSet",
            "apiVersion": "apps/v1",
            "name": f"scale-{i // 100:04d}",
            "namespace": "scale",
            "resourceVersion": str(rng.randrange(10**6)),
        },
        "reason": "SuccessfulCreate",
        "message": f"Created pod: scale-{i:05x}",
        "type": "Normal",
        "count": 1,
        "firstTimestamp": _ts(rng),
        "lastTimestamp": _ts(rng),
        "source": {"component": "edgeplane-controller-manager", "host": "m2"},
    }


def _node_and_lease(rng: random.Random, i: int) -> list[tuple[str, dict[str, Any]]]:
    name = f"hollow-{i:04d}"
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "uid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "labels": {"bench.edgeplane.io/group": "hollow", "kubernetes.io/hostname": name},
        },
        "status": {
            "capacity": {"cpu": "64", "memory": "256Gi", "pods": "110"},
            "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": _ts(rng)}],
            "addresses": [{"type": "InternalIP", "address": f"127.2.0.{i % 250}"}],
        },
    }
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": _ts(rng)},
    }
    return [(f"/registry/nodes/{name}", node), (f"/registry/leases/kube-node-lease/{name}", lease)]


class _Driver:
    """Proposes commands to the replica and waits for them, from any thread."""

    def __init__(self, replica: Replica) -> None:
        self.replica = replica

    def propose_wait(self, command: bytes) -> None:
        done = threading.Event()
        failed: list[Any] = []

        def callback(result: Any, error: Any) -> None:
            if error is not None and error != 0:
                failed.append(error)
            done.set()

        self.replica.propose(command, callback)
        if not done.wait(30) or failed:
            raise RuntimeError(f"a write failed: {failed or 'timeout'}")


def _fill(driver: _Driver, pods: int, nodes: int, rng: random.Random) -> int:
    writes: list[tuple[str, dict[str, Any]]] = []
    for i in range(nodes):
        writes += _node_and_lease(rng, i)
    for i in range(pods):
        for stage in range(3):
            writes.append(_pod(random.Random(i), i, stage))
        writes.append(_event(rng, i))
        if i % 10 == 0:  # Lease renewals interleave with the pods
            writes += _node_and_lease(rng, rng.randrange(nodes))[1:]
    packb = msgpack.packb
    for start in range(0, len(writes), FILL_BATCH):
        chunk = writes[start : start + FILL_BATCH]
        driver.propose_wait(encode_batch([encode_put(k, packb(v)) for k, v in chunk]))
    return len(writes)


def _minflt() -> int:
    with open("/proc/self/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[7])


def _self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _children() -> tuple[float, int]:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime, r.ru_minflt


class _Load:
    """A thread rewriting random pods' status at ``rate`` writes/s, LOAD_BATCH per entry."""

    def __init__(self, driver: _Driver, pods: int, rate: float) -> None:
        self.driver, self.pods, self.rate = driver, pods, rate
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="load", daemon=True)
        self.samples: list[tuple[float, float]] = []  # (time.monotonic() at the end, seconds)

    def _run(self) -> None:
        rng = random.Random(7)
        period = LOAD_BATCH / self.rate
        next_at = time.monotonic()
        packb = msgpack.packb
        while not self.stop.is_set():
            batch = []
            for _ in range(LOAD_BATCH):
                i = rng.randrange(self.pods)
                key, pod = _pod(random.Random(i), i, 2)
                pod["status"]["conditions"][0]["lastTransitionTime"] = _ts(rng)
                batch.append(encode_put(key, packb(pod)))
            started = time.monotonic()
            self.driver.propose_wait(encode_batch(batch))
            ended = time.monotonic()
            self.samples.append((ended, ended - started))
            next_at += period
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)


def _serializer_pid(replica: Replica) -> int:
    return int(replica._SyncObj__serializer._Serializer__pid)  # type: ignore[attr-defined]


def _latency_ms(load: _Load, start: float, end: float) -> tuple[float | None, float | None]:
    """p99 and max of the load's write latencies that ended in [start, end], in ms; None when
    no write ended in it (a small state's writer can finish between two of the load's writes)."""
    window = sorted(d for t, d in load.samples if start <= t <= end)
    if not window:
        return None, None
    p99 = window[min(len(window) - 1, int(len(window) * 0.99))]
    return round(p99 * 1e3, 1), round(window[-1] * 1e3, 1)


def _one_snapshot(replica: Replica, load: _Load, baseline_s: float) -> dict[str, Any]:
    # Baseline window: the same load, no writer alive.
    flt0, cpu0, t0 = _minflt(), _self_cpu(), time.monotonic()
    time.sleep(baseline_s)
    base_flt, base_cpu, base_s = _minflt() - flt0, _self_cpu() - cpu0, time.monotonic() - t0
    child_cpu0, child_flt0 = _children()
    replica.forceLogCompaction()
    deadline = time.monotonic() + 30
    while _serializer_pid(replica) == 0:  # the tick thread forks on its next tick
        if time.monotonic() > deadline:
            raise RuntimeError("no snapshot was started")
        time.sleep(0.0005)
    flt1, cpu1, t1 = _minflt(), _self_cpu(), time.monotonic()
    while _serializer_pid(replica) != 0:  # reaped by the tick thread
        if time.monotonic() > deadline + 60:
            raise RuntimeError("the snapshot writer did not finish")
        time.sleep(0.002)
    during_s = time.monotonic() - t1
    during_flt, during_cpu = _minflt() - flt1, _self_cpu() - cpu1
    child_cpu, child_flt = _children()
    scale = during_s / base_s
    child_cpu_s = round(child_cpu - child_cpu0, 3)
    parent_cpu_extra_s = round(during_cpu - base_cpu * scale, 3)
    p99, worst = _latency_ms(load, t1, t1 + during_s)
    base_p99, base_worst = _latency_ms(load, t0, t0 + base_s)
    return {
        "child_cpu_s": child_cpu_s,
        "child_minflt": child_flt - child_flt0,
        "writer_wall_s": round(during_s, 3),
        "tick_pause_ms": round(replica.last_snapshot_fork_s * 1e3, 1),
        "parent_minflt_during": during_flt,
        "parent_minflt_extra": round(during_flt - base_flt * scale),
        "parent_cpu_during_s": round(during_cpu, 3),
        "parent_cpu_extra_s": parent_cpu_extra_s,
        "total_cpu_s": round(child_cpu_s + parent_cpu_extra_s, 3),
        "write_p99_ms": p99,
        "write_max_ms": worst,
        "write_p99_ms_baseline": base_p99,
        "write_max_ms_baseline": base_worst,
    }


def _config(data_dir: str, port: int) -> ReplicaConfig:
    # No automatic compaction: the benchmark forces each snapshot.
    return ReplicaConfig(
        self_address=f"127.0.0.1:{port}",
        peers=(),
        data_dir=data_dir,
        history_limit=HISTORY_LIMIT,
        compaction_min_entries=10**9,
        compaction_min_time_s=10**9,
    )


def _started(config: ReplicaConfig) -> Replica:
    replica = Replica(config)
    replica.start()
    if not replica.loaded.wait(120):
        raise RuntimeError("the replica did not load its state")
    deadline = time.monotonic() + 10
    while not replica.is_raft_leader:
        if time.monotonic() > deadline:
            raise RuntimeError("the single replica did not elect itself")
        time.sleep(0.01)
    return replica


def run(pods: int, nodes: int, snapshots: int, rate: float, baseline_s: float) -> dict[str, Any]:
    from bench._ports import free_port

    work = tempfile.mkdtemp(prefix="bench-snapshot-")
    try:
        config = _config(work, free_port(PORTS))
        replica = _started(config)
        driver = _Driver(replica)
        t0 = time.perf_counter()
        filled = _fill(driver, pods, nodes, random.Random(1))
        fill_s = time.perf_counter() - t0
        gc.collect()
        gc.freeze()  # as a master's GC policy keeps it (raftstore._gcpolicy)
        with replica.state_lock:
            keys, events = (
                len(replica.kv),
                len(replica.kv.events_since(replica.kv.compact_revision + 1)),
            )
        load = _Load(driver, pods, rate)
        load.thread.start()
        runs = [_one_snapshot(replica, load, baseline_s) for _ in range(snapshots)]
        load.stop.set()
        load.thread.join()
        replica.forceLogCompaction()  # a snapshot of the final state, then a restart from it
        deadline = time.monotonic() + 60
        while _serializer_pid(replica) == 0 and time.monotonic() < deadline:
            driver.propose_wait(encode_put("/bench/tick", b""))  # ticks run the compaction
        while _serializer_pid(replica) != 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        snapshot_bytes = os.path.getsize(os.path.join(work, "raft.snapshot"))
        with replica.state_lock:
            revision, digest = replica.kv.revision, replica.kv.digest()
        replica.stop()
        t0 = time.perf_counter()
        restarted = Replica(config)
        restarted.start()
        if not restarted.loaded.wait(120):
            raise RuntimeError("the restarted replica did not load its state")
        load_s = time.perf_counter() - t0
        # `loaded` is the snapshot; the writes journalled after it (the ticks that started
        # the compaction) are applied once the replica leads again.
        deadline = time.monotonic() + 60
        while True:
            with restarted.state_lock:
                if restarted.kv.revision >= revision or time.monotonic() > deadline:
                    same = restarted.kv.digest() == digest
                    break
            time.sleep(0.01)
        restarted.stop()
        if not same:
            raise RuntimeError("the restarted replica's state differs from the snapshot's")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def median(field: str) -> float | None:
        values = [r[field] for r in runs if r[field] is not None]
        return round(statistics.median(values), 3) if values else None

    out: dict[str, Any] = {
        "code": os.path.dirname(os.path.abspath(replica_module.__file__)),
        "pods": pods,
        "nodes": nodes,
        "writes_filled": filled,
        "fill_s": round(fill_s, 1),
        "keys": keys,
        "history_events": events,
        "rate": rate,
    }
    for field in (
        "total_cpu_s",
        "child_cpu_s",
        "child_minflt",
        "parent_cpu_extra_s",
        "parent_minflt_extra",
        "writer_wall_s",
        "tick_pause_ms",
        "write_p99_ms",
        "write_max_ms",
        "write_p99_ms_baseline",
        "write_max_ms_baseline",
    ):
        out[field] = median(field)
    out["snapshot_bytes"] = snapshot_bytes
    out["load_s"] = round(load_s, 3)
    out["runs"] = runs
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.snapshot", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--pods", type=int, default=30_000)
    parser.add_argument("--nodes", type=int, default=1_000)
    parser.add_argument("--snapshots", type=int, default=3)
    parser.add_argument("--rate", type=float, default=400.0, help="writes/s during the windows")
    parser.add_argument(
        "--baseline-s",
        type=float,
        default=2.0,
        help="length of the no-snapshot window before each snapshot",
    )
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    args = parser.parse_args(argv)
    if (
        args.pods < 1
        or args.nodes < 1
        or args.snapshots < 1
        or not 0 < args.rate < math.inf  # also refuses nan
        or not 0 < args.baseline_s < math.inf
    ):
        parser.error(
            "--pods, --nodes, --snapshots, --rate and --baseline-s must be positive (and finite)"
        )
    result = run(args.pods, args.nodes, args.snapshots, args.rate, args.baseline_s)
    if args.json:
        print(json.dumps(result))
    else:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
