"""Benchmark of the replicated store: ``python -m bench.store [--json]``.

Starts a 3-replica cluster of ``python -m raftstore`` processes on loopback, drives it from
one client connected to a follower, and reports:

- seq_write_p50_ms / seq_write_p99_ms: one put at a time (each waits for commit and apply);
- write_throughput_ops: pipelined small puts (many outstanding on one connection);
- linearizable_read_p50_ms: one linearizable get at a time on the follower (read barrier);
- seq_write_cpu_us / write_cpu_us_per_op: CPU time of the three replicas together (every
  thread) per sequential / pipelined write: what each write costs the cluster's cores;
- failover_s: the leader is SIGKILLed, then puts are retried on the follower until one commits;
- idle_cpu_pct: CPU used by the three idle replicas together, percent of one core, over
  IDLE_SECONDS after IDLE_SETTLE_S of quiet; idle_cpu_per_replica_pct: the same per replica
  (the leader, which sends the heartbeats, first).

With ``--snapshot`` it measures log compaction with a large state instead: it loads
``--snapshot-keys`` keys of ``--snapshot-value-bytes`` (default 30,000 x 3 KB, a 30,000-pod
cluster's worth), then writes one put at a time for ``--snapshot-seconds`` with a compaction
threshold of ``--compaction-min-entries`` entries (default 2,000: several snapshots in the
window) and reports the writes' p50/p99/max (the stall a snapshot causes), each replica's tick
thread time to start its last snapshot (snapshot_fork_ms: the frozen view handed to the writer
thread; the name is from when a forked child wrote it), the snapshot size, and a follower's
restart: stop, start to serving, and caught up.

Also reachable as ``edgectl bench store``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile
import time
from typing import Any

import trio

from raftstore import StoreError
from raftstore._localcluster import LocalCluster, running_cluster

# Sizes chosen so the whole run takes ~20 s on a 2-core machine while giving stable
# percentiles (p99 of 2000 samples rests on 20 of them).
SEQ_WRITES = 2000
PIPELINED_WRITES = 60_000
PIPELINE_WINDOW = 1000
READS = 2000
VALUE = b"x" * 64  # a small object, as the "small writes"
# Idle CPU: let the last writes' follow-up work (applies, collections) finish first, then
# measure long enough to cover ~60 heartbeat rounds.
IDLE_SETTLE_S = 1.0
IDLE_SECONDS = 5.0


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def _thread_cpu_ns(pid: int) -> dict[str, int]:
    """CPU time per live thread in nanoseconds (schedstat); utime + stime from /proc/PID/stat
    count in 10 ms clock ticks, too coarse for an idle replica."""
    times = {}
    for path in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            with open(path) as f:
                times[path] = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # a thread that just exited
    return times


def _cpu_seconds_between(before: dict[str, int], after: dict[str, int]) -> float:
    # Threads that exit meanwhile (trio's idle worker threads do) drop out of both sides.
    return sum(ns - before.get(tid, 0) for tid, ns in after.items()) / 1e9


async def _idle_cpu(cluster: LocalCluster, leader_name: str) -> list[tuple[str, float]]:
    """(replica name, percent of one core) while idle, the leader first."""
    await trio.sleep(IDLE_SETTLE_S)
    replicas = sorted(
        (r for r in cluster.replicas if r.proc is not None), key=lambda r: r.name != leader_name
    )
    before = [_thread_cpu_ns(r.proc.pid) for r in replicas]  # type: ignore[union-attr]
    started = time.perf_counter()
    await trio.sleep(IDLE_SECONDS)
    elapsed = time.perf_counter() - started
    after = [_thread_cpu_ns(r.proc.pid) for r in replicas]  # type: ignore[union-attr]
    return [
        (r.name, 100.0 * _cpu_seconds_between(b, a) / elapsed)
        for r, a, b in zip(replicas, after, before, strict=True)
    ]


def _cluster_cpu_ns(cluster: LocalCluster) -> int:
    return sum(
        sum(_thread_cpu_ns(r.proc.pid).values()) for r in cluster.replicas if r.proc is not None
    )


async def _run(seq_writes: int, pipelined: int, reads: int, fsync: bool) -> dict[str, Any]:
    results: dict[str, Any] = {"fsync": fsync}
    extra = ["--fsync"] if fsync else []
    with tempfile.TemporaryDirectory(prefix="bench-store-") as base:
        async with running_cluster(base, 3, extra_args=extra) as cluster:
            leader = await cluster.wait_leader()
            follower = await cluster.follower()
            async with follower.client() as client:
                for i in range(200):  # warm-up: connections, code paths, allocator
                    await client.call("put", f"/warm/{i}", VALUE)

                latencies = []
                cpu = _cluster_cpu_ns(cluster)
                for i in range(seq_writes):
                    t = time.perf_counter()
                    await client.call("put", f"/seq/{i}", VALUE)
                    latencies.append(time.perf_counter() - t)
                cpu = _cluster_cpu_ns(cluster) - cpu
                results["seq_write_p50_ms"] = round(_percentile(latencies, 0.50) * 1e3, 3)
                results["seq_write_p99_ms"] = round(_percentile(latencies, 0.99) * 1e3, 3)
                results["seq_write_cpu_us"] = round(cpu / 1e3 / max(1, seq_writes), 1)

                requests = [["put", f"/pipe/{i}", VALUE] for i in range(pipelined)]
                cpu = _cluster_cpu_ns(cluster)
                t = time.perf_counter()
                answers = await client.pipeline(requests, window=PIPELINE_WINDOW)
                elapsed = time.perf_counter() - t
                cpu = _cluster_cpu_ns(cluster) - cpu
                failed = sum(1 for a in answers if a[2] != 0)
                results["write_throughput_ops"] = round((pipelined - failed) / elapsed)
                results["write_cpu_us_per_op"] = round(cpu / 1e3 / max(1, pipelined - failed), 1)
                results["pipelined_failed"] = failed

                latencies = []
                for i in range(reads):
                    t = time.perf_counter()
                    await client.call("get", f"/seq/{i % max(1, seq_writes)}", True)
                    latencies.append(time.perf_counter() - t)
                results["linearizable_read_p50_ms"] = round(_percentile(latencies, 0.50) * 1e3, 3)
                results["linearizable_read_p99_ms"] = round(_percentile(latencies, 0.99) * 1e3, 3)

            idle = await _idle_cpu(cluster, leader.name)
            results["idle_cpu_pct"] = round(sum(pct for _, pct in idle), 2)
            results["idle_cpu_per_replica_pct"] = [round(pct, 2) for _, pct in idle]

            async with follower.client() as client:
                await client.call("put", "/failover/before", VALUE)
                killed_at = time.perf_counter()
                await leader.kill()
                attempt = 0
                while True:
                    attempt += 1
                    try:
                        await client.call("put", f"/failover/{attempt}", VALUE, timeout=1.0)
                        break
                    except StoreError:
                        if time.perf_counter() - killed_at > 30:
                            raise
                results["failover_s"] = round(time.perf_counter() - killed_at, 3)
            status = await follower.call("status")
            results["new_leader"] = status["leader"]
    return results


async def _run_snapshot(keys: int, value_bytes: int, seconds: float, min_entries: int) -> dict:
    results: dict[str, Any] = {"keys": keys, "value_bytes": value_bytes,
                               "compaction_min_entries": min_entries}
    extra = ["--compaction-min-entries", str(min_entries)]
    with tempfile.TemporaryDirectory(prefix="bench-store-snap-") as base:
        async with running_cluster(base, 3, extra_args=extra) as cluster:
            await cluster.wait_leader()
            follower = await cluster.follower()
            async with follower.client() as client:
                # Distinct values: pickle would store one shared value once.
                requests = [
                    ["put", f"/registry/pods/default/pod-{i}", os.urandom(value_bytes)]
                    for i in range(keys)
                ]
                started = time.perf_counter()
                answers = await client.pipeline(requests, window=200, timeout=600)
                results["load_s"] = round(time.perf_counter() - started, 1)
                results["load_failed"] = sum(1 for a in answers if a[2] != 0)
                del requests, answers
                latencies = []
                started = time.perf_counter()
                i = 0
                while time.perf_counter() - started < seconds:
                    t = time.perf_counter()
                    await client.call("put", f"/seq/{i % 100}", VALUE)
                    latencies.append(time.perf_counter() - t)
                    i += 1
            results["seq_writes"] = len(latencies)
            results["seq_write_p50_ms"] = round(_percentile(latencies, 0.50) * 1e3, 3)
            results["seq_write_p99_ms"] = round(_percentile(latencies, 0.99) * 1e3, 3)
            results["seq_write_max_ms"] = round(max(latencies) * 1e3, 1)
            results["snapshot_fork_ms"] = [
                (await r.call("status"))["last_snapshot_fork_ms"] for r in cluster.replicas
            ]
            sizes = [
                (r.data_dir / "raft.snapshot").stat().st_size
                for r in cluster.replicas
                if (r.data_dir / "raft.snapshot").exists()
            ]
            results["snapshot_mb"] = round(max(sizes) / 1e6, 1) if sizes else None
            t = time.perf_counter()
            await follower.stop()
            t_stopped = time.perf_counter()
            follower.start()
            await follower.wait_ready(timeout=120)
            t_serving = time.perf_counter()
            await cluster.wait_converged(timeout=120)
            results["restart_stop_s"] = round(t_stopped - t, 2)
            results["restart_serving_s"] = round(t_serving - t_stopped, 2)
            results["restart_caught_up_s"] = round(time.perf_counter() - t_stopped, 2)
    return results


def _table(results: dict[str, Any]) -> str:
    rows = [
        ("sequential write p50", f"{results['seq_write_p50_ms']:.3f} ms", "<= 1 ms"),
        ("sequential write p99", f"{results['seq_write_p99_ms']:.3f} ms", "<= 5 ms"),
        ("pipelined writes", f"{results['write_throughput_ops']:,} /s", ">= 20,000 /s"),
        ("CPU per write, sequential", f"{results['seq_write_cpu_us']:.1f} us", "3 replicas"),
        ("CPU per write, pipelined", f"{results['write_cpu_us_per_op']:.1f} us", "3 replicas"),
        ("linearizable read p50", f"{results['linearizable_read_p50_ms']:.3f} ms", ""),
        ("linearizable read p99", f"{results['linearizable_read_p99_ms']:.3f} ms", ""),
        ("failover (kill -9 leader)", f"{results['failover_s']:.3f} s", "<= 1.5 s"),
        ("idle CPU, 3 replicas", f"{results['idle_cpu_pct']:.2f} % of a core", "~0"),
        (
            "idle CPU per replica",
            " / ".join(f"{p:.2f}" for p in results["idle_cpu_per_replica_pct"]) + " %",
            "leader first",
        ),
    ]
    lines = [f"{'metric':<28}{'value':>20}  target", "-" * 60]
    lines += [f"{name:<28}{value:>20}  {target}" for name, value, target in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.store", description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    parser.add_argument("--seq-writes", type=int, default=SEQ_WRITES)
    parser.add_argument("--pipelined-writes", type=int, default=PIPELINED_WRITES)
    parser.add_argument("--reads", type=int, default=READS)
    parser.add_argument("--fsync", action="store_true", help="replicas sync before acknowledging")
    parser.add_argument("--snapshot", action="store_true", help="measure compaction instead")
    parser.add_argument("--snapshot-keys", type=int, default=30_000)
    parser.add_argument("--snapshot-value-bytes", type=int, default=3_000)
    parser.add_argument("--snapshot-seconds", type=float, default=20.0)
    parser.add_argument("--compaction-min-entries", type=int, default=2_000)
    args = parser.parse_args(argv)
    if args.snapshot:
        if min(args.snapshot_keys, args.snapshot_value_bytes, args.compaction_min_entries) < 1:
            parser.error("--snapshot-keys, --snapshot-value-bytes, --compaction-min-entries: >= 1")
        results = trio.run(
            _run_snapshot,
            args.snapshot_keys,
            args.snapshot_value_bytes,
            args.snapshot_seconds,
            args.compaction_min_entries,
        )
        print(json.dumps(results))
        return 0
    results = trio.run(_run, args.seq_writes, args.pipelined_writes, args.reads, args.fsync)
    if args.json:
        print(json.dumps(results))
    else:
        print(_table(results))
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
