"""HollowApiSession, the hollow nodes' lean HTTP transport: against a real TLS API server it does
what a node does (register, list and watch its pods, write their status) on a few kept-alive
connections; against small hand-written servers: a kept-alive connection the server closed is
retried on a new one, a dead master is left for a live one, and a master that prefers not to
serve agents (the leader) is left after its answer, as HttpApiSession does."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from typing import Any

import pytest
import trio

from controlplane.apiserver import StaticTokenAuthenticator, User, create_app, serve_api
from controlplane.registry import Registry
from edge_agent import ApiError, node_object
from edge_agent._hollow_api import HollowApiSession, tls_context
from raftstore import MemoryStore

TOKEN = "hollow-api-test-token"
# Ports inside H9N's 26000-26999 share, apart from test_hollow_runner's.
_PORTS = itertools.cycle(range(26300 + (os.getpid() % 10) * 20, 26500))


async def _listen(nursery: trio.Nursery, handler: Callable[[trio.SocketStream], Any]) -> int:
    for _ in range(20):
        port = next(_PORTS)
        try:
            listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
        except OSError:
            continue
        nursery.start_soon(trio.serve_listeners, handler, listeners)
        return port
    raise RuntimeError("no free port")


async def _read_request(stream: trio.SocketStream, buf: bytearray) -> bytes | None:
    """One request's head (its body, if any, is skipped); None when the client closed."""
    while b"\r\n\r\n" not in buf:
        data = await stream.receive_some(65536)
        if not data:
            return None
        buf += data
    end = buf.index(b"\r\n\r\n") + 4
    head = bytes(buf[:end])
    del buf[:end]
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(buf) < length:
        buf += await stream.receive_some(65536)
    del buf[:length]
    return head


def _answer(body: bytes, extra: str = "") -> bytes:
    return (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def test_hollow_session_does_a_nodes_work_over_tls(tmp_path: Any) -> None:
    from controlplane._master_tls import new_ca

    ca = new_ca()
    cert_pem, key_pem = ca.issue_server("127.0.0.1")
    for name, data in (("ca.crt", ca.cert_pem), ("tls.crt", cert_pem), ("tls.key", key_pem)):
        (tmp_path / name).write_bytes(data)
    store = MemoryStore()
    registry = Registry(store)
    await registry.ensure_namespaces()
    app = create_app(registry, store=store, info={}, authenticator=StaticTokenAuthenticator(
        {TOKEN: User("system:node:h", ("system:nodes",), "node")}))
    node = f"hapi-{os.getpid()}"
    async with trio.open_nursery() as nursery:
        port = next(_PORTS)
        await nursery.start(lambda task_status: serve_api(
            app, host="127.0.0.1", port=port, ssl_certfile=str(tmp_path / "tls.crt"),
            ssl_keyfile=str(tmp_path / "tls.key"), task_status=task_status))
        session = HollowApiSession([f"https://127.0.0.1:{port}"], TOKEN,
                                   context=tls_context(str(tmp_path / "ca.crt")))
        assert await session.get_node(node) is None  # 404 is "no such node"
        created = await session.create_node(node_object(node, "127.2.0.1"))
        assert created["metadata"]["uid"]
        with pytest.raises(ApiError) as conflict:
            await session.create_node(node_object(node, "127.2.0.1"))
        assert conflict.value.code == 409
        pods, rv = await session.list_pods(node)
        assert pods == [] and rv

        events: list[tuple[str, dict[str, Any]]] = []

        async def handle(etype: str, obj: dict[str, Any]) -> None:
            events.append((etype, obj))

        nursery.start_soon(session.watch_pods, node, rv, handle)
        await registry.create("pods", "default", {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p1"},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i:1"}]}})
        with trio.fail_after(10):
            while not events:
                await trio.sleep(0.02)
        etype, pod = events[0]
        assert etype == "ADDED" and pod["metadata"]["name"] == "p1"
        await session.patch_pod_status(pod, {"phase": "Running"}, "{}")
        assert (await registry.get("pods", "default", "p1"))["status"]["phase"] == "Running"
        with trio.fail_after(10):  # the node's own write comes back on its watch
            while not any(e == "MODIFIED" and o.get("status", {}).get("phase") == "Running"
                          for e, o in events):
                await trio.sleep(0.02)
        # Five requests one after another and a watch: one kept-alive connection for the
        # requests, one for the watch.
        assert session.requests == 5 and session.connects == 2
        await session.aclose()
        nursery.cancel_scope.cancel()


async def test_a_kept_alive_connection_closed_by_the_server_is_retried_once() -> None:
    """The server answers one request per connection and closes it without saying so (as a
    server ending an idle keep-alive does): the next request fails on the pooled connection
    before any answer and is sent again on a new one."""
    served: list[bytes] = []
    closed = trio.Event()  # set when the server has closed a connection

    async def one_per_connection(stream: trio.SocketStream) -> None:
        head = await _read_request(stream, bytearray())
        if head is not None:
            served.append(head.split(b"\r\n")[0])
            await stream.send_all(_answer(b'{"metadata": {"name": "n"}}'))
        await stream.aclose()
        closed.set()

    async with trio.open_nursery() as nursery:
        port = await _listen(nursery, one_per_connection)
        session = HollowApiSession([f"http://127.0.0.1:{port}"], TOKEN)
        assert (await session.get_node("n"))["metadata"]["name"] == "n"
        await closed.wait()  # the server has closed the kept-alive connection
        assert (await session.get_node("n"))["metadata"]["name"] == "n"
        assert served == [b"GET /api/v1/nodes/n HTTP/1.1"] * 2
        assert session.connects == 2 and session.requests == 2
        await session.aclose()
        nursery.cancel_scope.cancel()


async def test_hollow_session_leaves_a_dead_master_and_one_that_prefers_other_agents() -> None:
    counts = {"leader": 0, "follower": 0}

    def server(name: str, extra: str) -> Callable[[trio.SocketStream], Any]:
        async def serve(stream: trio.SocketStream) -> None:
            buf = bytearray()
            while await _read_request(stream, buf) is not None:
                counts[name] += 1
                await stream.send_all(_answer(f'{{"served_by": "{name}"}}'.encode(), extra))
        return serve

    async with trio.open_nursery() as nursery:
        leader = await _listen(nursery, server(
            "leader", "X-Edgeplane-Prefer-Other-Master: true\r\n"))
        follower = await _listen(nursery, server("follower", ""))
        dead = next(_PORTS)  # nothing listens there
        session = HollowApiSession([f"http://127.0.0.1:{dead}", f"http://127.0.0.1:{follower}"],
                                   TOKEN)
        session._index = 0  # start at the dead one
        assert await session.get_node("n") == {"served_by": "follower"}
        await session.aclose()
        session = HollowApiSession([f"http://127.0.0.1:{leader}",
                                    f"http://127.0.0.1:{follower}"], TOKEN)
        session._index = 0  # start at the leader
        # The leader serves the request and asks to be left: the rest go to the follower.
        assert await session.get_node("n") == {"served_by": "leader"}
        for _ in range(3):
            assert await session.get_node("n") == {"served_by": "follower"}
        assert counts == {"leader": 1, "follower": 4}
        await session.aclose()
        nursery.cancel_scope.cancel()


async def test_a_master_that_never_answers_is_left_after_the_timeout_and_its_connection_closed(
        ) -> None:
    """A request the master takes but never answers ends after the session's timeout, is
    answered by the next master, and the abandoned connection is closed (not left open)."""
    closed = trio.Event()

    async def silent(stream: trio.SocketStream) -> None:
        await _read_request(stream, bytearray())  # taken, never answered
        try:
            while await stream.receive_some(65536):
                pass
        except trio.BrokenResourceError:
            pass
        closed.set()  # the client closed its side

    async def answering(stream: trio.SocketStream) -> None:
        buf = bytearray()
        while await _read_request(stream, buf) is not None:
            await stream.send_all(_answer(b'{"served_by": "other"}'))

    async with trio.open_nursery() as nursery:
        mute = await _listen(nursery, silent)
        other = await _listen(nursery, answering)
        session = HollowApiSession([f"http://127.0.0.1:{mute}", f"http://127.0.0.1:{other}"],
                                   TOKEN, timeout=0.5)
        session._index = 0  # start at the silent one
        started = trio.current_time()
        assert await session.get_node("n") == {"served_by": "other"}
        assert 0.5 <= trio.current_time() - started < 3
        with trio.fail_after(5):
            await closed.wait()
        await session.aclose()
        nursery.cancel_scope.cancel()


async def test_a_watch_the_server_ended_leaves_its_connection_to_the_next_watch(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the API server ends a watch (its timeoutSeconds), the node's next watch goes over
    the same kept-alive TLS connection, as httpx's pool reuses a finished stream's
    connection, and still gets its events."""
    import edge_agent._api
    from controlplane._master_tls import new_ca

    monkeypatch.setattr(edge_agent._api, "WATCH_SECONDS", (1, 1))
    ca = new_ca()
    cert_pem, key_pem = ca.issue_server("127.0.0.1")
    for name, data in (("ca.crt", ca.cert_pem), ("tls.crt", cert_pem), ("tls.key", key_pem)):
        (tmp_path / name).write_bytes(data)
    store = MemoryStore()
    registry = Registry(store)
    await registry.ensure_namespaces()
    app = create_app(registry, store=store, info={}, authenticator=StaticTokenAuthenticator(
        {TOKEN: User("system:node:h", ("system:nodes",), "node")}))
    node = f"hwr-{os.getpid()}"
    events: list[tuple[str, dict[str, Any]]] = []

    async def handle(etype: str, obj: dict[str, Any]) -> None:
        events.append((etype, obj))

    async with trio.open_nursery() as nursery:
        port = next(_PORTS)
        await nursery.start(lambda task_status: serve_api(
            app, host="127.0.0.1", port=port, ssl_certfile=str(tmp_path / "tls.crt"),
            ssl_keyfile=str(tmp_path / "tls.key"), task_status=task_status))
        session = HollowApiSession([f"https://127.0.0.1:{port}"], TOKEN,
                                   context=tls_context(str(tmp_path / "ca.crt")))
        pods, rv = await session.list_pods(node)
        with trio.fail_after(10):
            await session.watch_pods(node, rv, handle)  # ended by the server after ~1 s
        assert session.connects == 2  # the request connection and the watch's

        def open_watches() -> float:
            return app.metrics.registry.get_sample_value("apiserver_registered_watchers") or 0

        async def create_soon() -> None:
            with trio.fail_after(5):  # the second watch is open (the server holds it 1 s)
                while open_watches() < 1:
                    await trio.sleep(0.01)
            await registry.create("pods", "default", {
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "w1"},
                "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i:1"}]}})

        nursery.start_soon(create_soon)
        with trio.fail_after(10):
            await session.watch_pods(node, rv, handle)
        assert session.connects == 2  # no new connection for the second watch
        assert [(e, o["metadata"]["name"]) for e, o in events if e != "BOOKMARK"] == [
            ("ADDED", "w1")]
        await session.aclose()
        nursery.cancel_scope.cancel()
