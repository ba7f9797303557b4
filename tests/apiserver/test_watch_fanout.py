"""Watch streams to node agents over TLS: the path a master's watch fan-out takes per event.

Each node agent watches its pods (``fieldSelector=spec.nodeName=NODE``) over its own TLS
connection. What an agent checks: it receives its node's events and no other node's, all of
them, in revision order, whether they come one by one or several in one commit; a stream larger
than the socket's buffers arrives intact to a client that reads slowly; and a client that stops
reading is disconnected (it would pin events in the server's memory).
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest
import trio

from controlplane.apiserver import _watch
from controlplane.registry import Registry

from .conftest import ADMIN_TOKEN, Api, start_api

PODS = "/api/v1/namespaces/default/pods"


def _pod(name: str, node: str, note: str = "") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "annotations": {"note": note}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}}


class _TLSWatch:
    """A raw HTTPS watch (as the hollow agents read theirs): the chunked body, line by line."""

    def __init__(self, stream: trio.SSLStream[Any]) -> None:
        self.stream = stream
        self.buffer = b""
        self.body = b""

    @classmethod
    async def open(cls, api: Api, query: str, *, rcvbuf: int | None = None) -> _TLSWatch:
        sock = trio.socket.socket()
        if rcvbuf is not None:  # (before connecting: the window the client offers)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        await sock.connect(("127.0.0.1", api.port))
        assert api.ca is not None
        stream = trio.SSLStream(trio.SocketStream(sock), ssl.create_default_context(cafile=str(api.ca)),
                                server_hostname="127.0.0.1", https_compatible=True)
        await stream.send_all(f"GET {PODS}?watch=1&{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                              f"Authorization: Bearer {ADMIN_TOKEN}\r\n\r\n".encode())
        watch = cls(stream)
        while b"\r\n\r\n" not in watch.buffer:
            await watch._receive()
        head, watch.buffer = watch.buffer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in head.lower()
        return watch

    async def _receive(self) -> bool:
        try:
            data = await self.stream.receive_some(65536)
        except trio.BrokenResourceError:
            data = b""  # (cut inside a TLS record: the server gave up on this client)
        self.buffer += data
        return bool(data)

    async def events(self, count: int) -> list[dict[str, Any]]:
        """The next ``count`` events (fails if the stream ends first)."""
        out: list[dict[str, Any]] = []
        while len(out) < count:
            while b"\n" in self.body and len(out) < count:
                line, self.body = self.body.split(b"\n", 1)
                out.append(json.loads(line))
            if len(out) == count:
                break
            if not self._dechunk():
                assert await self._receive(), f"the stream ended after {len(out)} of {count} events"
        return out

    def _dechunk(self) -> bool:
        end = self.buffer.find(b"\r\n")
        if end < 0:
            return False
        size = int(self.buffer[:end], 16)
        if len(self.buffer) < end + 2 + size + 2:
            return False
        assert size, "the server ended the stream"
        self.body += self.buffer[end + 2:end + 2 + size]
        self.buffer = self.buffer[end + 4 + size:]
        return True

    async def nothing_more(self, seconds: float) -> None:
        """No event arrives within ``seconds`` (an observation window: nothing may happen)."""
        with trio.move_on_after(seconds):
            await self.events(1)
            raise AssertionError("an unexpected event arrived")


async def _revision(registry: Registry) -> str:
    return str(int(registry.store.revision))


@pytest.fixture
async def tls_api(nursery: trio.Nursery, tmp_path: Path):
    server = await start_api(nursery, tls_dir=tmp_path)
    try:
        yield server
    finally:
        await server.client.aclose()
        nursery.cancel_scope.cancel()


async def test_each_node_gets_exactly_its_events_in_order(tls_api: Api) -> None:
    reg = tls_api.registry
    for node in ("n0", "n1", "n2"):
        await reg.create("pods", "default", _pod(f"{node}-a", node))
    rv = await _revision(reg)
    watches = {node: await _TLSWatch.open(tls_api, f"fieldSelector=spec.nodeName%3D{node}&resourceVersion={rv}")
               for node in ("n0", "n1", "n2")}
    with trio.fail_after(20):
        # one by one, then several of one node in one commit (a Raft batch: ready at once)
        await reg.patch("pods", "default", "n1-a", "merge", {"metadata": {"annotations": {"note": "1"}}})
        await reg.create("pods", "default", _pod("n0-b", "n0"))
        results = await reg.update_many([("pods", "default", "n1-a", _pod("n1-a", "n1", "2")),
                                         ("pods", "default", "n2-a", _pod("n2-a", "n2", "x")),
                                         ("pods", "default", "n0-a", _pod("n0-a", "n0", "y"))])
        assert all(isinstance(r, dict) for r in results)
        await reg.delete("pods", "default", "n1-a", grace_period_seconds=0)

        def seen(events: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
            return [(e["type"], e["object"]["metadata"]["name"], e["object"]["metadata"]["annotations"]["note"])
                    for e in events]

        n1 = await watches["n1"].events(3)
        assert seen(n1) == [("MODIFIED", "n1-a", "1"), ("MODIFIED", "n1-a", "2"), ("DELETED", "n1-a", "2")]
        assert seen(await watches["n0"].events(2)) == [("ADDED", "n0-b", ""), ("MODIFIED", "n0-a", "y")]
        assert seen(await watches["n2"].events(1)) == [("MODIFIED", "n2-a", "x")]
        versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in n1]
        assert versions == sorted(versions) and len(set(versions)) == 3
        for watch in watches.values():
            await watch.nothing_more(0.3)


async def test_a_burst_for_one_node_arrives_complete_and_in_order(tls_api: Api) -> None:
    reg = tls_api.registry
    rv = await _revision(reg)
    watch = await _TLSWatch.open(tls_api, f"fieldSelector=spec.nodeName%3Dn1&resourceVersion={rv}")
    other = await _TLSWatch.open(tls_api, f"fieldSelector=spec.nodeName%3Dn2&resourceVersion={rv}")
    names = [f"p{i:03d}" for i in range(300)]
    with trio.fail_after(30):
        for start in range(0, len(names), 100):  # 100 pods per commit
            results = await reg.create_many("pods", [("default", _pod(n, "n1")) for n in names[start:start + 100]])
            assert all(isinstance(r, dict) for r in results)
        events = await watch.events(len(names))
    assert [e["object"]["metadata"]["name"] for e in events] == names
    assert {e["type"] for e in events} == {"ADDED"}
    await other.nothing_more(0.3)


async def test_a_stream_larger_than_the_socket_buffers_arrives_intact(tls_api: Api) -> None:
    # ~6 MB of events to a client that offers a small window and reads slowly: the server's
    # sends cannot all go at once and must be finished in order as the client reads.
    reg = tls_api.registry
    rv = await _revision(reg)
    watch = await _TLSWatch.open(tls_api, f"fieldSelector=spec.nodeName%3Dslow&resourceVersion={rv}", rcvbuf=8192)
    big = "z" * 200_000
    with trio.fail_after(60):
        for i in range(30):
            await reg.create("pods", "default", _pod(f"big{i:02d}", "slow", f"{i}:{big}"))
        events: list[dict[str, Any]] = []
        while len(events) < 30:
            events += await watch.events(1)
            await trio.sleep(0.01)
    assert [e["object"]["metadata"]["annotations"]["note"] for e in events] == [f"{i}:{big}" for i in range(30)]


async def test_a_client_that_stops_reading_is_disconnected(tls_api: Api, monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(_watch, "_STALL_SECONDS", 1.0)
    reg = tls_api.registry
    rv = await _revision(reg)
    stuck = await _TLSWatch.open(tls_api, f"fieldSelector=spec.nodeName%3Dstuck&resourceVersion={rv}", rcvbuf=8192)
    live = await _TLSWatch.open(tls_api, f"fieldSelector=spec.nodeName%3Dlive&resourceVersion={rv}")
    big = "z" * 200_000
    with caplog.at_level(logging.INFO, logger="controlplane.apiserver"), trio.fail_after(30):
        # more than the socket buffers hold: the stuck client's stream blocks in a send
        for i in range(40):
            await reg.create("pods", "default", _pod(f"big{i:02d}", "stuck", big))
        while not any("read nothing" in r.getMessage() for r in caplog.records):
            await trio.sleep(0.05)
        # the other watch is unaffected
        await reg.create("pods", "default", _pod("fine", "live"))
        assert [e["object"]["metadata"]["name"] for e in await live.events(1)] == ["fine"]
        # the stuck client, once it reads, finds the stream cut short (no final chunk)
        received = 0
        while await stuck._receive():
            while stuck._dechunk():
                pass
            received += stuck.body.count(b"\n")
            stuck.body = stuck.body[stuck.body.rfind(b"\n") + 1:]
    assert received < 40
