"""API server benchmark: request latency and sustained throughput over HTTP, compared with etcd.

    python -m bench.api [--kubeconfig FILE] [--json] [--clients 4] [--concurrency 16] [--duration 5]

Without ``--kubeconfig`` it starts one API server on a MemoryStore (no Raft, no disk) in a child
process on loopback and says so in the output; point it at an ``edgectl up`` cluster for the
real figures. Then, unless ``--no-etcd``, it starts a 3-member etcd cluster (Debian's
/usr/bin/etcd, default fsync) on loopback and drives its v3 JSON gateway (/v3/kv/put) with the
same write pattern: same value size, same client processes and concurrency.

Phases: (1) latency — one client, sequential: create, update (PUT with resourceVersion), get,
list (a namespace of --objects objects); (2) sustained writes (creates) and (3) sustained reads
(gets) from --clients processes with --concurrency requests in flight each.
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing as mp
import os
import secrets
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench._ports import free_port

# Loopback ports for the bench's own servers (the API server and etcd): the range reserved for
# API benchmarks and tests, away from other suites.
_PORTS = range(22000, 23000)
# A ConfigMap of ~300 bytes: a typical small object (pods are ~1 KiB, leases ~250 bytes).
_PAYLOAD = "x" * 256
_ADMIN_TOKEN = "bench-admin-token"


def _free_port() -> int:
    return free_port(_PORTS)


def _percentiles(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"p50": 0.0, "p99": 0.0, "n": 0}
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50": round(pick(0.50) * 1000, 3), "p99": round(pick(0.99) * 1000, 3), "n": len(ordered)}


# ---------------------------------------------------------------- the in-process server


def _serve_memory(port: int, ready: Any) -> None:
    import logging

    import trio

    from controlplane.apiserver import StaticTokenAuthenticator, User, create_app, serve_api
    from controlplane.registry import Registry
    from raftstore import MemoryStore

    logging.basicConfig(level=logging.WARNING)

    async def main() -> None:
        store = MemoryStore()
        registry = Registry(store)
        await registry.ensure_namespaces()
        app = create_app(registry, store=store, info={},
                         authenticator=StaticTokenAuthenticator({_ADMIN_TOKEN: User("admin", (), "admin")}))
        async with trio.open_nursery() as nursery:
            await nursery.start(lambda task_status: serve_api(app, host="127.0.0.1", port=port, task_status=task_status))
            ready.set()

    trio.run(main)


class _Target:
    def __init__(self, servers: list[str], token: str | None, ca_data: bytes | None, description: str) -> None:
        self.servers = servers
        self.token = token
        self.ca_data = ca_data
        self.description = description

    def spec(self) -> dict[str, Any]:
        return {"servers": self.servers, "token": self.token, "ca": self.ca_data.decode() if self.ca_data else None}


def _client(spec: dict[str, Any], server: str, **kw: Any) -> Any:
    verify: Any = True
    if spec.get("ca"):
        verify = ssl.create_default_context(cadata=spec["ca"])
    headers = {"Authorization": f"Bearer {spec['token']}"} if spec.get("token") else {}
    return httpx.AsyncClient(base_url=server, headers=headers, verify=verify, timeout=30,
                             limits=httpx.Limits(max_connections=256, max_keepalive_connections=256), **kw)


# ---------------------------------------------------------------- a lean HTTP/1.1 client


class _RawHttp:
    """A minimal keep-alive HTTP/1.1 client on one trio stream.

    The load generators use it instead of httpx, whose per-request cost (~1 ms of CPU) would make
    the client processes, not the servers, the bottleneck on a 2-core machine.
    """

    def __init__(self, url: str, token: str | None, ca: str | None) -> None:
        parsed = httpx.URL(url)
        self.host, self.port, self.tls = parsed.host, parsed.port or (443 if parsed.scheme == "https" else 80), parsed.scheme == "https"
        self.ca = ca
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        self.head = f"Host: {self.host}:{self.port}\r\n{auth}".encode()
        self.stream: Any = None
        self.buffer = b""

    async def _connect(self) -> None:
        import trio

        stream: Any = await trio.open_tcp_stream(self.host, self.port)
        if self.tls:
            ctx = ssl.create_default_context(cadata=self.ca) if self.ca else ssl.create_default_context()
            stream = trio.SSLStream(stream, ctx, server_hostname=self.host, https_compatible=True)
            await stream.do_handshake()
        self.stream = stream
        self.buffer = b""

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        if self.stream is None:
            await self._connect()
        extra = b""
        if body is not None:
            extra = b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
        await self.stream.send_all(b"%s %s HTTP/1.1\r\n" % (method.encode(), path.encode()) + self.head + extra + b"\r\n" + (body or b""))
        while b"\r\n\r\n" not in self.buffer:
            await self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            headers[k.strip().lower()] = v.strip()
        if b"content-length" in headers:
            size = int(headers[b"content-length"])
            while len(self.buffer) < size:
                await self._fill()
            data, self.buffer = self.buffer[:size], self.buffer[size:]
        else:  # chunked
            data = b""
            while True:
                while b"\r\n" not in self.buffer:
                    await self._fill()
                size_line, self.buffer = self.buffer.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                while len(self.buffer) < size + 2:
                    await self._fill()
                data += self.buffer[:size]
                self.buffer = self.buffer[size + 2:]
                if size == 0:
                    break
        if headers.get(b"connection", b"").lower() == b"close":
            await self.aclose()
        return status, data

    async def _fill(self) -> None:
        chunk = await self.stream.receive_some(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buffer += chunk

    async def aclose(self) -> None:
        if self.stream is not None:
            await self.stream.aclose()
            self.stream = None


# ---------------------------------------------------------------- worker processes


def _worker(spec: dict[str, Any], queue: Any) -> None:
    import trio

    try:
        queue.put(trio.run(_worker_main, spec))
    except BaseException as exc:  # report, never hang the parent
        queue.put({"error": repr(exc)})


async def _worker_main(spec: dict[str, Any]) -> dict[str, Any]:
    import trio

    mode = spec["mode"]
    server = spec["servers"][spec["index"] % len(spec["servers"])]
    ns = spec.get("namespace", "default")
    done = 0
    failed = 0
    wait = spec["start_at"] - time.time()
    if wait > 0:
        await trio.sleep(wait)
    deadline = trio.current_time() + spec["duration"]
    etcd_value = base64.b64encode(_PAYLOAD.encode() + b"x" * 48).decode()

    async def loop(j: int) -> None:
        nonlocal done, failed
        client = _RawHttp(server, spec.get("token"), spec.get("ca"))
        i = 0
        try:
            while trio.current_time() < deadline:
                i += 1
                if mode == "write":
                    name = f"w{spec['index']}-{j}-{i}-{spec['tag']}"
                    body = json.dumps({"metadata": {"name": name}, "data": {"v": _PAYLOAD}}).encode()
                    status, _ = await client.request("POST", f"/api/v1/namespaces/{ns}/configmaps", body)
                    ok = status == 201
                elif mode == "read":
                    name = spec["read_names"][(j * 7919 + i) % len(spec["read_names"])]
                    status, _ = await client.request("GET", f"/api/v1/namespaces/{ns}/configmaps/{name}")
                    ok = status == 200
                else:  # etcd
                    key = base64.b64encode(f"/bench/{spec['index']}/{j}/{i}".encode()).decode()
                    status, _ = await client.request("POST", "/v3/kv/put", json.dumps({"key": key, "value": etcd_value}).encode())
                    ok = status == 200
                if ok:
                    done += 1
                else:
                    failed += 1
        finally:
            await client.aclose()

    async with trio.open_nursery() as nursery:
        for j in range(spec["concurrency"]):
            nursery.start_soon(loop, j)
    return {"done": done, "failed": failed}


def _sustained(target_spec: dict[str, Any], mode: str, clients: int, concurrency: int, duration: float,
               extra: dict[str, Any] | None = None) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    start_at = time.time() + 3.0  # every process connects first, then all start together
    tag = secrets.token_hex(3)
    procs = []
    for index in range(clients):
        spec = {**target_spec, **(extra or {}), "mode": mode, "index": index, "concurrency": concurrency,
                "duration": duration, "start_at": start_at, "tag": tag}
        proc = ctx.Process(target=_worker, args=(spec, queue), daemon=True)
        proc.start()
        procs.append(proc)
    results = [queue.get(timeout=duration + 120) for _ in procs]
    for proc in procs:
        proc.join(timeout=10)
    errors = [r["error"] for r in results if "error" in r]
    done = sum(r.get("done", 0) for r in results)
    failed = sum(r.get("failed", 0) for r in results)
    out = {"ops_per_s": round(done / duration, 1), "ops": done, "failed": failed}
    if errors:
        out["worker_errors"] = errors
    return out


# ---------------------------------------------------------------- latency phase


def _latency(target: _Target, namespace: str, objects: int) -> dict[str, Any]:
    import trio

    async def run() -> dict[str, Any]:
        spec = target.spec()
        async with _client(spec, target.servers[0]) as c:
            create, update, get, lst = [], [], [], []
            for i in range(objects):
                t = time.perf_counter()
                r = await c.post(f"/api/v1/namespaces/{namespace}/configmaps",
                                 json={"metadata": {"name": f"lat-{i}"}, "data": {"v": _PAYLOAD}})
                create.append(time.perf_counter() - t)
                r.raise_for_status()
                obj = r.json()
                obj["data"]["v"] = _PAYLOAD[:-1] + "y"
                t = time.perf_counter()
                r = await c.put(f"/api/v1/namespaces/{namespace}/configmaps/lat-{i}", json=obj)
                update.append(time.perf_counter() - t)
                r.raise_for_status()
            for i in range(objects):
                t = time.perf_counter()
                r = await c.get(f"/api/v1/namespaces/{namespace}/configmaps/lat-{i}")
                get.append(time.perf_counter() - t)
                r.raise_for_status()
            for _ in range(max(10, objects // 10)):
                t = time.perf_counter()
                r = await c.get(f"/api/v1/namespaces/{namespace}/configmaps")
                lst.append(time.perf_counter() - t)
                r.raise_for_status()
        return {"create": _percentiles(create), "update": _percentiles(update), "get": _percentiles(get),
                "list": {**_percentiles(lst), "items": objects}}

    return trio.run(run)


def _etcd_latency(endpoint: str, count: int) -> dict[str, float]:
    samples = []
    value = base64.b64encode(_PAYLOAD.encode() + b"x" * 48).decode()
    with httpx.Client(base_url=endpoint, timeout=30) as c:
        for i in range(count):
            t = time.perf_counter()
            c.post("/v3/kv/put", json={"key": base64.b64encode(f"/lat/{i}".encode()).decode(), "value": value}).raise_for_status()
            samples.append(time.perf_counter() - t)
    return _percentiles(samples)


# ---------------------------------------------------------------- etcd cluster


class _EtcdCluster:
    """Three etcd members on loopback, in a temporary directory; stopped on exit."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bench-etcd-"))
        self.procs: list[subprocess.Popen[bytes]] = []
        self.clients: list[str] = []

    def __enter__(self) -> _EtcdCluster:
        ports: set[int] = set()
        while len(ports) < 6:
            ports.add(_free_port())
        peers, clients = sorted(ports)[:3], sorted(ports)[3:]
        token = f"bench-{secrets.token_hex(4)}"  # the same for every member of this cluster
        cluster = ",".join(f"e{i}=http://127.0.0.1:{p}" for i, p in enumerate(peers))
        for i in range(3):
            url = f"http://127.0.0.1:{clients[i]}"
            log = open(self.dir / f"e{i}.log", "wb")  # noqa: SIM115 - closed with the process
            self.procs.append(subprocess.Popen(
                ["etcd", "--name", f"e{i}", "--data-dir", str(self.dir / f"e{i}"),
                 "--listen-client-urls", url, "--advertise-client-urls", url,
                 "--listen-peer-urls", f"http://127.0.0.1:{peers[i]}",
                 "--initial-advertise-peer-urls", f"http://127.0.0.1:{peers[i]}",
                 "--initial-cluster", cluster, "--initial-cluster-state", "new",
                 "--initial-cluster-token", token],
                stdout=log, stderr=subprocess.STDOUT))
            self.clients.append(url)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if all(httpx.get(f"{u}/health", timeout=1).json().get("health") == "true" for u in self.clients):
                    return self
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.2)
        logs = "\n".join((self.dir / f"e{i}.log").read_text(errors="replace")[-800:] for i in range(3))
        self.__exit__(None, None, None)
        raise RuntimeError(f"etcd cluster did not become healthy:\n{logs}")

    def __exit__(self, *exc: Any) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------- main


def _target_from_kubeconfig(path: str) -> _Target:
    from controlplane.kubeconfig import load_kubeconfig

    cfg = load_kubeconfig(path)
    return _Target(list(cfg.servers), cfg.token, cfg.ca_data, f"cluster from {path} ({len(cfg.servers)} API servers)")


def _prepare(target: _Target, namespace: str, reads: int) -> list[str]:
    spec = target.spec()
    import trio

    async def run() -> list[str]:
        async with _client(spec, target.servers[0]) as c:
            r = await c.post("/api/v1/namespaces", json={"metadata": {"name": namespace}})
            if r.status_code not in (201, 409):
                raise RuntimeError(f"cannot create namespace {namespace}: {r.status_code} {r.text}")
            names = [f"r-{i}" for i in range(reads)]
            for name in names:
                (await c.post(f"/api/v1/namespaces/{namespace}/configmaps",
                              json={"metadata": {"name": name}, "data": {"v": _PAYLOAD}})).raise_for_status()
            return names

    return trio.run(run)


def _cleanup(target: _Target, namespace: str) -> None:
    spec = target.spec()
    import trio

    async def run() -> None:
        async with _client(spec, target.servers[0]) as c:
            await c.delete(f"/api/v1/namespaces/{namespace}")

    try:
        trio.run(run)
    except Exception:  # noqa: BLE001 - cleanup is best effort
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.api", description=__doc__.split("\n")[0])
    parser.add_argument("--kubeconfig", help="benchmark this cluster instead of an in-process server")
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    parser.add_argument("--clients", type=int, default=4, help="client processes in the sustained phases")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight per client process")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per sustained phase")
    parser.add_argument("--objects", type=int, default=300, help="objects in the latency phase")
    parser.add_argument("--no-etcd", action="store_true", help="skip the etcd comparison")
    args = parser.parse_args(argv)

    def say(msg: str) -> None:
        if not args.json:
            print(msg, file=sys.stderr, flush=True)

    server_proc = None
    if args.kubeconfig:
        target = _target_from_kubeconfig(args.kubeconfig)
    else:
        port = _free_port()
        ctx = mp.get_context("spawn")
        ready = ctx.Event()
        server_proc = ctx.Process(target=_serve_memory, args=(port, ready), daemon=True)
        server_proc.start()
        if not ready.wait(30):
            server_proc.kill()
            raise SystemExit("the in-process API server did not start")
        target = _Target([f"http://127.0.0.1:{port}"], _ADMIN_TOKEN, None,
                         "one in-process API server on a MemoryStore (no Raft, no disk): not a 3-master cluster")
    say(f"target: {target.description}")
    namespace = f"bench-{secrets.token_hex(3)}"
    result: dict[str, Any] = {"target": target.description, "servers": target.servers,
                              "clients": args.clients, "concurrency": args.concurrency, "duration_s": args.duration}
    try:
        read_names = _prepare(target, namespace, 200)
        say("latency phase ...")
        result["latency_ms"] = _latency(target, namespace, args.objects)
        say("sustained writes ...")
        writes = _sustained(target.spec(), "write", args.clients, args.concurrency, args.duration, {"namespace": namespace})
        say("sustained reads ...")
        reads = _sustained(target.spec(), "read", args.clients, args.concurrency, args.duration,
                           {"namespace": namespace, "read_names": read_names})
        result["sustained"] = {"writes_per_s": writes["ops_per_s"], "reads_per_s": reads["ops_per_s"],
                               "writes": writes, "reads": reads}
        if not args.no_etcd and shutil.which("etcd"):
            say("etcd 3-member cluster ...")
            with _EtcdCluster() as etcd:
                lat = _etcd_latency(etcd.clients[0], args.objects)
                puts = _sustained({"servers": etcd.clients, "token": None, "ca": None}, "etcd",
                                  args.clients, args.concurrency, args.duration)
            result["etcd"] = {"members": 3, "put_latency_ms": lat, "writes_per_s": puts["ops_per_s"], "puts": puts}
            if puts["ops_per_s"]:
                result["ratio_vs_etcd"] = {
                    "writes_per_s": round(writes["ops_per_s"] / puts["ops_per_s"], 3),
                    "write_p50": round(result["latency_ms"]["create"]["p50"] / max(lat["p50"], 1e-9), 3),
                }
        elif not args.no_etcd:
            result["etcd"] = {"skipped": "etcd is not on PATH"}
        lat = result["latency_ms"]
        result["targets"] = {
            "write_p50_le_5ms": max(lat["create"]["p50"], lat["update"]["p50"]) <= 5,
            "write_p99_le_50ms": max(lat["create"]["p99"], lat["update"]["p99"]) <= 50,
            "writes_per_s_ge_2000": writes["ops_per_s"] >= 2000,
            "reads_per_s_ge_5000": reads["ops_per_s"] >= 5000,
        }
    finally:
        _cleanup(target, namespace)
        if server_proc is not None:
            server_proc.kill()
            server_proc.join(5)
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
