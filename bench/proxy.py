"""Data-plane cost: requests/s and p50/p99 latency direct to a pod versus through its VIP.

Real traffic over loopback. Three HTTP endpoints run in their own process (127.0.1.1-3:2480x);
a load process sends sequential requests, one new TCP connection each (the case where a proxy
costs most: every request pays the proxy's connect too), alternating between one endpoint directly
and the Service's VIP (127.10.9.1), in each mode: ``nftables`` (kernel DNAT; needs root and nft)
and ``userspace`` (the trio balancer, running in this process). Alternating request by request
makes machine noise and drift hit both sides of a ratio alike. Rule-update latency is the time
from an Endpoints change to the first request that reaches the new endpoint.

With ``--cluster`` the rule update is also timed along the whole production path: a local
cluster (``edgectl up``: 3 masters, 1 hollow node whose agent runs netproxy in the mode), an
Endpoints object written through the API, the agent's watch, its proxier, traffic.

    python -m bench.proxy [--requests N] [--updates N] [--modes nftables,userspace] [--cluster] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import statistics
import sys
import time
from collections.abc import Sequence
from functools import partial

import trio

from netproxy import ProxyState, nft_available, serve_proxy
from netproxy.testing import endpoints_object, http_get, service_object

# Targets from issue 6.
NFTABLES_MAX_SLOWDOWN = 0.10  # through the VIP within 10 % of direct
USERSPACE_MAX_P50_OVERHEAD_MS = 1.0
UPDATE_TARGET_MS = 200.0

BACKENDS = [("127.0.1.1", 24801), ("127.0.1.2", 24802), ("127.0.1.3", 24803)]
SPARE = ("127.0.1.4", 24804)  # the endpoint rule updates switch to and from
VIP, VIP_PORT = "127.10.9.1", 24810
BENCH_TABLE = "edgeplane-bench"  # never the production table name
WARMUP_REQUESTS = 200  # fills caches, JITs nothing, but lets conntrack and threads settle


# -- child processes ----------------------------------------------------------------------------

def _serve_backends(spec: str) -> int:
    from netproxy.testing import HttpBackend

    servers = [HttpBackend(ip, int(port)) for ip, port in (a.split(":") for a in spec.split(","))]
    print("ready", flush=True)
    sys.stdin.read()  # until the parent closes our stdin (or dies)
    for server in servers:
        server.stop()
    return 0


def _load(targets: str, requests: int) -> int:
    """Alternate requests between the targets, so drift and noise hit each of them alike."""
    addresses = [(ip, int(port)) for ip, port in (t.rsplit(":", 1) for t in targets.split(","))]
    request = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
    latencies: list[list[float]] = [[] for _ in addresses]
    errors = [0 for _ in addresses]

    def one(address: tuple[str, int]) -> None:
        with socket.create_connection(address, timeout=5) as sock:
            sock.sendall(request)
            while sock.recv(65536):
                pass

    for _ in range(WARMUP_REQUESTS):
        for address in addresses:
            one(address)
    for _ in range(requests):
        for i, address in enumerate(addresses):
            t0 = time.perf_counter()
            try:
                one(address)
            except OSError:
                errors[i] += 1
                continue
            latencies[i].append(time.perf_counter() - t0)
    out = []
    for lat, err in zip(latencies, errors, strict=True):
        lat.sort()
        out.append({
            "requests": requests,
            "errors": err,
            # Sequential requests: the rate one client sees, 1 / mean latency.
            "rps": round(len(lat) / sum(lat), 1),
            "p50_ms": round(lat[len(lat) // 2] * 1000, 3),
            "p99_ms": round(lat[int(len(lat) * 0.99)] * 1000, 3),
        })
    print(json.dumps(out))
    return 0


# -- orchestration ------------------------------------------------------------------------------

async def _measure(targets: Sequence[tuple[str, int]], requests: int) -> list[dict]:
    done = await trio.run_process(
        [sys.executable, "-m", "bench.proxy", "--_load", ",".join(f"{ip}:{port}" for ip, port in targets),
         "--requests", str(requests)],
        capture_stdout=True, capture_stderr=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"load process failed: {done.stderr.decode()[-500:]}")
    return json.loads(done.stdout)


def _state(backends: Sequence[tuple[str, int]]) -> ProxyState:
    return ProxyState([service_object("bench", VIP, [("http", VIP_PORT, "TCP")])],
                      [_endpoints(backends)])


def _endpoints(backends: Sequence[tuple[str, int]]) -> dict:
    return endpoints_object("bench", backends, port_name="http")


async def _update_latency(state: ProxyState, updates: int) -> dict:
    """Switch the Service between the three endpoints and a spare one; time until traffic moves."""
    samples = []
    for i in range(updates):
        target = SPARE if i % 2 == 0 else BACKENDS[0]
        started = time.perf_counter()
        state.set_endpoints([_endpoints([target])])
        expected = f"{target[0]}:{target[1]}"
        with trio.fail_after(5):
            while await http_get(VIP, VIP_PORT) != expected:
                pass
        samples.append((time.perf_counter() - started) * 1000)
    state.set_endpoints([_endpoints(BACKENDS)])
    return {"p50_ms": round(statistics.median(samples), 2), "max_ms": round(max(samples), 2),
            "samples": updates}


async def _bench_mode(mode: str, requests: int, updates: int) -> dict:
    state = _state(BACKENDS)
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(serve_proxy, state, mode=mode, table=BENCH_TABLE))
        direct, via = await _measure([BACKENDS[0], (VIP, VIP_PORT)], requests)
        update = await _update_latency(state, updates)
        nursery.cancel_scope.cancel()
    return {
        "direct": direct,
        "vip": via,
        "rps_ratio": round(via["rps"] / direct["rps"], 3),
        "p50_ratio": round(via["p50_ms"] / direct["p50_ms"], 3),
        "p99_ratio": round(via["p99_ms"] / direct["p99_ms"], 3),
        "p50_overhead_ms": round(via["p50_ms"] - direct["p50_ms"], 3),
        "update_latency": update,
    }


async def _cluster_update_latency(mode: str, updates: int) -> dict:
    """Endpoints written through the API of a real local cluster -> traffic through the VIP that
    the node agent's netproxy programs (watch, proxier and data plane included)."""
    import random
    import tempfile

    from cli._local import start_local_cluster, stop_local_cluster
    from controlplane.client import ApiClient
    from controlplane.kubeconfig import load_kubeconfig

    directory = tempfile.mkdtemp(prefix="edgeplane-bench-proxy-")
    cluster = await trio.to_thread.run_sync(lambda: start_local_cluster(
        directory, masters=3, nodes=1, hollow=True, node_prefix=f"bp{random.randrange(16**4):04x}n",
        node_net=f"127.{random.randint(231, 250)}.{random.randint(1, 254)}",
        extra_node_args=["--proxy-mode", mode]))
    try:
        async with ApiClient(load_kubeconfig(str(cluster.kubeconfig)), retry_timeout=30.0) as client:
            service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "bench"},
                       "spec": {"ports": [{"name": "http", "port": VIP_PORT}]}}  # no selector:
            vip = (await client.create("services", service, namespace="default"))["spec"]["clusterIP"]
            endpoints = _endpoints([BACKENDS[0]])  # ... so only this bench writes its Endpoints
            endpoints = await client.create("endpoints", endpoints, namespace="default")
            expected = f"{BACKENDS[0][0]}:{BACKENDS[0][1]}"
            with trio.fail_after(30):  # the agent's first list, then its first sync
                while True:
                    with contextlib.suppress(OSError, trio.TooSlowError):
                        if await http_get(vip, VIP_PORT, timeout=0.5) == expected:
                            break
                    await trio.sleep(0.05)
            samples = []
            for i in range(updates):
                target = SPARE if i % 2 == 0 else BACKENDS[0]
                body = _endpoints([target])
                body["metadata"]["resourceVersion"] = endpoints["metadata"]["resourceVersion"]
                started = time.perf_counter()
                endpoints = await client.update("endpoints", body)
                expected = f"{target[0]}:{target[1]}"
                with trio.fail_after(10):
                    while True:
                        with contextlib.suppress(OSError, trio.TooSlowError):
                            if await http_get(vip, VIP_PORT, timeout=0.5) == expected:
                                break
                samples.append((time.perf_counter() - started) * 1000)
    finally:
        await trio.to_thread.run_sync(lambda: stop_local_cluster(cluster, grace=5.0))
        shutil.rmtree(directory, ignore_errors=True)
    return {"path": "API write -> agent watch -> proxier -> traffic (3 masters, 1 node)",
            "update_latency": {"p50_ms": round(statistics.median(samples), 2),
                               "max_ms": round(max(samples), 2), "samples": updates}}


async def run(modes: Sequence[str], requests: int, updates: int, cluster: bool = False) -> dict:
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "bench.proxy", "--_serve-backends",
         ",".join(f"{ip}:{port}" for ip, port in [*BACKENDS, SPARE])],
        stdin=-1, stdout=-1)
    try:
        assert proc.stdout is not None
        await proc.stdout.receive_some(16)  # "ready"
        result: dict = {
            "workload": "sequential HTTP GETs, one new TCP connection each, over loopback",
            "requests": requests,
        }
        for mode in modes:
            if mode == "nftables" and not nft_available():
                result[mode] = {"skipped": "needs root and a working nft"}
                continue
            result[mode] = await _bench_mode(mode, requests, updates)
            if cluster:
                result[mode]["cluster"] = await _cluster_update_latency(mode, updates)
        targets = {}
        if "direct" in result.get("nftables", {}):
            nft = result["nftables"]
            targets["nftables_within_10pct_of_direct"] = (
                nft["rps_ratio"] >= 1 - NFTABLES_MAX_SLOWDOWN
                and nft["p50_ratio"] <= 1 + NFTABLES_MAX_SLOWDOWN)
            targets["nftables_update_under_200ms"] = nft["update_latency"]["max_ms"] < UPDATE_TARGET_MS
        if "direct" in result.get("userspace", {}):
            user = result["userspace"]
            targets["userspace_p50_overhead_le_1ms"] = (
                user["p50_overhead_ms"] <= USERSPACE_MAX_P50_OVERHEAD_MS)
            targets["userspace_update_under_200ms"] = user["update_latency"]["max_ms"] < UPDATE_TARGET_MS
        for mode in modes:
            through = result.get(mode, {}).get("cluster")
            if through:
                # p50, not max: an API write on a busy host occasionally waits for a Raft round
                targets[f"{mode}_cluster_update_p50_under_200ms"] = (
                    through["update_latency"]["p50_ms"] < UPDATE_TARGET_MS)
        result["targets_met"] = targets
        return result
    finally:
        if proc.stdin is not None:
            await proc.stdin.aclose()
        with trio.move_on_after(5):
            await proc.wait()
        if proc.returncode is None:
            proc.kill()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=3000, help="measured requests per run")
    ap.add_argument("--updates", type=int, default=10, help="endpoint changes timed per mode")
    ap.add_argument("--modes", default="nftables,userspace",
                    help="comma-separated: nftables, userspace")
    ap.add_argument("--cluster", action="store_true",
                    help="also time rule updates through a local cluster's API and node agent")
    ap.add_argument("--json", action="store_true", help="print only the JSON object")
    ap.add_argument("--_serve-backends", dest="serve_backends", help=argparse.SUPPRESS)
    ap.add_argument("--_load", dest="load", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve_backends:
        return _serve_backends(args.serve_backends)
    if args.requests < 10 or args.updates < 1:
        print("error: --requests must be at least 10 and --updates at least 1", file=sys.stderr)
        return 2
    if args.load:
        return _load(args.load, args.requests)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = set(modes) - {"nftables", "userspace"}
    if not modes or unknown:
        print(f"error: unknown mode(s) {sorted(unknown)}; use nftables and/or userspace",
              file=sys.stderr)
        return 2
    if not args.json:
        print(f"measuring {', '.join(modes)} (pid {os.getpid()}) ...", file=sys.stderr)
    result = trio.run(run, modes, args.requests, args.updates, args.cluster)
    if args.json:
        print(json.dumps(result))
    else:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
