"""Watch fan-out benchmark: an API server's CPU per watch event delivered to a node agent.

    python -m bench.watchfan [--watchers 500] [--rate 1000] [--duration 8] [--burst 1] [--json]

What a follower master does for every pod event an agent receives: its watch cache hands the
event to that node's watch (``fieldSelector=spec.nodeName=NODE``), and the watch stream encodes
it and sends it over the agent's TLS connection. Here one API server process (the built-in
HTTP/1.1 server over TLS on loopback, a MemoryStore, the watch cache) serves ``--watchers`` TLS
watches, one per node, each with its own field selector, from client processes that only read
and count. A writer inside the server process patches one pod annotation per event at
``--rate`` events/s (``--burst`` events for the same node back to back, as a bind of several
pods to one node or an agent's status writes make them). With ``--tick S`` the writer instead
commits every S seconds one batch of rate x S updates of pods on different nodes in one store
round (update_many), as a follower applies a Raft batch: that batch's watchers wake together.
Two phases, same writes:

- ``unwatched``: the pods written are on nodes nobody watches (the write, the watch cache's
  apply and its node index, no delivery);
- ``watched``: the pods written are on the watched nodes: every write is one event delivered.

The server's CPU (getrusage: user + system, all threads) per event in each phase, and their
difference: the CPU the fan-out costs per delivered event. Also what the clients received (events,
bytes, reads), the watch delay (the writer's timestamp in the pod to the client's read) and,
with ``--strace S``, the server's system calls per event over ``S`` seconds of the watched
phase (strace -c -f slows the server: those seconds are not in the CPU figures).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._ports import free_port

# Loopback ports for the bench's server: a range of their own, away from the test suites'.
_PORTS = range(24000, 24500)
_TOKEN = "bench-watchfan-token"
# The annotation the writer stamps with time.time() at the write (the client's delay reference).
_STAMP = "bench.edgeplane.io/written"
_STAMP_NEEDLE = b'"' + _STAMP.encode() + b'":"'
# Pods per node: a few, as an agent's pods are (the writer picks one at random per event).
_PODS_PER_NODE = 3
# How long after the last write of a phase the server waits before reading its CPU: the events
# of the last writes are still being sent (a phase's CPU must include their delivery).
_DRAIN_SECONDS = 0.5


def _free_port() -> int:
    return free_port(_PORTS, tries=200)


def _pod(name: str, node: str) -> dict[str, Any]:
    # A Deployment's pod as an agent sees it (~1.5 KiB of JSON once the registry defaults it).
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default",
                     "labels": {"app": "web", "pod-template-hash": "5d9c7b8f6"},
                     "annotations": {_STAMP: "0"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d9c7b8f6",
                                          "uid": "6f1c0d2e-1b7a-4c55-9d1e-2f8a5b3c4d6e", "controller": True,
                                          "blockOwnerDeletion": True}]},
        "spec": {"nodeName": node, "containers": [{
            "name": "web", "image": "registry.local/web:1.4.2", "ports": [{"containerPort": 8080}],
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}}}]},
        "status": {"phase": "Running", "podIP": "10.244.1.7", "hostIP": "192.168.1.20",
                   "conditions": [{"type": t, "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
                                  for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")],
                   "containerStatuses": [{"name": "web", "ready": True, "restartCount": 0, "started": True,
                                          "image": "registry.local/web:1.4.2", "imageID": "",
                                          "containerID": "docker://" + "ab" * 32,
                                          "state": {"running": {"startedAt": "2026-01-01T00:00:01Z"}}}]},
    }


# ---------------------------------------------------------------- the server process


def _server_main(port: int, watchers: int, tmp: str) -> None:
    import logging

    import trio

    from controlplane._master_tls import new_ca
    from controlplane.apiserver import StaticTokenAuthenticator, User, create_app, serve_api
    from controlplane.registry import Registry
    from raftstore import MemoryStore

    logging.basicConfig(level=logging.WARNING)
    ca = new_ca()
    cert, key = ca.issue_server("127.0.0.1")
    Path(tmp, "tls.crt").write_bytes(cert)
    Path(tmp, "tls.key").write_bytes(key)
    Path(tmp, "ca.crt").write_bytes(ca.cert_pem)

    def say(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    async def main() -> None:
        store = MemoryStore()
        registry = Registry(store)
        app = create_app(registry, store=store, info={},
                         authenticator=StaticTokenAuthenticator({_TOKEN: User("admin", (), "admin")}))
        async with trio.open_nursery() as nursery:
            await nursery.start(registry.serve_watch_cache)
            await registry.ensure_namespaces()
            groups: dict[str, list[str]] = {"watched": [], "unwatched": []}
            for i in range(watchers):
                for group, node in (("watched", f"node-{i}"), ("unwatched", f"ghost-{i}")):
                    for j in range(_PODS_PER_NODE):
                        name = f"{node}-p{j}"
                        await registry.create("pods", "default", _pod(name, node))
                        groups[group].append(name)
            await nursery.start(lambda task_status: serve_api(
                app, host="127.0.0.1", port=port, ssl_certfile=str(Path(tmp, "tls.crt")),
                ssl_keyfile=str(Path(tmp, "tls.key")), task_status=task_status))
            say({"ready": True, "revision": int(store.revision), "pid": os.getpid()})
            stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
            buffer = b""
            while True:
                while b"\n" not in buffer:
                    data = await stdin.receive_some(4096)
                    if not data:
                        nursery.cancel_scope.cancel()
                        return
                    buffer += data
                line, buffer = buffer.split(b"\n", 1)
                command = json.loads(line)
                profiler = None
                if command.get("cprofile"):
                    import cProfile

                    profiler = cProfile.Profile()
                    profiler.enable()
                say(await _phase(registry, groups[command["group"]], command["rate"], command["duration"],
                                 command["burst"], command["tick"]))
                if profiler is not None:
                    profiler.disable()
                    profiler.dump_stats(command["cprofile"])

    trio.run(main)


async def _phase(registry: Any, names: list[str], rate: float, duration: float, burst: int,
                 tick: float) -> dict[str, Any]:
    """Write ``rate`` events/s for ``duration`` s (``burst`` back to back for one node's pods; or
    with ``tick``, one batch of updates every ``tick`` s), then the server's CPU over the writes
    and their delivery."""
    import trio

    rng = random.Random(7)
    nodes = len(names) // _PODS_PER_NODE
    per_round = max(1, round(rate * tick)) if tick else burst
    interval = per_round / rate
    writes = 0
    lag_max = 0.0
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = trio.current_time()
    wall0 = time.perf_counter()
    next_at = start
    while next_at < start + duration:
        if tick:
            picked = rng.sample(range(nodes), min(nodes, max(1, per_round // burst)))
            batch = [names[node * _PODS_PER_NODE + (k % _PODS_PER_NODE)] for node in picked for k in range(burst)]
            stamp = repr(time.time())
            items = []
            for name in batch:
                body = _pod(name, name.rsplit("-p", 1)[0])
                body["metadata"]["annotations"][_STAMP] = stamp
                items.append(("pods", "default", name, body))
            results = await registry.update_many(items)
            writes += sum(1 for r in results if isinstance(r, dict))
        else:
            node = rng.randrange(nodes)
            for k in range(burst):
                name = names[node * _PODS_PER_NODE + (k % _PODS_PER_NODE)]
                patch = {"metadata": {"annotations": {_STAMP: repr(time.time())}}}
                await registry.patch("pods", "default", name, "merge", patch)
                writes += 1
        next_at += interval
        now = trio.current_time()
        lag_max = max(lag_max, now - next_at)
        await trio.sleep_until(next_at) if next_at > now else await trio.lowlevel.checkpoint()
    await trio.sleep(_DRAIN_SECONDS)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {"writes": writes, "wall_s": time.perf_counter() - wall0,
            "user_s": after.ru_utime - before.ru_utime, "sys_s": after.ru_stime - before.ru_stime,
            "vol_switches": after.ru_nvcsw - before.ru_nvcsw, "invol_switches": after.ru_nivcsw - before.ru_nivcsw,
            "writer_lag_max_s": round(lag_max, 4)}


# ---------------------------------------------------------------- the client processes


def _client_main(port: int, ca_path: str, first: int, count: int, revision: int) -> None:
    import trio

    ctx = ssl.create_default_context(cafile=ca_path)
    stats = {"events": 0, "bytes": 0, "reads": 0, "connected": 0, "errors": 0}
    delays: list[float] = []

    def say(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    async def watch(node: str, connected: trio.Event) -> None:
        stream: Any = await trio.open_tcp_stream("127.0.0.1", port)
        stream = trio.SSLStream(stream, ctx, server_hostname="127.0.0.1", https_compatible=True)
        await stream.do_handshake()
        await stream.send_all(
            (f"GET /api/v1/namespaces/default/pods?watch=1&fieldSelector=spec.nodeName%3D{node}"
             f"&resourceVersion={revision}&allowWatchBookmarks=true HTTP/1.1\r\n"
             f"Host: 127.0.0.1:{port}\r\nAuthorization: Bearer {_TOKEN}\r\n\r\n").encode())
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            data = await stream.receive_some(65536)
            if not data:
                raise ConnectionError("the server closed the watch before answering")
            buffer += data
        head, buffer = buffer.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 200"):
            raise ConnectionError(head.decode(errors="replace").splitlines()[0])
        stats["connected"] += 1
        if stats["connected"] == count:
            connected.set()
        body = b""
        while True:
            # de-chunk what is there, then split the body into event lines
            while True:
                end = buffer.find(b"\r\n")
                if end < 0:
                    break
                size = int(buffer[:end], 16)
                if len(buffer) < end + 2 + size + 2:
                    break
                body += buffer[end + 2:end + 2 + size]
                buffer = buffer[end + 4 + size:]
                if size == 0:
                    return
            if b"\n" in body:
                *lines, body = body.split(b"\n")
                now = time.time()
                for line in lines:
                    stats["events"] += 1
                    at = line.find(_STAMP_NEEDLE)
                    if at >= 0:
                        stamp = line[at + len(_STAMP_NEEDLE):line.index(b'"', at + len(_STAMP_NEEDLE))]
                        if stamp != b"0":
                            delays.append(now - float(stamp))
            data = await stream.receive_some(65536)
            if not data:
                return
            stats["reads"] += 1
            stats["bytes"] += len(data)
            buffer += data

    async def main() -> None:
        connected = trio.Event()
        async with trio.open_nursery() as nursery:
            for i in range(first, first + count):
                nursery.start_soon(watch, f"node-{i}", connected)
                if i % 50 == 49:
                    await trio.sleep(0.05)  # (do not flood the listener's backlog)
            await connected.wait()
            say({"ready": True})
            stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
            buffer = b""
            while True:
                data = await stdin.receive_some(4096)
                if not data:
                    nursery.cancel_scope.cancel()
                    return
                buffer += data
                while b"\n" in buffer:
                    _line, buffer = buffer.split(b"\n", 1)
                    say({**stats, "delays": [round(d, 6) for d in delays]})
                    for k in ("events", "bytes", "reads"):
                        stats[k] = 0
                    delays.clear()

    trio.run(main)


# ---------------------------------------------------------------- the driver


class _Proc:
    def __init__(self, args: list[str], nice: int = 0) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.watchfan", *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True,
                                     preexec_fn=(lambda: os.nice(nice)) if nice else None)

    def ask(self, obj: dict[str, Any] | None = None) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if obj is not None:
            self.proc.stdin.write(json.dumps(obj) + "\n")
            self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"a bench process ended early (exit {self.proc.wait()})")
        result: dict[str, Any] = json.loads(line)
        return result

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _strace(pid: int, seconds: float) -> dict[str, Any]:
    """strace -c -f of the server for ``seconds``: {syscall: calls}."""
    if shutil.which("strace") is None:
        return {"error": "strace is not installed"}
    out = subprocess.run(["timeout", "-s", "INT", str(seconds), "strace", "-c", "-f", "-p", str(pid)],
                         capture_output=True, text=True).stderr
    calls: dict[str, int] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
            try:
                calls[parts[-1]] = int(parts[3])
            except ValueError:
                continue
    return calls


def _pyspy(pid: int, seconds: float, out: str) -> None:
    """py-spy's raw stacks of the server for ``seconds`` (sampling costs the server some CPU)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    subprocess.run([spy, "record", "-p", str(pid), "-d", str(max(1, int(seconds))), "-r", "200", "--nonblocking",
                    "-f", "raw", "-o", out], capture_output=True)


def run(watchers: int, rate: float, duration: float, burst: int, tick: float, clients: int, strace_s: float,
        say: Any, pyspy_out: str | None = None, cprofile_out: str | None = None) -> dict[str, Any]:
    tmp = tempfile.mkdtemp(prefix="watchfan-")
    procs: list[_Proc] = []
    try:
        port = _free_port()
        server = _Proc(["--_server", str(port), str(watchers), tmp])
        procs.append(server)
        hello = server.ask()
        say(f"server pid {hello['pid']} on 127.0.0.1:{port}, {watchers} nodes x {_PODS_PER_NODE} pods (+ as many unwatched)")
        per = -(-watchers // clients)
        readers = []
        for c in range(clients):
            first, count = c * per, min(per, watchers - c * per)
            if count > 0:
                readers.append(_Proc(["--_client", str(port), str(Path(tmp, "ca.crt")), str(first), str(count),
                                      str(hello["revision"])]))
        procs.extend(readers)
        for r in readers:
            r.ask()
        say(f"{watchers} TLS watches connected")
        phases: dict[str, Any] = {}
        for group in ("unwatched", "watched"):
            for r in readers:
                r.ask({})  # reset the counters
            tracer: Any = None
            traced: dict[str, Any] = {}
            if strace_s and group == "watched":
                import threading

                def trace(into: dict[str, Any] = traced) -> None:
                    into.update(_strace(hello["pid"], strace_s))

                tracer = threading.Thread(target=trace)
            elif pyspy_out and group == "watched":
                import threading

                tracer = threading.Thread(target=_pyspy, args=(hello["pid"], duration / 2, pyspy_out))
            server.proc.stdin.write(json.dumps({"group": group, "rate": rate, "duration": duration,  # type: ignore[union-attr]
                                                "burst": burst, "tick": tick,
                                                "cprofile": cprofile_out if group == "watched" else None}) + "\n")
            server.proc.stdin.flush()  # type: ignore[union-attr]
            t0 = time.monotonic()
            if tracer is not None:
                time.sleep(min(1.0, duration / 4))
                tracer.start()
            cpu = server.ask()
            got = [r.ask({}) for r in readers]
            if tracer is not None:
                tracer.join()
            events = sum(g["events"] for g in got)
            delays = [d for g in got for d in g["delays"]]
            cpu_s = cpu["user_s"] + cpu["sys_s"]
            phase = {
                "writes": cpu["writes"], "events_delivered": events,
                "server_cpu_s": round(cpu_s, 3), "server_user_s": round(cpu["user_s"], 3),
                "server_sys_s": round(cpu["sys_s"], 3),
                "cpu_us_per_write": round(cpu_s / cpu["writes"] * 1e6, 1),
                "switches_per_write": round((cpu["vol_switches"] + cpu["invol_switches"]) / cpu["writes"], 2),
                "bytes_per_event": round(sum(g["bytes"] for g in got) / events, 1) if events else 0,
                "reads_per_event": round(sum(g["reads"] for g in got) / events, 3) if events else 0,
                "delay_ms": {"p50": round(_pct(delays, 0.5) * 1000, 2), "p99": round(_pct(delays, 0.99) * 1000, 2),
                             "max": round(max(delays, default=0) * 1000, 2)},
                "writer_lag_max_s": cpu["writer_lag_max_s"], "elapsed_s": round(time.monotonic() - t0, 2),
            }
            if traced:
                phase["strace_window_s"] = strace_s
                phase["strace_calls"] = dict(sorted(traced.items(), key=lambda kv: -kv[1])[:12])
            phases[group] = phase
            say(f"{group}: {phase}")
        w, u = phases["watched"], phases["unwatched"]
        result = {
            "watchers": watchers, "rate": rate, "duration_s": duration, "burst": burst, "tick_s": tick,
            "load_1m": round(os.getloadavg()[0], 2),
            "phases": phases,
            "fanout_cpu_us_per_event": round((w["server_cpu_s"] - u["server_cpu_s"]) / max(1, w["events_delivered"]) * 1e6, 1),
            "lost_events": w["writes"] - w["events_delivered"],
        }
        return result
    finally:
        for p in reversed(procs):
            p.close()
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--_server":
        _server_main(int(argv[1]), int(argv[2]), argv[3])
        return 0
    if argv and argv[0] == "--_client":
        _client_main(int(argv[1]), argv[2], int(argv[3]), int(argv[4]), int(argv[5]))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.watchfan", description=__doc__.split("\n\n")[0])
    parser.add_argument("--watchers", type=int, default=500, help="TLS watches, one per node (default 500)")
    parser.add_argument("--rate", type=float, default=1000.0, help="events written per second (default 1000)")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per phase (default 8)")
    parser.add_argument("--burst", type=int, default=1, help="events for one node back to back (default 1)")
    parser.add_argument("--tick", type=float, default=0.0, metavar="S",
                        help="commit the events in one batch every S seconds (default 0: one by one)")
    parser.add_argument("--clients", type=int, default=2, help="client processes holding the watches (default 2)")
    parser.add_argument("--strace", type=float, default=0.0, metavar="S",
                        help="count the server's system calls for S seconds of the watched phase")
    parser.add_argument("--pyspy", metavar="FILE", help="py-spy's raw stacks of the server over half the watched phase")
    parser.add_argument("--cprofile", metavar="FILE",
                        help="cProfile the server over the watched phase (pstats file; slows it: CPU figures inflate)")
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    args = parser.parse_args(argv)
    if args.watchers < 1 or args.rate <= 0 or args.duration <= 0 or args.burst < 1 or args.clients < 1 or args.tick < 0:
        parser.error("--watchers, --rate, --duration, --burst and --clients must be positive, --tick not negative")

    def say(msg: str) -> None:
        if not args.json:
            print(msg, file=sys.stderr)

    result = run(args.watchers, args.rate, args.duration, args.burst, args.tick, args.clients, args.strace, say, args.pyspy, args.cprofile)
    if args.json:
        print(json.dumps(result))
        return 0
    print(json.dumps(result, indent=1))
    print()
    print(f"{'phase':<10} {'writes':>7} {'events':>7} {'CPU-us/write':>13} {'B/event':>8} {'reads/ev':>8} "
          f"{'delay p50/p99 ms':>17}")
    for name, p in result["phases"].items():
        print(f"{name:<10} {p['writes']:>7} {p['events_delivered']:>7} {p['cpu_us_per_write']:>13} "
              f"{p['bytes_per_event']:>8} {p['reads_per_event']:>8} {p['delay_ms']['p50']:>8}/{p['delay_ms']['p99']:<8}")
    print(f"fan-out CPU per delivered event: {result['fanout_cpu_us_per_event']} us "
          f"(load {result['load_1m']}, lost {result['lost_events']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
