"""CPU a master spends per API request of a node agent (issue 9: followers' API latency under
CPU starvation is CPU per request).

    python -m bench.reqcost [--requests 1600] [--concurrency 8] [--kinds pod-status,lease,...]
                            [--json]

Setup: a real 3-master cluster on loopback (`edgectl up --masters 3`: Raft, TLS API), then
--nodes Nodes, their Leases and --pods-per-node pods bound to them (image and resources of
bench.scale's Deployments). The requests are sent as hollow nodes send them: each simulated
node has its own `HollowApiSession` (edge_agent's lean HTTP/1.1 transport over its own TLS
connection, the agent's headers and JSON bodies, bench.scale's admin token, or with --node-tokens a node credential each), and the bodies come
from the agent's own code (`compute_pod_status` over hollow containers, `NodeLease.renew`,
`node_object`). Kinds:

    pod-status   PATCH pods/NAME/status, merge patch {"metadata": {"uid"}, "status"} (a pod
                 alternates between ContainerCreating and Running, so every PATCH is a write)
    lease        PUT leases/NAME with the last resourceVersion (NodeLease.renew)
    node-status  PUT nodes/NAME/status: the Node as last returned with a fresh status (the
                 heartbeat time moves by 1 s per write so no two bodies are equal)
    get-node     GET nodes/NAME (linearizable: a read point from the leader)
    get-lease    GET leases/NAME

For each kind, --requests requests go to one FOLLOWER with --concurrency in flight, and, for
writes, the same again to the LEADER (then the follower only applies them: the difference is
what serving and forwarding cost the follower). Measured: CPU-seconds of each master from
/proc/<pid>/task/*/schedstat (run time per thread: the event-loop thread is the main thread;
the rest is mostly the Raft tick thread), minus what the master uses when idle (measured over
--idle seconds before the first kind, scaled to each kind's duration). Figures are CPU-µs per
request; the client's own CPU is not counted. Watches are not open: their fan-out is measured
elsewhere.

Run it under the benchmark lock on this machine (`flock /tmp/edgeplane-bench.lock ...`): CPU time
is less sensitive to other load than latency, but caches and frequency are shared.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from bench._proc import keep_dir_problem

# Requests per kind and target: ~1-2 CPU-seconds of a master per kind, far above the 10 ms
# resolution of /proc's CPU times and the idle drift subtracted.
DEFAULT_REQUESTS = 1600
# Requests in flight: a follower at full size serves a few agents at once; enough to let Raft
# group writes as it does during a run, few enough that the event loop is not the queue.
DEFAULT_CONCURRENCY = 8
# Simulated nodes (each its own session and TLS connection, as hollow nodes).
DEFAULT_NODES = 64
# Pods per node for the status PATCHes (bench.scale: 30 per node; 4 is enough to spread the
# writes over many objects).
DEFAULT_PODS_PER_NODE = 4
# Idle window measured before the first kind (heartbeats, GC freezer, watch cache ticks).
DEFAULT_IDLE_S = 4.0
# Loopback ports reserved for this helper's clusters (session notes: 24500-24999).
_PORTS = range(24500, 24990, 6)
NS = "reqcost"
LEASE_NS = "kube-node-lease"
IMAGE = "edgeplane/demo:1.0"  # bench.scale's image (a pinned tag)
KINDS = ("pod-status", "lease", "node-status", "get-node", "get-lease")
WRITES = frozenset({"pod-status", "lease", "node-status"})


# --------------------------------------------------------------------------- /proc

def _thread_cpu(pid: int) -> dict[str, float]:
    """CPU-seconds per thread of ``pid``: {"loop": main thread, "other": every other thread},
    from /proc/<pid>/task/<tid>/schedstat (the scheduler's run time in ns: exact, where stat's
    utime/stime are sampled at the 10 ms clock tick)."""
    out = {"loop": 0.0, "other": 0.0}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                seconds = int(f.read().split()[0]) / 1e9
        except OSError:
            continue  # a thread that just ended
        out["loop" if int(tid) == pid else "other"] += seconds
    return out


def _cpu_all(pids: dict[str, int]) -> dict[str, dict[str, float]]:
    return {name: _thread_cpu(pid) for name, pid in pids.items()}


def _free_base_port() -> int:
    for base in _PORTS:
        ok = True
        for port in range(base, base + 6):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no 6 free ports in 24500-24989")


# --------------------------------------------------------------------------- the simulated nodes

class _Node:
    """One simulated agent: its session, Node, Lease and pods."""

    def __init__(self, name: str, sessions: dict[str, Any]) -> None:
        from edge_agent._node import NodeLease

        self.name = name
        self.sessions = sessions  # "leader" / "follower" -> a session to that master only
        self.session = sessions["leader"]  # the one requests go through now
        self.lease = NodeLease(name, 40, 10.0)
        self.node: dict[str, Any] = {}
        self.pods: list[dict[str, Any]] = []
        self.running: dict[str, bool] = {}
        self.heartbeat = time.time()


def _pod_body(name: str, node: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "labels": {"app": "reqcost"}},
            "spec": {"nodeName": node, "containers": [{
                "name": "web", "image": IMAGE,
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}}


def _pod_status(pod: dict[str, Any], running: bool, node_address: str) -> dict[str, Any]:
    """What a hollow agent reports for ``pod``: its one container waiting or running."""
    import zlib

    from edge_agent._runtime import ContainerInfo
    from edge_agent._status import ProbeState, compute_pod_status

    uid = pod["metadata"]["uid"]
    now = time.time()
    containers = []
    probes = {}
    if running:
        # The hollow runtime's ids: a counter and the image's crc, zero-padded hex.
        cid = f"{zlib.crc32(uid.encode()):064x}"
        containers.append(ContainerInfo(
            id=cid, pod_namespace=NS, pod_name=pod["metadata"]["name"], pod_uid=uid,
            container_name="web", restart_count=0, grace_seconds=30, image=IMAGE,
            image_id=f"sha256:{zlib.crc32(IMAGE.encode()):064x}", state="running",
            started_at=now, created_at=now))
        probes[cid] = ProbeState(ready=True, started=True)
    return compute_pod_status(pod, containers, {}, probes, node_address=node_address,
                              scheme="hollow", now=now)


class _Bench:
    def __init__(self, args: argparse.Namespace, root: pathlib.Path, say: Callable[[str], None]) -> None:
        self.args = args
        self.root = root
        self.say = say
        self.cluster: Any = None
        self.result: dict[str, Any] = {}

    def start_cluster(self) -> None:
        from cli._local import start_local_cluster

        self.cluster = start_local_cluster(self.root / "cluster", masters=3, nodes=0,
                                           base_port=_free_base_port())

    def stop_cluster(self) -> None:
        from cli._local import stop_local_cluster

        if self.cluster is not None:
            stop_local_cluster(self.cluster, grace=5.0)

    def _sessions(self, url: str, tokens: list[str]) -> list[Any]:
        from edge_agent._hollow_api import HollowApiSession, tls_context

        context = tls_context(str(self.cluster.dir / "ca.crt"))
        return [HollowApiSession([url], token, context=context) for token in tokens]

    async def _tokens(self, api: Any, names: list[str]) -> list[str]:
        """Each node's bearer token: bench.scale's admin token, or with --node-tokens a node
        credential of its own (as `edgectl node join` gives an agent: the API then checks
        every request against the node's rights)."""
        admin = (self.cluster.dir / "admin-token").read_text().strip()
        if not self.args.node_tokens:
            return [admin] * len(names)
        tokens = []
        for name in names:
            answer = await api.request_json("POST", "/edgeplane/v1/tokens", json_body={
                "kind": "auth", "role": "node", "name": name})
            tokens.append(answer["token"])
        return tokens

    async def _roles(self) -> tuple[str, str, str]:
        """(leader, follower, the other follower) names, once a leader answers."""
        import dataclasses

        from controlplane.client import ApiClient
        from controlplane.kubeconfig import load_kubeconfig

        config = load_kubeconfig(str(self.cluster.kubeconfig))
        with trio.fail_after(30):
            while True:
                leader = None
                for m in self.cluster.masters():
                    api = ApiClient(dataclasses.replace(config, servers=(m.api_address,)),
                                    retry_timeout=0.0)
                    try:
                        st = await api.request_json("GET", "/edgeplane/v1/cluster/status")
                        if st.get("isLeader"):
                            leader = m.name
                    finally:
                        await api.aclose()
                if leader is not None:
                    others = sorted(m.name for m in self.cluster.masters() if m.name != leader)
                    return leader, others[0], others[1]
                await trio.sleep(0.5)

    async def setup(self, url: str, follower_url: str) -> list[_Node]:
        import dataclasses

        from controlplane.client import ApiClient
        from controlplane.kubeconfig import load_kubeconfig
        from edge_agent._node import node_object

        config = load_kubeconfig(str(self.cluster.kubeconfig))
        api = ApiClient(dataclasses.replace(config, servers=(url,)))
        try:
            await api.create("namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                            "metadata": {"name": NS}})
            names = [f"reqcost-{i:03d}" for i in range(self.args.nodes)]
            tokens = await self._tokens(api, names)
            nodes = [_Node(name, {"leader": s, "follower": f}) for name, s, f in
                     zip(names, self._sessions(url, tokens), self._sessions(follower_url, tokens),
                         strict=True)]

            async def register(n: _Node) -> None:
                n.node = await n.session.create_node(node_object(
                    n.name, "127.0.65.1", cpu="64", memory="256Gi", max_pods=110,
                    runtime_version="hollow://1.0"))
                n.lease.node_uid = n.node["metadata"]["uid"]
                await n.lease.renew(n.session)
                for j in range(self.args.pods_per_node):
                    pod = await api.create("pods", _pod_body(f"{n.name}-{j}", n.name), namespace=NS)
                    n.pods.append(pod)
                    n.running[pod["metadata"]["name"]] = False

            async with trio.open_nursery() as nursery:
                for n in nodes:
                    nursery.start_soon(register, n)
        finally:
            await api.aclose()
        return nodes

    @staticmethod
    def _action(kind: str, n: _Node, i: int) -> Awaitable[Any]:
        from edge_agent._api import ApiError
        from edge_agent._node import ready_condition, rfc3339

        if kind == "pod-status":
            pod = n.pods[i % len(n.pods)]
            name = pod["metadata"]["name"]
            running = n.running[name] = not n.running[name]
            return n.session.patch_pod_status(pod, _pod_status(pod, running, "127.0.65.1"), "{}")
        if kind == "lease":
            return n.lease.renew(n.session)
        if kind == "node-status":
            async def put() -> None:
                # As the agent's _update_node_status: the current Node with a fresh status.
                n.heartbeat += 1.0
                beat = rfc3339(n.heartbeat)
                for _ in range(3):
                    body = dict(n.node)
                    status = dict(body.get("status") or {})
                    status["conditions"] = [ready_condition(beat, rfc3339(0))]
                    body["status"] = status
                    try:
                        n.node = await n.session.update_node_status(body)
                        return
                    except ApiError as exc:
                        # the leader's node controller wrote the Node meanwhile (taints,
                        # conditions): re-read it, as the agent does before every write
                        if exc.code != 409:
                            raise
                        n.node = await n.session.get_node(n.name) or n.node
                raise RuntimeError(f"node {n.name} kept changing under the status writes")
            return put()
        if kind == "get-node":
            return n.session.get_node(n.name)
        if kind == "get-lease":
            return n.session.get_lease(n.name)
        raise ValueError(kind)

    async def drive(self, kind: str, nodes: list[_Node], count: int) -> float:
        """``count`` requests of ``kind`` over ``nodes`` with the configured concurrency;
        the wall time they took."""
        conc = self.args.concurrency
        started = time.perf_counter()

        async def worker(w: int) -> None:
            mine = nodes[w::conc]
            for i in range(w, count, conc):
                n = mine[(i // conc) % len(mine)]
                await self._action(kind, n, i // conc // len(mine))

        async with trio.open_nursery() as nursery:
            for w in range(conc):
                nursery.start_soon(worker, w)
        return time.perf_counter() - started

    async def run(self) -> None:
        leader, follower, other = await self._roles()
        masters = {m.name: m for m in self.cluster.masters()}
        pids = {"leader": masters[leader].pid, "follower": masters[follower].pid,
                "other": masters[other].pid}
        self.result["masters"] = {"leader": leader, "follower": follower, "other": other}
        self.say(f"leader {leader}, measured follower {follower}")
        nodes = await self.setup(masters[leader].api_address, masters[follower].api_address)
        # a warm-up of every kind on both targets (connections, caches, first-call imports)
        for kind in self.args.kinds:
            for target in ("follower", "leader"):
                for n in nodes:
                    n.session = n.sessions[target]
                await self.drive(kind, nodes, min(200, self.args.requests))
        await trio.sleep(1.0)
        before = _cpu_all(pids)
        t0 = time.perf_counter()
        await trio.sleep(self.args.idle)
        idle_wall = time.perf_counter() - t0
        after = _cpu_all(pids)
        idle = {p: {t: (after[p][t] - before[p][t]) / idle_wall for t in before[p]} for p in pids}
        self.result["idle_cpu_per_s"] = {p: {t: round(v, 4) for t, v in idle[p].items()} for p in pids}
        rows = []
        for kind in self.args.kinds:
            for target in ("follower", "leader") if kind in WRITES else ("follower",):
                for n in nodes:
                    n.session = n.sessions[target]
                before = _cpu_all(pids)
                wall = await self.drive(kind, nodes, self.args.requests)
                after = _cpu_all(pids)
                row: dict[str, Any] = {"kind": kind, "sent_to": target,
                                       "requests": self.args.requests,
                                       "per_s": round(self.args.requests / wall, 1)}
                for p in pids:
                    for t in ("loop", "other"):
                        used = after[p][t] - before[p][t] - idle[p][t] * wall
                        row[f"{p}_{t}_us"] = round(used / self.args.requests * 1e6, 1)
                    row[f"{p}_us"] = round(row[f"{p}_loop_us"] + row[f"{p}_other_us"], 1)
                rows.append(row)
                self.say(f"  {kind:12} -> {target:8} follower {row['follower_us']:8.1f} µs "
                         f"(loop {row['follower_loop_us']:.1f})  leader {row['leader_us']:8.1f} µs"
                         f"  {row['per_s']:.0f}/s")
        self.result["rows"] = rows
        for n in nodes:
            for session in n.sessions.values():
                await session.aclose()


def table(out: dict[str, Any]) -> str:
    lines = [f"{'kind':12} {'sent to':9} {'req/s':>7} {'follower µs':>12} {'(loop)':>8} "
             f"{'leader µs':>10} {'other µs':>9}"]
    for r in out.get("rows", []):
        lines.append(f"{r['kind']:12} {r['sent_to']:9} {r['per_s']:7.0f} {r['follower_us']:12.1f} "
                     f"{r['follower_loop_us']:8.1f} {r['leader_us']:10.1f} {r['other_us']:9.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.reqcost", description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=DEFAULT_REQUESTS)
    ap.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    ap.add_argument("--nodes", type=int, default=DEFAULT_NODES)
    ap.add_argument("--pods-per-node", type=int, default=DEFAULT_PODS_PER_NODE)
    ap.add_argument("--idle", type=float, default=DEFAULT_IDLE_S)
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--node-tokens", action="store_true",
                    help="each node authenticates with a node token of its own (default: the "
                         "admin token, as bench.scale's hollow nodes)")
    ap.add_argument("--json", action="store_true", help="print only the JSON object")
    ap.add_argument("--keep-dir", help="run in this directory and keep it")
    args = ap.parse_args(argv)
    args.kinds = [k for k in args.kinds.split(",") if k]
    unknown = [k for k in args.kinds if k not in KINDS]
    if unknown:
        ap.error(f"unknown kinds {unknown}; choose from {', '.join(KINDS)}")
    if args.nodes < args.concurrency:
        ap.error("--nodes must be at least --concurrency")
    if (problem := keep_dir_problem(args.keep_dir)) is not None:
        ap.error(problem)

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    root = pathlib.Path(args.keep_dir or tempfile.mkdtemp(prefix="edgeplane-reqcost-")).absolute()
    bench = _Bench(args, root, say)
    out: dict[str, Any] = {"load_1min_before": os.getloadavg()[0]}
    try:
        bench.start_cluster()
        trio.run(bench.run)
    finally:
        bench.stop_cluster()
        if args.keep_dir is None:
            shutil.rmtree(root, ignore_errors=True)
    out.update(bench.result)
    out["load_1min_after"] = os.getloadavg()[0]
    out["settings"] = {"requests": args.requests, "concurrency": args.concurrency,
                       "nodes": args.nodes, "pods_per_node": args.pods_per_node,
                       "credentials": "node tokens" if args.node_tokens else "admin token"}
    print(json.dumps(out, indent=None if args.json else 2))
    if not args.json:
        print(table(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
