"""The replica process's loopback client port (protocol in ``raftstore._wire``).

Hot requests (put, del, get) do not get a task each: they are handed straight to the store's
group-commit queue with a callback that queues the reply, so a pipelined burst costs a few
microseconds of Python per request. Everything else, and any retry, runs as a task.

A put or del proposed alone is answered from the replica's tick thread as soon as it is
applied (``RaftStore.submit(direct=...)``), so the connection's output (``out``, ``sending``,
the socket) is shared by two threads and guarded by ``lock``.
"""

from __future__ import annotations

import functools
import hmac
import logging
import os
import threading
from typing import Any

import msgpack
import trio

from ._bridge import _SAFE_RETRY, MAX_COMMAND_BYTES, RaftStore, _unavailable
from ._commands import encode_delete, encode_put
from ._types import Compare, InvalidCommand, Op, StoreError
from ._wire import client_token, error_to_wire, kv_to_wire

__all__ = ["serve_client_port"]

logger = logging.getLogger("raftstore.client_port")

_RECV_BYTES = 256 * 1024
_packb = functools.partial(msgpack.packb, use_bin_type=True)


def _write_reply(rid: int, result: Any) -> bytes:
    """The reply to an applied put/del (its result pair, or the store's rejection)."""
    if isinstance(result, BaseException):
        return _packb([rid, 1, error_to_wire(result)])
    return _packb([rid, 0, [result[0], kv_to_wire(result[1])]])


class _Connection:
    def __init__(self, store: RaftStore, stream: trio.SocketStream, nursery: trio.Nursery):
        self.store = store
        self.stream = stream
        self.nursery = nursery
        self.token = trio.lowlevel.current_trio_token()
        self.lock = threading.Lock()
        self.out: list[bytes] = []
        self.has_output = trio.Event()
        self.sending = False
        self.closed = False

    def reply(self, rid: int, result: Any) -> None:
        if self._queue(_packb([rid, 0, result])):
            self.has_output.set()

    def reply_error(self, rid: int, exc: BaseException) -> None:
        if self._queue(_packb([rid, 1, error_to_wire(exc)])):
            self.has_output.set()

    def _queue(self, data: bytes) -> bool:
        """Write ``data`` now if nothing is queued or being sent, else queue it; True if the
        writer task must be woken (from the trio thread: ``has_output.set()``)."""
        with self.lock:
            if self.closed:
                return False
            if not self.out and not self.sending:
                # Write at once from this callback (the socket is non-blocking) instead of
                # waking the writer task, which costs a scheduler pass (~30 us) on every
                # sequential request. What does not fit goes to the writer. Under the lock:
                # the trio thread closes the socket only after setting closed.
                try:
                    sent = os.write(self.stream.socket.fileno(), data)
                except BlockingIOError:
                    sent = 0
                except OSError:
                    sent = 0  # the writer's send_all reports the broken connection
                if sent == len(data):
                    return False
                data = data[sent:]
            self.out.append(data)
            return True

    def close(self) -> None:
        with self.lock:
            self.closed = True

    def _kick(self) -> None:
        self.has_output.set()

    async def writer(self) -> None:
        while True:
            await self.has_output.wait()
            self.has_output = trio.Event()
            with self.lock:
                data = b"".join(self.out)
                self.out.clear()
                self.sending = True
            try:
                await self.stream.send_all(data)
            finally:
                with self.lock:
                    self.sending = False

    # --- hot path -------------------------------------------------------------------------------

    def write_done_direct(self, rid: int, result: Any) -> None:
        """On the tick thread: the reply to a put/del that was applied."""
        if self._queue(_write_reply(rid, result)):
            try:
                self.token.run_sync_soon(self._kick)
            except trio.RunFinishedError:
                pass

    def write_done(self, rid: int, op: str, args: list[Any], result: Any, fail: int | None):
        if fail is None:
            if self._queue(_write_reply(rid, result)):
                self.has_output.set()
        elif fail in _SAFE_RETRY:
            self.nursery.start_soon(self.slow, rid, op, args)
        else:
            self.reply_error(rid, _unavailable(fail, op))

    def read_done(self, rid: int, key: str, result: Any, fail: int | None) -> None:
        if fail is None:
            replica = self.store.replica
            with replica.state_lock:
                kv = replica.kv.get(key)
            self.reply(rid, kv_to_wire(kv))
        else:
            self.nursery.start_soon(self.slow, rid, "get", [key, True])

    def dispatch(self, rid: int, op: str, args: list[Any]) -> None:
        store = self.store
        try:
            if op == "put":
                command = encode_put(args[0], args[1])
                if len(command) > MAX_COMMAND_BYTES:
                    raise InvalidCommand(f"put: value exceeds {MAX_COMMAND_BYTES} bytes")
                store.submit(
                    command,
                    functools.partial(self.write_done, rid, op, args),
                    direct=functools.partial(self.write_done_direct, rid),
                )
                return
            if op == "del":
                command = encode_delete(args[0])
                store.submit(
                    command,
                    functools.partial(self.write_done, rid, op, args),
                    direct=functools.partial(self.write_done_direct, rid),
                )
                return
            if op == "get":
                key = args[0]
                linearizable = args[1] if len(args) > 1 else True
                replica = store.replica
                if not linearizable or replica.can_read_locally():
                    with replica.state_lock:
                        kv = replica.kv.get(key)
                    self.reply(rid, kv_to_wire(kv))
                else:
                    store.submit_read_barrier(functools.partial(self.read_done, rid, key))
                return
        except (StoreError, IndexError, TypeError) as exc:
            self.reply_error(rid, exc)
            return
        self.nursery.start_soon(self.slow, rid, op, args)

    # --- everything else ------------------------------------------------------------------------

    async def slow(self, rid: int, op: str, args: list[Any]) -> None:
        store = self.store
        try:
            if op == "put":
                rev, prev = await store.put(args[0], args[1])
                result: Any = [rev, kv_to_wire(prev)]
            elif op == "del":
                rev, prev = await store.delete(args[0])
                result = [rev, kv_to_wire(prev)]
            elif op == "get":
                result = kv_to_wire(await store.get(args[0], linearizable=bool(args[1])))
            elif op == "cas":
                key, expected, value = args
                compare = (
                    Compare.absent(key)
                    if expected == 0
                    else Compare.mod_revision(key, "==", expected)
                )
                txn = await store.txn([compare], [Op.put(key, value)], [])
                result = [txn.succeeded, txn.revision]
            elif op == "cas_value":
                key, expected, value = args
                compare = (
                    Compare.absent(key)
                    if expected is None
                    else Compare.value_is(key, "==", expected)
                )
                txn = await store.txn([compare], [Op.put(key, value)], [])
                result = [txn.succeeded, txn.revision]
            elif op == "range":
                prefix, limit, linearizable = args
                rr = await store.range(prefix, limit=limit, linearizable=linearizable)
                result = [[kv_to_wire(kv) for kv in rr.kvs], rr.more, rr.revision]
            elif op == "barrier":
                result = await store.barrier()
            elif op == "status":
                result = store.status()
            elif op == "digest":
                revision, digest = store.digest()
                result = [revision, digest, store.replica.raftLastApplied]
            elif op == "add_member":
                await store.add_member(args[0])
                result = None
            elif op == "remove_member":
                await store.remove_member(args[0])
                result = None
            elif op == "ping":
                result = "pong"
            else:
                raise StoreError(f"unknown op {op!r}")
        except (StoreError, ValueError, TypeError, IndexError) as exc:
            self.reply_error(rid, exc)
        else:
            self.reply(rid, result)


async def _handle(store: RaftStore, token: str, stream: trio.SocketStream) -> None:
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=64 * 1024 * 1024)
    conn: _Connection | None = None
    try:
        async with trio.open_nursery() as nursery:
            conn = _Connection(store, stream, nursery)
            authenticated = False
            nursery.start_soon(conn.writer)
            while True:
                data = await stream.receive_some(_RECV_BYTES)
                if not data:
                    break
                unpacker.feed(data)
                for message in unpacker:
                    if not authenticated:
                        if (
                            isinstance(message, list)
                            and len(message) == 2
                            and message[0] == "auth"
                            and isinstance(message[1], str)
                            and hmac.compare_digest(message[1], token)
                        ):
                            authenticated = True
                            continue
                        return
                    if not isinstance(message, list) or len(message) < 2:
                        return
                    conn.dispatch(message[0], message[1], message[2:])
            nursery.cancel_scope.cancel()
    except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass  # the client went away
    except* (ValueError, msgpack.UnpackException):
        logger.warning("client sent malformed data; closing the connection")
    finally:
        if conn is not None:
            conn.close()  # no more writes from the tick thread to this descriptor
        with trio.CancelScope(shield=True):
            await stream.aclose()


async def serve_client_port(
    store: RaftStore,
    port: int,
    secret: bytes,
    *,
    host: str = "127.0.0.1",
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the harness protocol on ``host:port`` (loopback) until cancelled; reports the
    bound port through ``task_status``."""
    token = client_token(secret)
    try:
        listeners = await trio.open_tcp_listeners(port, host=host)
    except OSError as exc:
        raise StoreError(f"cannot listen on client port {host}:{port}: {exc.strerror}") from None
    bound = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_expire_unanswered, store)
        task_status.started(bound)
        await trio.serve_listeners(functools.partial(_handle, store, token), listeners)


async def _expire_unanswered(store: RaftStore) -> None:
    # put/del go to the store with a callback and no task awaiting a deadline: without this
    # a write whose answer never comes (its forward lost with a connection) waits forever.
    while True:
        await trio.sleep(1.0)
        store.expire_unanswered()
