"""watch_cluster against a small real HTTP master (hypercorn on loopback), then traffic.

The master here is a tiny ASGI app serving the Kubernetes list/watch layout for Services and
Endpoints, so the test controls what the control plane says and when it dies; the real API
server is exercised by the cluster tests.
"""

from __future__ import annotations

import json
from functools import partial

import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from controlplane.client import ApiClient
from netproxy import ProxyState, serve_proxy
from netproxy._userspace import REFUSED_MEMORY_S
from netproxy._watch import _load_cache, watch_cluster
from netproxy.testing import endpoints_object, http_get, service_object

VIP = "127.10.2.1"
MASTER = ("127.0.0.1", 24900)


def with_rv(obj: dict, rv: str) -> dict:
    obj["metadata"]["resourceVersion"] = rv
    return obj


class FakeMaster:
    """Lists at revision 10; each watch then sends its queued events and stays open."""

    def __init__(self, services: list[dict], endpoints: list[dict]) -> None:
        self.lists = {"services": services, "endpoints": endpoints}
        self.watch_events: dict[str, list[dict]] = {"services": [], "endpoints": []}
        self.watch_requests: list[tuple[str, str]] = []

    async def app(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        plural = scope["path"].rsplit("/", 1)[-1]
        query = dict(p.split("=", 1) for p in scope["query_string"].decode().split("&") if "=" in p)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        if query.get("watch") != "true":
            body = {"kind": "List", "metadata": {"resourceVersion": "10"},
                    "items": self.lists[plural]}
            await send({"type": "http.response.body", "body": json.dumps(body).encode()})
            return
        self.watch_requests.append((plural, query.get("resourceVersion", "")))
        for event in self.watch_events[plural]:
            await send({"type": "http.response.body", "body": json.dumps(event).encode() + b"\n",
                        "more_body": True})
        self.watch_events[plural] = []
        await trio.sleep_forever()



async def _answering(ip: str, port: int, expected: set, *, timeout: float = 10.0) -> set:
    """Backends that answered until all of ``expected`` did (bounded in time).

    Round-robin normally needs two requests; on a loaded machine an endpoint slow to accept is
    tried last for REFUSED_MEMORY_S (userspace mode's refused-endpoint memory), during which
    every request goes to the others: keep asking, paced, for longer than that memory (a bound
    of 40 quick requests ran out inside it in CI).
    """
    assert timeout > REFUSED_MEMORY_S
    seen: set = set()
    with trio.move_on_after(timeout):
        while True:
            seen.add(await http_get(ip, port))
            if seen >= expected:
                break
            await trio.sleep(0.05)  # a poll inside the deadline above
    return seen


async def test_proxier_follows_the_cluster_and_outlives_it(http_backend) -> None:
    b1, b2 = http_backend("127.0.1.1", 24911), http_backend("127.0.1.2", 24912)
    master = FakeMaster(
        [with_rv(service_object("web", VIP, [("http", 24913, "TCP")]), "5")],
        [with_rv(endpoints_object("web", [(b1.ip, b1.port)], port_name="http"), "6")],
    )
    # The endpoints controller adds the second pod after the list.
    master.watch_events["endpoints"].append({"type": "MODIFIED", "object": with_rv(
        endpoints_object("web", [(b1.ip, b1.port), (b2.ip, b2.port)], port_name="http"), "11")})
    config = Config()
    config.bind = [f"{MASTER[0]}:{MASTER[1]}"]
    config.accesslog = config.errorlog = None
    async with trio.open_nursery() as nursery:
        master_scope = trio.CancelScope()

        async def run_master(task_status=trio.TASK_STATUS_IGNORED) -> None:
            with master_scope:
                await serve(master.app, config, task_status=task_status)

        await nursery.start(run_master)
        async with ApiClient.for_servers([f"http://{MASTER[0]}:{MASTER[1]}"]) as client:
            state = ProxyState()
            await nursery.start(watch_cluster, client, state)
            handle = await nursery.start(partial(serve_proxy, state, mode="userspace"))
            with trio.fail_after(5):
                while len(handle.entries) != 1 or len(handle.entries[0].backends) != 2:
                    await trio.sleep(0.01)
            assert await _answering(VIP, 24913, {b1.identity, b2.identity}) == {b1.identity, b2.identity}
            assert ("endpoints", "10") in master.watch_requests  # watched from the list's revision
            # Every master goes away: the data plane keeps serving with its last rules.
            master_scope.cancel()
            with trio.move_on_after(1.0):
                while True:
                    assert await http_get(VIP, 24913) in {b1.identity, b2.identity}
            assert await _answering(VIP, 24913, {b1.identity, b2.identity}) == {b1.identity, b2.identity}
            nursery.cancel_scope.cancel()


def test_standalone_entry_rejects_bad_input_with_a_message(capsys, tmp_path) -> None:
    from netproxy.__main__ import main

    assert main(["--mode", "userspace", "--node-address", "node-1"]) == 2
    assert "--node-address 'node-1' is not an IPv4 address" in capsys.readouterr().err
    assert main(["--mode", "userspace", "--kubeconfig", str(tmp_path / "missing")]) == 2
    assert "no kubeconfig at" in capsys.readouterr().err
    assert main(["--mode", "userspace", "--token", "t"]) == 2
    assert "--token needs --server" in capsys.readouterr().err


async def test_standalone_proxier_serves_the_cluster_and_cleans_up_on_sigterm(http_backend) -> None:
    import signal
    import sys

    backend = http_backend("127.0.1.1", 24921)
    master = FakeMaster(
        [with_rv(service_object("web", "127.10.2.2", [("http", 24922, "TCP", 24923)],
                                type="NodePort"), "5")],
        [with_rv(endpoints_object("web", [(backend.ip, backend.port)], port_name="http"), "6")],
    )
    config = Config()
    config.bind = ["127.0.0.1:24901"]
    config.accesslog = config.errorlog = None
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(serve, master.app, config))
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "netproxy", "--server", "http://127.0.0.1:24901",
             "--mode", "userspace", "--node-address", "127.0.1.31"])
        try:
            with trio.fail_after(10):
                while True:
                    try:
                        assert await http_get("127.10.2.2", 24922) == backend.identity
                        break
                    except OSError:
                        await trio.sleep(0.05)
            assert await http_get("127.0.1.31", 24923) == backend.identity
            proc.send_signal(signal.SIGTERM)
            with trio.fail_after(5):
                assert await proc.wait() == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        with pytest.raises(OSError):
            await http_get("127.10.2.2", 24922)
        nursery.cancel_scope.cancel()


def cached_everything(path) -> bool:
    try:
        snapshot = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return bool(snapshot["services"]) and bool(snapshot["endpoints"])


async def test_restart_with_every_master_down_serves_from_the_cache(http_backend, tmp_path) -> None:
    backend = http_backend("127.0.1.1", 24931)
    cache = str(tmp_path / "proxy-cache.json")
    master = FakeMaster(
        [with_rv(service_object("web", "127.10.2.3", [("http", 24932, "TCP")]), "5")],
        [with_rv(endpoints_object("web", [(backend.ip, backend.port)], port_name="http"), "6")],
    )
    config = Config()
    config.bind = ["127.0.0.1:24902"]
    config.accesslog = config.errorlog = None
    # First life: the master answers; the cache gets written.
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(serve, master.app, config))
        async with ApiClient.for_servers(["http://127.0.0.1:24902"]) as client:
            state = ProxyState()
            await nursery.start(partial(watch_cluster, client, state, cache_path=cache))
            with trio.fail_after(5):
                while not cached_everything(tmp_path / "proxy-cache.json"):
                    await trio.sleep(0.02)
            nursery.cancel_scope.cancel()
    # Second life: nothing answers on the master's address any more.
    async with trio.open_nursery() as nursery:
        async with ApiClient.for_servers(["http://127.0.0.1:24902"]) as client:
            state = ProxyState()
            with trio.fail_after(2):
                await nursery.start(partial(watch_cluster, client, state, cache_path=cache))
                await nursery.start(partial(serve_proxy, state, mode="userspace"))
            assert await http_get("127.10.2.3", 24932) == backend.identity
            nursery.cancel_scope.cancel()


async def test_a_corrupt_cache_is_ignored(tmp_path) -> None:
    (tmp_path / "c.json").write_text("{not json")
    state = ProxyState()
    assert _load_cache(str(tmp_path / "c.json"), state) is False
    assert state.services == [] and state.version == 0
