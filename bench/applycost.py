"""What a FOLLOWER master spends applying committed writes: ``python -m bench.applycost [--json]``.

Issue 9's followers are starved of CPU; part of what they spend is applying what the leader
commits: the raft-tick thread reads the append-entries, applies the entries to the KVState and
hands the applied revisions to the event loop, whose watch cache applies them and decodes each
object. This benchmark isolates that cost.

Setup: a real local cluster of three master processes (`edgectl up --masters 3`, TLS API, Raft
over loopback), no nodes. Through the LEADER only (so the followers serve no request), it
creates ``--pods`` pods shaped like those of a bench.scale run (a Deployment's pod, bound,
reported Running by its agent: ~2 KiB of JSON), then for ``--seconds`` patches them at a steady
``--rate`` writes/s with ``--concurrency`` requests in flight (group commit then puts a few
writes in one log entry, as under real load).

Measured on each follower, from /proc (per thread: schedstat run time, voluntary context
switches), over the steady phase and over an idle phase of the same length before it:
- cpu_us_per_write: the follower process's CPU time per applied write (revision), with the idle
  phase's CPU per second (heartbeats, timers) subtracted; split by thread name (the event loop is
  ``MainThread`` ... named by the process, the tick thread ``raft-tick ...``);
- loop_wakeups_per_write: the event-loop thread's voluntary context switches per write (each is
  one wake-up from epoll: mostly the tick thread's run_sync_soon hand-offs), idle-corrected;
- writes_per_entry: applied writes per Raft log entry (how much group commit batched).

Also measured, the same way, on the LEADER (``leader``): its CPU per write by thread (its raft
tick thread replicates every entry: sends, acknowledgements, commit notices), and over the whole
cluster the Raft messages per entry (``raft_segments_per_entry``: TCP data segments between the
masters' Raft ports, from ``ss``; a small message is one segment).

``--via all`` sends the writes to the three masters in turn instead of only to the leader, as the
simulated nodes of bench.scale do: a follower then forwards its writes to the leader (its tick
thread's other job). ``write_p50_ms`` / ``write_p99_ms``: the writes' latency as the client sees
it (PATCH request to answer).

Ports: ``--base-port`` (default 25000, a range away from the test suites'; 0 picks any free ports).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from typing import Any

import trio

# A pod as bench.scale's Deployments produce it (template labels, owner reference, defaults the
# API server fills in), bound to a node and reported Running by its agent. Its JSON is ~2 KiB.
IMAGE = "registry.local/web:1.0"
NAMESPACE = "default"
DEFAULT_PODS = 300
DEFAULT_RATE = 300.0
DEFAULT_SECONDS = 15.0
DEFAULT_CONCURRENCY = 8
# Long enough for ~150 heartbeat rounds: the idle baseline's noise stays well under the load's.
DEFAULT_IDLE_SECONDS = 8.0
DEFAULT_BASE_PORT = 25000
# Nodes the pods are bound to (registered, so the node lifecycle controller keeps their pods):
# ~30 pods per node as at full size.
NODES = 10
# The masters' node grace period: far longer than a run, so nodes without an agent stay Ready.
NODE_GRACE_S = 3600


def _node(i: int) -> str:
    return f"hollow-{i % NODES:04d}"


def _pod(i: int) -> dict[str, Any]:
    rs = f"scale-{i // 100:04d}-6d8f7b9c5d"
    now = "2026-01-01T00:00:00Z"
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": f"{rs}-{i:05d}", "namespace": NAMESPACE, "generateName": f"{rs}-",
            "labels": {"app": f"scale-{i // 100:04d}", "pod-template-hash": "6d8f7b9c5d"},
            # What the ReplicaSet's ownerReference holds, as an annotation of the same size:
            # the garbage collector would delete a pod whose owner does not exist.
            "annotations": {"bench.edgeplane.io/owner": json.dumps(
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs,
                 "uid": f"0b7e4c1a-3f5d-4e8b-9a2c-{i // 100:012d}",
                 "controller": True, "blockOwnerDeletion": True})},
        },
        "spec": {
            "nodeName": _node(i),
            "nodeSelector": {"edgeplane.io/group": "hollow"},
            "containers": [{"name": "web", "image": IMAGE,
                            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}],
        },
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": now}
                for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")],
            "hostIP": f"10.64.{i % 333 // 250}.{i % 250 + 1}",
            "hostIPs": [{"ip": f"10.64.{i % 333 // 250}.{i % 250 + 1}"}],
            "podIP": f"10.244.{i // 250 % 250}.{i % 250 + 1}",
            "podIPs": [{"ip": f"10.244.{i // 250 % 250}.{i % 250 + 1}"}],
            "startTime": now,
            "containerStatuses": [{
                "name": "web", "ready": True, "restartCount": 0, "started": True,
                "image": IMAGE, "imageID": "hollow://" + IMAGE,
                "containerID": f"hollow://{i:064x}",
                "state": {"running": {"startedAt": now}}, "lastState": {}}],
        },
    }


def _threads(pid: int) -> dict[str, tuple[str, int, int, int]]:
    """tid -> (thread name, run time ns, voluntary context switches, system time in ticks)."""
    out = {}
    for task in glob.glob(f"/proc/{pid}/task/*"):
        try:
            with open(f"{task}/comm") as f:
                name = f.read().strip()
            with open(f"{task}/schedstat") as f:
                ns = int(f.read().split()[0])
            with open(f"{task}/stat") as f:
                stime = int(f.read().rsplit(")", 1)[1].split()[12])
            with open(f"{task}/status") as f:
                vol = next(int(line.split()[1]) for line in f
                           if line.startswith("voluntary_ctxt_switches"))
        except (OSError, ValueError, StopIteration):
            continue  # a thread that just exited
        out[task.rsplit("/", 1)[1]] = (name, ns, vol, stime)
    return out


def _delta(pid: int, before: dict[str, tuple[str, int, int, int]],
           after: dict[str, tuple[str, int, int, int]]
           ) -> tuple[dict[str, float], tuple[float, float]]:
    """(CPU-seconds by thread kind, (event-loop, tick-thread) wake-ups) between two readings.

    Python 3.11 does not give its threads OS names, so the raft-tick thread is told by its CPU:
    on a follower that serves no request it is the one busy thread besides the event loop (the
    others: the read-index responder, idle trio workers; checked with py-spy)."""
    per_tid = {}
    wakeups = 0.0
    system = 0.0
    for tid, (name, ns, vol, stime) in after.items():
        b = before.get(tid, (name, 0, 0, 0))
        per_tid[tid] = (ns - b[1]) / 1e9
        system += (stime - b[3]) / os.sysconf("SC_CLK_TCK")
        if tid == str(pid):
            wakeups += vol - b[2]
    loop = per_tid.pop(str(pid), 0.0)
    tick = max(per_tid.values(), default=0.0)
    tick_tid = max(per_tid, key=per_tid.__getitem__, default=None)
    tick_wakeups = 0.0
    if tick_tid is not None:
        tick_wakeups = after[tick_tid][2] - before.get(tick_tid, ("", 0, 0, 0))[2]
    return {"event_loop": loop, "raft_tick": tick, "other": sum(per_tid.values()) - tick,
            "kernel_all_threads": system}, (wakeups, tick_wakeups)


def _raft_segments(ports: set[int]) -> int:
    """TCP data segments sent so far on the connections between the masters' Raft ports."""
    out = subprocess.run(["ss", "-tinH", "state", "established"], capture_output=True,
                         text=True, check=False).stdout
    total = 0
    lines = out.splitlines()
    for head, info in zip(lines[::2], lines[1::2], strict=False):
        addrs = head.split()[-2:]
        try:
            local, peer = (int(a.rsplit(":", 1)[1]) for a in addrs)
        except (ValueError, IndexError):
            continue
        if local in ports or peer in ports:
            m = re.search(r"data_segs_out:(\d+)", info)
            total += int(m.group(1)) if m else 0
    return total


async def _status(api: Any) -> dict[str, Any]:
    result: dict[str, Any] = await api.request_json("GET", "/edgeplane/v1/cluster/status")
    return result


async def _measure(cluster: Any, args: argparse.Namespace, say: Any) -> dict[str, Any]:
    import dataclasses

    from controlplane.client import ApiClient
    from controlplane.kubeconfig import load_kubeconfig

    config = load_kubeconfig(str(cluster.kubeconfig))

    def client(url: str) -> ApiClient:
        return ApiClient(dataclasses.replace(config, servers=(url,)), user_agent="bench-applycost")

    masters = cluster.masters()
    apis = {m.name: client(m.api_address) for m in masters}
    try:
        leader = None
        with trio.fail_after(30):
            while leader is None:
                for m in masters:
                    try:
                        if (await _status(apis[m.name])).get("isLeader"):
                            leader = m
                    except Exception:  # noqa: BLE001 - not up yet: ask again
                        pass
                if leader is None:
                    await trio.sleep(0.2)
        followers = [m for m in masters if m is not leader]
        api = apis[leader.name]
        writers = [apis[m.name] for m in masters]
        raft_ports = {int(m.raft_address.rsplit(":", 1)[1]) for m in masters}
        say(f"leader {leader.name}; creating {args.pods} pods through it")
        for n in range(NODES):
            await api.create("nodes", {"apiVersion": "v1", "kind": "Node",
                                       "metadata": {"name": _node(n)}})
        names = []
        sem = trio.Semaphore(args.concurrency)

        async def create(i: int) -> None:
            async with sem:
                body = _pod(i)
                status = body.pop("status")
                obj = await api.create("pods", body)
                obj["status"] = status
                await api.update_status("pods", obj)
                names.append(obj["metadata"]["name"])

        async with trio.open_nursery() as nursery:
            for i in range(args.pods):
                nursery.start_soon(create, i)
        sample = await api.get("pods", names[0], namespace=NAMESPACE)
        pod_json_bytes = len(json.dumps(sample, separators=(",", ":")))

        async def phase(seconds: float, rate: float) -> dict[str, Any]:
            watched = [*followers, leader]
            stats = [await _status(apis[m.name]) for m in watched]
            segs = _raft_segments(raft_ports)
            before = [_threads(m.pid) for m in watched]
            t0 = time.monotonic()
            errors = 0
            latencies: list[float] = []
            profilers = []
            if rate > 0 and args.profile:
                # py-spy on the first follower (PATH) and the leader (PATH.leader) over the load
                # phase (raw collapsed stacks).
                for m, path in ((followers[0], args.profile), (leader, args.profile + ".leader")):
                    profilers.append(subprocess.Popen(
                        [os.path.join(os.path.dirname(sys.executable), "py-spy"), "record",
                         "-p", str(m.pid), "-d", str(int(seconds)), "-r", "100",
                         "--threads", "-f", "raw", "-o", path],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            if rate > 0:
                interval = args.concurrency / rate
                deadline = t0 + seconds

                async def writer(k: int) -> None:
                    nonlocal errors
                    n = k
                    due = t0 + interval * k / args.concurrency
                    while True:
                        delay = due - time.monotonic()
                        if delay > 0:
                            await trio.sleep(delay)
                        if time.monotonic() >= deadline:
                            return
                        patch = {"metadata": {"annotations": {"bench.edgeplane.io/seq": str(n)}}}
                        target = api if args.via == "leader" else writers[n % len(writers)]
                        started = time.monotonic()
                        try:
                            await target.patch("pods", names[n % len(names)], patch,
                                               namespace=NAMESPACE)
                            latencies.append(time.monotonic() - started)
                        except Exception:  # noqa: BLE001 - counted, the rate goes on
                            errors += 1
                        n += args.concurrency
                        due += interval

                async with trio.open_nursery() as nursery:
                    for k in range(args.concurrency):
                        nursery.start_soon(writer, k)
                # Let the followers apply the last writes before the second reading.
                await trio.sleep(0.5)
            else:
                await trio.sleep(seconds)
            for profiler in profilers:
                profiler.wait()
            elapsed = time.monotonic() - t0
            after = [_threads(m.pid) for m in watched]
            segs = _raft_segments(raft_ports) - segs
            stats2 = [await _status(apis[m.name]) for m in watched]
            out = []
            for m, b, a, s1, s2 in zip(watched, before, after, stats, stats2, strict=True):
                cpu, wakeups = _delta(m.pid, b, a)
                out.append({"name": m.name, "cpu_s": cpu, "wakeups": wakeups,
                            "writes": s2["revision"] - s1["revision"],
                            "entries": s2["appliedIndex"] - s1["appliedIndex"]})
            return {"elapsed_s": elapsed, "errors": errors, "latencies": sorted(latencies),
                    "followers": out[:-1],
                    "leader": out[-1], "segments": segs}

        say(f"idle phase ({args.idle_seconds} s)")
        idle = await phase(args.idle_seconds, 0)
        say(f"load phase: {args.rate} writes/s for {args.seconds} s")
        load = await phase(args.seconds, args.rate)
    finally:
        for a in apis.values():
            await a.aclose()

    def costs(fi: dict[str, Any], fl: dict[str, Any]) -> dict[str, Any]:
        writes = max(fl["writes"], 1)
        idle_rate = {k: v / idle["elapsed_s"] for k, v in fi["cpu_s"].items()}
        corrected = {k: (v - idle_rate.get(k, 0.0) * load["elapsed_s"]) / writes * 1e6
                     for k, v in fl["cpu_s"].items()}
        # (a part of the threads' time above, not added again)
        kernel = corrected.pop("kernel_all_threads")
        scale = load["elapsed_s"] / idle["elapsed_s"]
        wake = (fl["wakeups"][0] - fi["wakeups"][0] * scale) / writes
        tick_wake = (fl["wakeups"][1] - fi["wakeups"][1] * scale) / writes
        return {
            "name": fl["name"],
            "writes": fl["writes"],
            "writes_per_entry": round(fl["writes"] / max(fl["entries"], 1), 2),
            "cpu_us_per_write": round(sum(corrected.values()), 1),
            "cpu_us_per_write_by_thread": {k: round(v, 1) for k, v in sorted(corrected.items())},
            "cpu_us_per_write_in_kernel": round(kernel, 1),
            "cpu_us_per_write_raw": round(
                (sum(fl["cpu_s"].values()) - fl["cpu_s"]["kernel_all_threads"]) / writes * 1e6, 1),
            "idle_cpu_pct": round((sum(fi["cpu_s"].values()) - fi["cpu_s"]["kernel_all_threads"])
                                  / idle["elapsed_s"] * 100, 2),
            "loop_wakeups_per_write": round(wake, 3),
            "tick_wakeups_per_write": round(tick_wake, 3),
        }

    per_follower = [costs(fi, fl) for fi, fl in zip(idle["followers"], load["followers"],
                                                      strict=True)]
    leader_costs = costs(idle["leader"], load["leader"])
    entries = max(load["leader"]["entries"], 1)
    idle_segments = idle["segments"] / idle["elapsed_s"] * load["elapsed_s"]

    def mean(key: str) -> float:
        return round(sum(f[key] for f in per_follower) / len(per_follower), 3)

    return {
        "pod_json_bytes": pod_json_bytes,
        "rate": args.rate,
        "seconds": round(load["elapsed_s"], 2),
        "write_errors": load["errors"],
        "achieved_writes_per_s": round(
            sum(f["writes"] for f in per_follower) / len(per_follower) / load["elapsed_s"], 1),
        "cpu_us_per_write": mean("cpu_us_per_write"),
        "loop_wakeups_per_write": mean("loop_wakeups_per_write"),
        "tick_wakeups_per_write": mean("tick_wakeups_per_write"),
        "writes_per_entry": mean("writes_per_entry"),
        "followers": per_follower,
        "leader": leader_costs,
        "leader_tick_cpu_us_per_entry": round(
            leader_costs["cpu_us_per_write_by_thread"].get("raft_tick", 0.0)
            * leader_costs["writes"] / entries, 1),
        "raft_segments_per_entry": round((load["segments"] - idle_segments) / entries, 2),
        "via": args.via,
        "write_p50_ms": _percentile_ms(load["latencies"], 0.5),
        "write_p99_ms": _percentile_ms(load["latencies"], 0.99),
        "load_1min": os.getloadavg()[0],
    }


def _percentile_ms(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1e3, 2)


def _table(out: dict[str, Any]) -> str:
    lines = [f"pod JSON {out['pod_json_bytes']} B, {out['achieved_writes_per_s']} writes/s "
             f"over {out['seconds']} s (errors {out['write_errors']}), load {out['load_1min']:.2f}",
             f"leader tick CPU per entry {out['leader_tick_cpu_us_per_entry']} us, "
             f"Raft segments per entry {out['raft_segments_per_entry']} (writes via {out['via']}), "
             f"write p50 {out['write_p50_ms']} ms, p99 {out['write_p99_ms']} ms",
             f"{'master':10} {'writes':>7} {'w/entry':>8} {'us/write':>9} {'loop':>8} "
             f"{'tick':>8} {'other':>8} {'kernel':>8} {'wakeups/w':>10} {'tick wk/w':>10} "
             f"{'idle %':>7}"]
    for f in [*out["followers"], out["leader"]]:
        t = f["cpu_us_per_write_by_thread"]
        lines.append(f"{f['name']:10} {f['writes']:7d} {f['writes_per_entry']:8.2f} "
                     f"{f['cpu_us_per_write']:9.1f} {t.get('event_loop', 0):8.1f} "
                     f"{t.get('raft_tick', 0):8.1f} {t.get('other', 0):8.1f} "
                     f"{f['cpu_us_per_write_in_kernel']:8.1f} "
                     f"{f['loop_wakeups_per_write']:10.3f} {f['tick_wakeups_per_write']:10.3f} "
                     f"{f['idle_cpu_pct']:7.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.applycost", description=__doc__.split("\n")[0])
    parser.add_argument("--pods", type=int, default=DEFAULT_PODS)
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE, help="writes per second")
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS)
    parser.add_argument("--idle-seconds", type=float, default=DEFAULT_IDLE_SECONDS)
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    parser.add_argument("--via", choices=("leader", "all"), default="leader",
                        help="send the writes to the leader only, or to the three masters in turn")
    parser.add_argument("--base-port", type=int, default=DEFAULT_BASE_PORT,
                        help="first port of the masters (0: any free ports)")
    parser.add_argument("--profile", metavar="PATH",
                        help="py-spy the first follower during the load phase into PATH and the "
                        "leader into PATH.leader (raw)")
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    args = parser.parse_args(argv)
    if (args.pods < 1 or args.rate <= 0 or args.seconds <= 0 or args.idle_seconds <= 0
            or args.concurrency < 1):
        parser.error("--pods, --rate, --seconds, --idle-seconds and --concurrency must be positive")
    if args.base_port < 0 or args.base_port > 65000:
        parser.error("--base-port must be 0 (any free ports) or a port below 65000")

    from cli._local import start_local_cluster, stop_local_cluster

    def say(text: str) -> None:
        if not args.json:
            print(text, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="applycost-") as tmp:
        say("starting 3 masters ...")
        cluster = start_local_cluster(
            os.path.join(tmp, "cluster"), masters=3, nodes=0, base_port=args.base_port or None,
            extra_master_args=["--node-grace-period", str(NODE_GRACE_S)])
        try:
            out = trio.run(_measure, cluster, args, say)
        finally:
            stop_local_cluster(cluster, grace=5.0)
    print(json.dumps(out, indent=None if args.json else 2))
    if not args.json:
        print(_table(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
