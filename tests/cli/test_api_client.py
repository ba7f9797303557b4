"""ApiClient against small real HTTP servers (hypercorn on loopback): failover, errors, watch resume.

The servers here are deliberately tiny ASGI apps so each test controls exactly what a master
answers; the real API server is exercised by the cluster tests.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any

import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from controlplane.client import ApiClient, ApiError, ClusterUnreachable, Resource

PODS = Resource(group="", version="v1", plural="pods", namespaced=True, kind="Pod")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One fake master: ``handler(method, path, query) -> (status, body | list of lines)``."""

    def __init__(self, handler: Callable[[str, str, dict[str, str]], Any]) -> None:
        self.handler = handler
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.url = ""
        self.cancel = trio.CancelScope()

    async def app(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        query = dict(
            part.split("=", 1) for part in scope["query_string"].decode().split("&") if "=" in part
        )
        self.requests.append((scope["method"], scope["path"], query))
        status, body = await self.handler(scope["method"], scope["path"], query)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})
        if isinstance(body, list):  # a watch stream: one JSON event per line, then maybe hang
            for line in body:
                if line == "HANG":
                    await trio.sleep_forever()
                await send({"type": "http.response.body", "body": json.dumps(line).encode() + b"\n",
                            "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        else:
            await send({"type": "http.response.body", "body": json.dumps(body).encode()})


async def start(nursery: trio.Nursery, server: Server) -> Server:
    port = _free_port()
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.errorlog = None

    async def run(task_status=trio.TASK_STATUS_IGNORED) -> None:
        with server.cancel:
            await serve(server.app, config, task_status=task_status)

    await nursery.start(run)
    server.url = f"http://127.0.0.1:{port}"
    return server


def pod(name: str, rv: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "resourceVersion": rv}}


async def test_fails_over_past_refused_and_503_masters(nursery: trio.Nursery) -> None:
    async def unavailable(method, path, query):
        return 503, {"kind": "Status", "code": 503, "reason": "ServiceUnavailable",
                     "message": "no Raft leader"}

    async def ok(method, path, query):
        return 200, pod("web", "7")

    dead = f"http://127.0.0.1:{_free_port()}"
    sick = await start(nursery, Server(unavailable))
    good = await start(nursery, Server(ok))
    async with ApiClient.for_servers([dead, sick.url, good.url], token="t") as client:
        got = await client.get(PODS, "web", namespace="default")
        assert got["metadata"]["name"] == "web"
        assert client.current_server == good.url
        # Sticky: the next request goes straight to the master that answered.
        before = len(sick.requests)
        await client.get(PODS, "web")
        assert len(sick.requests) == before
    assert good.requests[0][1] == "/api/v1/namespaces/default/pods/web"


async def test_unreachable_lists_every_master_tried() -> None:
    servers = [f"http://127.0.0.1:{_free_port()}" for _ in range(3)]
    async with ApiClient.for_servers(servers, retry_timeout=0.3) as client:
        with pytest.raises(ClusterUnreachable) as info:
            await client.list(PODS)
    message = str(info.value)
    for server in servers:
        assert f"{server}: connection refused" in message
    assert not info.value.maybe_committed


async def test_client_errors_are_not_retried_and_carry_the_status(nursery: trio.Nursery) -> None:
    calls = []

    async def invalid(method, path, query):
        calls.append(path)
        return 422, {"kind": "Status", "code": 422, "reason": "Invalid",
                     "message": 'Pod "x" is invalid: metadata.name: Invalid value',
                     "details": {"causes": [{"field": "metadata.name", "reason": "FieldValueInvalid",
                                             "message": "Invalid value"}]}}

    first = await start(nursery, Server(invalid))
    second = await start(nursery, Server(invalid))
    async with ApiClient.for_servers([first.url, second.url]) as client:
        with pytest.raises(ApiError) as info:
            await client.create(PODS, pod("x", ""))
    assert info.value.code == 422
    assert info.value.causes[0]["field"] == "metadata.name"
    assert len(calls) == 1


async def test_watch_resumes_on_another_master_from_the_last_revision(nursery: trio.Nursery) -> None:
    async def first(method, path, query):
        return 200, [{"type": "ADDED", "object": pod("a", "5")},
                     {"type": "MODIFIED", "object": pod("a", "6")}]

    async def second(method, path, query):
        return 200, [{"type": "DELETED", "object": pod("a", "9")}, "HANG"]

    a = await start(nursery, Server(first))
    b = await start(nursery, Server(second))
    seen = []
    async with ApiClient.for_servers([a.url, b.url]) as client:
        events = client.watch(PODS, namespace="default", resource_version="4")
        async for event in events:
            seen.append((event["type"], event["object"]["metadata"]["resourceVersion"]))
            if len(seen) == 2:
                a.cancel.cancel()  # master a dies after its stream ended
            if len(seen) == 3:
                break
        await events.aclose()
    assert seen == [("ADDED", "5"), ("MODIFIED", "6"), ("DELETED", "9")]
    assert b.requests[0][2]["resourceVersion"] == "6"


async def test_watch_relists_when_the_revision_is_compacted(nursery: trio.Nursery) -> None:
    async def handler(method, path, query):
        if query.get("watch") != "true":
            return 200, {"kind": "PodList", "metadata": {"resourceVersion": "40"},
                         "items": [pod("b", "39")]}
        if query["resourceVersion"] == "3":
            return 200, [{"type": "ERROR", "object": {"kind": "Status", "code": 410,
                                                      "reason": "Expired", "message": "too old"}}]
        return 200, [{"type": "ADDED", "object": pod("c", "41")}, "HANG"]

    server = await start(nursery, Server(handler))
    seen = []
    async with ApiClient.for_servers([server.url]) as client:
        events = client.watch(PODS, resource_version="3")
        async for event in events:
            seen.append(event["type"])
            if len(seen) == 2:
                break
        await events.aclose()
    assert seen == ["RELISTED", "ADDED"]
    assert server.requests[-1][2]["resourceVersion"] == "40"


async def test_a_write_cut_off_mid_request_is_reported_as_maybe_applied(nursery: trio.Nursery) -> None:
    """A master that reads the request and dies before answering: the POST may have been
    applied, so it is not silently repeated elsewhere; a GET simply goes to the next master."""
    port = _free_port()

    async def hang_up(stream: trio.SocketStream) -> None:
        await stream.receive_some(65536)  # the request arrives...
        await stream.aclose()  # ...and no answer ever leaves

    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    nursery.start_soon(trio.serve_listeners, hang_up, listeners)

    async def ok(method, path, query):
        return 200, pod("web", "3")

    good = await start(nursery, Server(ok))
    async with ApiClient.for_servers([f"http://127.0.0.1:{port}", good.url]) as client:
        with pytest.raises(ClusterUnreachable) as info:
            await client.create(PODS, pod("web", ""))
        assert info.value.maybe_committed
        assert "may or may not have been applied" in str(info.value)
        assert good.requests == []
        got = await client.get(PODS, "web")
        assert got["metadata"]["name"] == "web"
