"""A tiny msgpack-over-TCP protocol to drive a standalone replica (``python -m raftstore``).

Used by multi-process tests, the demo and the benchmark; the product embeds RaftStore
in-process instead. Loopback only. The stream is a sequence of msgpack arrays:

    client -> replica   ["auth", token]                 first, token = client_token(secret)
                        [request_id, op, arg, ...]      pipelined, any number outstanding
    replica -> client   [request_id, 0, result]         success
                        [request_id, 1, [kind, message, maybe_committed]]

Ops: put(key, value) -> [revision, prev]; get(key, linearizable) -> kv | None;
del(key) -> [revision, prev]; cas(key, expected_mod_revision, value) -> [succeeded, revision]
(expected 0 = "key absent"); cas_value(key, expected_value | None, value) -> [succeeded,
revision] (None = "key absent"); range(prefix, limit, linearizable) -> [kvs, more, revision];
barrier() -> revision; status() -> dict; digest() -> [revision, digest, applied_index];
add_member(address) / remove_member(address) -> None.
A kv is [key, value, create_revision, mod_revision, version].
"""

from __future__ import annotations

import hashlib
import itertools
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import msgpack
import trio

from ._types import Compacted, InvalidCommand, KeyValue, StoreError, StoreUnavailable

__all__ = [
    "ReplicaClient",
    "client_token",
    "kv_from_wire",
    "kv_to_wire",
    "open_replica_client",
]

# Reads are sized for pipelined bursts of small requests.
_RECV_BYTES = 256 * 1024


def client_token(secret: bytes) -> str:
    """The harness client's credential: derived from, but not equal to, the cluster secret."""
    return hashlib.sha256(b"raftstore-client\0" + secret).hexdigest()


def kv_to_wire(kv: KeyValue | None) -> list[Any] | None:
    if kv is None:
        return None
    return [kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version]


def kv_from_wire(data: Sequence[Any] | None) -> KeyValue | None:
    if data is None:
        return None
    return KeyValue(data[0], data[1], data[2], data[3], data[4])


def error_to_wire(exc: BaseException) -> list[Any]:
    if isinstance(exc, StoreUnavailable):
        return ["unavailable", str(exc), exc.maybe_committed]
    if isinstance(exc, Compacted):
        return ["compacted", str(exc), False]
    if isinstance(exc, InvalidCommand):
        return ["invalid", str(exc), False]
    return ["error", f"{type(exc).__name__}: {exc}", False]


def error_from_wire(data: Sequence[Any]) -> StoreError:
    kind, message, maybe = data
    if kind == "unavailable":
        return StoreUnavailable(message, maybe_committed=bool(maybe))
    if kind == "invalid":
        return InvalidCommand(message)
    return StoreError(message)


class ReplicaClient:
    """Pipelined client of one replica process. Use :func:`open_replica_client`."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        self._ids = itertools.count(1)
        self._waiting: dict[int, Callable[[int, Any], None]] = {}
        self._closed: BaseException | None = None
        self._send_lock = trio.Lock()

    async def _reader(self) -> None:
        unpacker = msgpack.Unpacker(raw=False)
        try:
            while True:
                data = await self._stream.receive_some(_RECV_BYTES)
                if not data:
                    break
                unpacker.feed(data)
                for rid, status, payload in unpacker:
                    callback = self._waiting.pop(rid, None)
                    if callback is not None:
                        callback(status, payload)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        self._closed = StoreUnavailable("connection to the replica lost", maybe_committed=True)
        waiting, self._waiting = self._waiting, {}
        for callback in waiting.values():
            callback(-1, None)

    async def _send(self, data: bytes) -> None:
        async with self._send_lock:
            await self._stream.send_all(data)

    def _send_now(self, data: bytes) -> bytes:
        """Write what the socket takes right away unless a send is under way (which must keep
        the order); return what is left for :meth:`_send`. Sequential calls skip the lock's and
        send_all's scheduler passes (~2 x 10-20 us here) before the request even leaves."""
        if self._send_lock.locked():
            return data
        try:
            sent = os.write(self._stream.socket.fileno(), data)
        except BlockingIOError:
            return data
        return data[sent:]

    async def call(self, op: str, *args: Any, timeout: float = 15.0) -> Any:
        """One request; raises the replica's error, or StoreUnavailable(maybe_committed=True)
        if the connection dies or ``timeout`` passes first."""
        if self._closed is not None:
            raise StoreUnavailable(str(self._closed), maybe_committed=True)
        rid = next(self._ids)
        done = trio.Event()
        box: list[Any] = []

        def callback(status: int, payload: Any) -> None:
            box.append((status, payload))
            done.set()

        self._waiting[rid] = callback
        try:
            rest = self._send_now(msgpack.packb([rid, op, *args], use_bin_type=True))
            if rest:
                await self._send(rest)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._waiting.pop(rid, None)
            raise StoreUnavailable(f"send failed: {exc}", maybe_committed=True) from None
        with trio.move_on_after(timeout):
            await done.wait()
        if not box:
            self._waiting.pop(rid, None)
            raise StoreUnavailable(f"{op}: no answer within {timeout} s", maybe_committed=True)
        status, payload = box[0]
        if status == 0:
            return payload
        if status == -1:
            raise StoreUnavailable("connection to the replica lost", maybe_committed=True)
        raise error_from_wire(payload)

    async def pipeline(
        self, requests: Sequence[Sequence[Any]], *, window: int = 512, timeout: float = 60.0
    ) -> list[tuple[float, float, int, Any]]:
        """Send ``[op, arg...]`` requests keeping up to ``window`` outstanding; return
        (sent_at, answered_at, status, payload) per request (status -1: no answer)."""
        results: list[Any] = [None] * len(requests)
        sent_at = [0.0] * len(requests)
        outstanding = 0
        slot_free = trio.Event()
        finished = trio.Event()
        remaining = len(requests)

        def make_callback(i: int) -> Callable[[int, Any], None]:
            def callback(status: int, payload: Any) -> None:
                nonlocal outstanding, remaining, slot_free
                results[i] = (sent_at[i], time.perf_counter(), status, payload)
                outstanding -= 1
                remaining -= 1
                slot_free.set()
                if remaining == 0:
                    finished.set()

            return callback

        packb = msgpack.packb
        with trio.move_on_after(timeout):
            i = 0
            while i < len(requests):
                if self._closed is not None:
                    break
                chunk = []
                while i < len(requests) and outstanding < window:
                    rid = next(self._ids)
                    self._waiting[rid] = make_callback(i)
                    sent_at[i] = time.perf_counter()
                    chunk.append(packb([rid, *requests[i]], use_bin_type=True))
                    outstanding += 1
                    i += 1
                if chunk:
                    await self._send(b"".join(chunk))
                if outstanding >= window:
                    slot_free = trio.Event()
                    await slot_free.wait()
            if remaining:
                await finished.wait()
        return [r if r is not None else (sent_at[k], 0.0, -1, None) for k, r in enumerate(results)]

    async def aclose(self) -> None:
        await self._stream.aclose()


@asynccontextmanager
async def open_replica_client(
    host: str, port: int, secret: bytes, *, connect_timeout: float = 5.0
) -> AsyncIterator[ReplicaClient]:
    with trio.fail_after(connect_timeout):
        stream = await trio.open_tcp_stream(host, port)
    client = ReplicaClient(stream)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client._reader)
            try:
                await client._send(msgpack.packb(["auth", client_token(secret)], use_bin_type=True))
                await client.call("ping", timeout=connect_timeout)
                yield client
            finally:
                nursery.cancel_scope.cancel()
                with trio.CancelScope(shield=True):
                    await client.aclose()
    except BaseExceptionGroup as group:
        # The reader never raises: a lone error comes from the caller's block; re-raise it bare.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
