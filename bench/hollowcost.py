"""CPU the simulated nodes of bench.scale spend: a lease lane per Lease renewal, a hollow runner
per pod (issue 9: the simulation shares the masters' two cores, so its CPU lengthens the
masters' run-queue waits).

    python -m bench.hollowcost [--lease-nodes 250] [--nodes 100] [--pods 3000] [--masters 1]
                               [--json]

Setup: a real local cluster (`edgectl up`, TLS API, --masters of them) and then, one after the
other:

- lease: --lease-nodes Nodes registered, and a lease lane (`edge_agent._hollow_runner.LeaseLane`,
  the process bench.scale's runners start) renewing their Leases with bench.scale's heartbeat
  (40 s Lease renewed every 10 s). Once every Lease was renewed once, the lane's CPU (its
  process, all threads, from /proc/PID/task/*/schedstat) is read each time it prints its
  summary (every 5 s: the renewals since the previous one), over --lease-summaries summaries:
  CPU-µs per renewal (everything the lane does in that time: renewals, timers, its loop-lag
  probe).
- runner: a hollow runner of --nodes nodes (`python -m bench.scale --hollow-runner`, exactly
  bench.scale's runner, with its own lease lane), all Ready, its idle CPU measured over one
  renew interval; then --pods pods in Deployments of 100 (bench.scale's template and
  nodeSelector) at --rate Deployments/s, until every pod is Ready. The runner process's CPU
  (its lease lane not counted: that is the first part) over that span, minus its idle rate
  over the same time, per 1,000 pods: watch events received (the bind, the echo of the node's
  own status write), the pod syncs, the status PATCHes and their answers.

Figures vary with this machine's speed (it drifts ~15 % within half an hour): compare old and
new code back to back (old from a `git worktree`, via PYTHONPATH), under the benchmark lock
(`flock /tmp/edgeplane-bench.lock ...`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import trio

from bench._ports import free_port
from bench._proc import keep_dir_problem, stop_process_groups

# This benchmark's cluster ports (a master takes two from its base).
PORTS = range(26000, 26400, 8)
# bench.scale's heartbeat: a 40 s Lease renewed every 10 s, node status every 5 min.
LEASE_SECONDS = 40
LEASE_RENEW_S = 10.0
NODE_STATUS_S = 300.0
# Summaries (5 s apart) the lane's CPU is measured over: ~30 s, ~800 renewals at 250 nodes.
DEFAULT_LEASE_SUMMARIES = 6
DEFAULT_LEASE_NODES = 250
# One runner of 100 nodes given 30 pods each, as bench.scale's nodes get.
DEFAULT_NODES = 100
DEFAULT_PODS = 3000
# bench.scale's default rate (Deployments of 100 pods per second).
DEFAULT_RATE = 5.0
NS = "hollowcost"
IMAGE = "edgeplane/demo:1.0"
RUNNER_PREFIX = "hc"
# The runner writes its totals every 5 s (edge_agent._hollow_runner.STATS_INTERVAL): two
# intervals for a fresh line, even on a loaded machine.
RUNNER_STATS_WAIT_S = 10.0


def process_cpu_s(pid: int) -> float:
    """Run time of every thread of `pid` so far (ns resolution, unlike /proc/PID/stat's ticks)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass  # a thread that just ended
    return total / 1e9


class _Bench:
    def __init__(self, args: argparse.Namespace, root: pathlib.Path, say: Any) -> None:
        self.args, self.root, self.say = args, root, say
        self.cluster: Any = None
        self.procs: list[subprocess.Popen[bytes]] = []
        self.result: dict[str, Any] = {}

    def start_cluster(self) -> None:
        from cli._local import start_local_cluster

        self.cluster = start_local_cluster(
            self.root / "cluster", masters=self.args.masters, nodes=0,
            base_port=free_port(PORTS),
            extra_master_args=["--node-grace-period", str(float(LEASE_SECONDS))])

    def stop(self) -> None:
        from cli._local import stop_local_cluster

        stop_process_groups(self.procs)
        if self.cluster is not None:
            stop_local_cluster(self.cluster, grace=5.0)

    def client(self) -> Any:
        from controlplane.client import ApiClient
        from controlplane.kubeconfig import load_kubeconfig

        config = load_kubeconfig(str(self.cluster.kubeconfig))
        return ApiClient(dataclasses.replace(config), user_agent="edgeplane-bench-hollowcost")

    @property
    def urls(self) -> list[str]:
        return [str(m.api_address) for m in self.cluster.masters()]

    @property
    def token(self) -> str:
        return (self.cluster.dir / "admin-token").read_text().strip()

    # ---- lease lane -------------------------------------------------------------------------

    async def lease_phase(self, api: Any) -> None:
        from edge_agent._hollow_runner import LeaseLane
        from edge_agent._node import node_object

        n = self.args.lease_nodes
        names = [f"lane-{i:04d}" for i in range(n)]
        uids: dict[str, str] = {}

        async def register(name: str) -> None:
            node = await api.create("nodes", node_object(
                name, "127.0.68.1", cpu="32", memory="64Gi", max_pods=250,
                runtime_version="hollow://simulated"))
            uids[name] = node["metadata"]["uid"]

        async with trio.open_nursery() as nursery:
            for name in names:
                nursery.start_soon(register, name)
        lane = LeaseLane(names, servers=self.urls, token=self.token,
                         verify=str(self.cluster.dir / "ca.crt"),
                         renew_interval=LEASE_RENEW_S, lease_seconds=LEASE_SECONDS)
        async with trio.open_nursery() as nursery:
            await nursery.start(lane.run)
            await lane.send_uids(uids)
            pid = self._lane_pid()
            self.say(f"lease lane of {n} nodes started; settling one renew interval ...")

            async def next_summary() -> dict[str, Any]:
                old = lane.latest
                while lane.latest is old:
                    await trio.sleep(0.005)
                return lane.latest

            # Every Lease created (a read and a create) and renewed once before measuring.
            with trio.fail_after(LEASE_RENEW_S * 4):
                while len(await self._leases(api, names)) < n:
                    await trio.sleep(1.0)
            await trio.sleep(LEASE_RENEW_S)
            await next_summary()
            cpu0, renewals, t0 = process_cpu_s(pid), 0, time.monotonic()
            p50s: list[float] = []
            for _ in range(self.args.lease_summaries):
                summary = await next_summary()
                renewals += summary["renewals"]
                if summary.get("request_p50_s") is not None:
                    p50s.append(summary["request_p50_s"])
            cpu = process_cpu_s(pid) - cpu0
            span = time.monotonic() - t0
            nursery.cancel_scope.cancel()
        self.result["lease_lane"] = {
            "nodes": n, "renewals": renewals, "span_s": round(span, 1),
            "cpu_s": round(cpu, 3), "cpu_us_per_renewal": round(cpu / max(1, renewals) * 1e6, 1),
            "failures_total": summary.get("failures_total"), "late_total": summary.get("late_total"),
            # The median of the summaries' medians: the last summary alone can hold no renewal.
            "request_p50_s": round(statistics.median(p50s), 3) if p50s else None}

    def _lane_pid(self) -> int:
        """The lane process: this process's child running edge_agent._lease_lane."""
        me = os.getpid()
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = pathlib.Path(f"/proc/{entry}/stat").read_text()
                    cmd = pathlib.Path(f"/proc/{entry}/cmdline").read_bytes()
                except OSError:
                    continue
                if (int(stat.rsplit(")", 1)[1].split()[1]) == me
                        and b"edge_agent._lease_lane" in cmd):
                    return int(entry)
        raise RuntimeError("the lease lane process is not found")

    async def _leases(self, api: Any, names: list[str]) -> set[str]:
        """Those of `names` whose Lease exists."""
        wanted = set(names)
        body = await api.list("leases", namespace="kube-node-lease", limit=5000)
        return {lease["metadata"]["name"] for lease in body.get("items") or []} & wanted

    # ---- runner -------------------------------------------------------------------------------

    async def runner_phase(self, api: Any) -> None:
        args = self.args
        (self.root / "token").write_text(self.token)
        log = open(self.root / "runner.log", "ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.scale", "--hollow-runner", "--prefix", RUNNER_PREFIX,
             "--count", str(args.nodes), "--first", "0", "--runner-nice", "0",
             "--servers", ",".join(self.urls), "--token-file", str(self.root / "token"),
             "--ca-file", str(self.cluster.dir / "ca.crt"),
             "--data-dir", str(self.root / "nodes"),
             "--events-file", str(self.root / "events.jsonl")],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        log.close()
        self.procs.append(proc)
        self.say(f"runner of {args.nodes} nodes started; waiting for them to be Ready ...")
        with trio.fail_after(60 + args.nodes * 0.3):
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"the runner exited; see {self.root}/runner.log")
                body = await api.list("nodes", limit=5000)
                ready = sum(1 for node in body.get("items") or []
                            if node["metadata"]["name"].startswith(RUNNER_PREFIX)
                            and any(c.get("type") == "Ready" and c.get("status") == "True"
                                    for c in (node.get("status") or {}).get("conditions") or []))
                if ready >= args.nodes:
                    break
                await trio.sleep(1.0)
        # Registration's tail (first Lease writes, node status) done; then the idle rate.
        await trio.sleep(LEASE_RENEW_S)
        cpu0, t0 = process_cpu_s(proc.pid), time.monotonic()
        await trio.sleep(LEASE_RENEW_S)
        idle_rate = (process_cpu_s(proc.pid) - cpu0) / (time.monotonic() - t0)
        self.say(f"runner idle: {idle_rate * 100:.2f} % of a core; creating {args.pods} pods ...")
        cpu0, t0 = process_cpu_s(proc.pid), time.monotonic()
        deployments = -(-args.pods // 100)
        remaining = args.pods

        async def create_all() -> None:
            nonlocal remaining
            for d in range(deployments):
                replicas = min(100, remaining)
                remaining -= replicas
                name = f"hc-{d:04d}"
                await api.create("deployments", {
                    "apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": name, "namespace": NS},
                    "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                             "template": {
                                 "metadata": {"labels": {"app": name}},
                                 "spec": {"nodeSelector": {
                                     "bench.edgeplane.io/group": RUNNER_PREFIX},
                                     "containers": [{"name": "web", "image": IMAGE,
                                                     "resources": {"requests": {
                                                         "cpu": "10m", "memory": "16Mi"}}}]}}}})
                delay = t0 + (d + 1) / args.rate - time.monotonic()
                if delay > 0:
                    await trio.sleep(delay)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(create_all)
            with trio.fail_after(args.timeout):
                while True:
                    await trio.sleep(0.5)
                    body = await api.list("deployments", namespace=NS, limit=1000)
                    ready = sum(int((d.get("status") or {}).get("readyReplicas") or 0)
                                for d in body.get("items") or [])
                    if ready >= args.pods:
                        break
        # The echo of the last status writes reaches the runner right after they commit.
        await trio.sleep(1.0)
        span = time.monotonic() - t0
        cpu = process_cpu_s(proc.pid) - cpu0
        work = cpu - idle_rate * span
        ended = time.time()
        self.result["runner"] = {
            "nodes": args.nodes, "pods": args.pods, "pods_ready": ready, "span_s": round(span, 1),
            "idle_cpu_pct": round(idle_rate * 100, 2), "cpu_s": round(cpu, 3),
            "cpu_s_per_1000_pods": round(cpu / args.pods * 1000, 3),
            "cpu_s_per_1000_pods_above_idle": round(work / args.pods * 1000, 3)}
        # The runner writes its totals every STATS_INTERVAL (5 s): the pods can all be Ready
        # sooner, so wait for a line written after the span, or the totals would predate them.
        stats: list[dict[str, Any]] = []
        with trio.move_on_after(RUNNER_STATS_WAIT_S):
            while True:
                stats = [json.loads(line) for line in
                         (self.root / "events.jsonl").read_text().splitlines()
                         if line.startswith('{"kind": "runner"')]
                if stats and stats[-1].get("t", 0) >= ended:
                    break
                await trio.sleep(0.2)
        if stats and stats[-1].get("t", 0) >= ended:
            last = stats[-1]
            self.result["runner"].update(
                api_requests=last.get("api_requests"), api_connects=last.get("api_connects"),
                pod_echoes_skipped=last.get("pod_echoes_skipped"))

    async def run(self) -> None:
        self.say(f"starting {self.args.masters} master(s) ...")
        self.start_cluster()
        api = self.client()
        try:
            await api.create("namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                            "metadata": {"name": NS}})
            if self.args.lease_nodes:
                await self.lease_phase(api)
            if self.args.pods:
                await self.runner_phase(api)
        finally:
            await api.aclose()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.hollowcost", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lease-nodes", type=int, default=DEFAULT_LEASE_NODES,
                    help="nodes whose Leases one lane renews (0: skip the lease part)")
    ap.add_argument("--lease-summaries", type=int, default=DEFAULT_LEASE_SUMMARIES,
                    help="5 s summaries of the lane measured")
    ap.add_argument("--nodes", type=int, default=DEFAULT_NODES, help="hollow nodes of the runner")
    ap.add_argument("--pods", type=int, default=DEFAULT_PODS, help="pods (0: skip the runner part)")
    ap.add_argument("--rate", type=float, default=DEFAULT_RATE, help="Deployments per second")
    ap.add_argument("--masters", type=int, default=1, choices=(1, 3))
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds for every pod Ready")
    ap.add_argument("--keep-dir", help="keep the cluster's files here")
    ap.add_argument("--json", action="store_true", help="print only the JSON result")
    args = ap.parse_args(argv)
    if args.lease_nodes < 0 or args.nodes < 1 or args.pods < 0 \
            or not 0 < args.rate < math.inf or args.lease_summaries < 1 \
            or not 0 < args.timeout < math.inf:  # (the comparisons also refuse nan)
        ap.error("--lease-nodes/--pods must be >= 0, --nodes/--lease-summaries >= 1, "
                 "--rate/--timeout > 0 and finite")
    if args.lease_nodes == 0 and args.pods == 0:
        ap.error("nothing to measure: --lease-nodes and --pods are both 0")
    if (problem := keep_dir_problem(args.keep_dir)) is not None:
        ap.error(problem)

    def say(msg: str) -> None:
        if not args.json:
            print(msg, file=sys.stderr, flush=True)

    root = pathlib.Path(args.keep_dir or tempfile.mkdtemp(prefix="hollowcost-"))
    root.mkdir(parents=True, exist_ok=True)
    bench = _Bench(args, root, say)
    try:
        trio.run(bench.run)
    finally:
        bench.stop()
        if not args.keep_dir:
            shutil.rmtree(root, ignore_errors=True)
    bench.result["load_1min"] = os.getloadavg()[0]
    print(json.dumps(bench.result, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
