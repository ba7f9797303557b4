"""A lean HTTP transport for hollow nodes: `HollowApiSession` is an `HttpApiSession` (every
request the agent makes, its paths, bodies, failover and watch handling are inherited) whose
transport is TLS on non-blocking sockets under trio's I/O waits and a small HTTP/1.1 client
instead of httpx.

Why: a runner of a few hundred hollow nodes spent most of its CPU inside httpx and httpcore
(request and response models, header objects, cookie extraction, the pool's bookkeeping, a
dozen awaits per request): 0.6 ms of client CPU per request over TLS to a master, 0.11 ms with
this transport (50 nodes' sessions, a Lease update and a Node read each, this machine). With
1,000 hollow nodes on the masters' machine every one of those milliseconds is taken from the
masters being measured. Real agents keep `HttpApiSession` (httpx: proxies, HTTP/2 and every
corner of HTTP are its job); this transport knows just enough HTTP/1.1 to talk to our API
servers, and each node still holds its own connections, its own watch and its own writes.
"""

from __future__ import annotations

import os
import socket
import ssl
import time
from collections.abc import Mapping
from typing import Any, cast
from urllib.parse import urlencode, urlsplit

import httpx
import orjson
import trio

from ._api import (
    _RETRY_ELSEWHERE,
    REQUEST_TIMEOUT,
    ApiUnavailable,
    HttpApiSession,
    WatchHandler,
    _status_error,
    tls_verify,
    watch_event,
)

# Connections a node uses for its requests (its watch holds one more of its own); requests
# beyond that wait for one. A kubelet multiplexes everything over one HTTP/2 connection; a
# connection per request in flight made the agent's 4 status writes in flight
# (STATUS_WRITE_CONCURRENCY) open 4 TLS connections per node (a handshake each, on the masters
# too, and their buffers here) to carry a few dozen requests.
REQUEST_CONNECTIONS = 1
# How long an idle connection is reused: below the masters' 75 s keep-alive, so a request
# rarely meets a connection the server is closing (and one that does is retried once).
IDLE_EXPIRY = 60.0
# Bytes asked of the TLS stream per read: a watch event or an answer is a few KB.
READ_SIZE = 65536
# Longest status line plus headers accepted: our servers send a few hundred bytes.
MAX_HEAD = 65536
# Distinct parts a SharedParts table holds before it starts over: far more than the pod
# templates of a benchmark have (a part is a template's containers, labels, owner...), and
# a bound on what a long-running runner keeps.
SHARED_PARTS_MAX = 20_000


class _TransportError(httpx.TransportError):
    """The connection failed (refused, reset, closed, timed out, not HTTP): try another
    master."""


class _Response:
    """Status line and framing of an answer (its body is read separately)."""

    __slots__ = ("status", "headers", "length", "chunked", "keep_alive")

    def __init__(self, status: int, headers: dict[str, str], length: int | None,
                 chunked: bool, keep_alive: bool) -> None:
        self.status, self.headers, self.length = status, headers, length
        self.chunked, self.keep_alive = chunked, keep_alive


class _Connection:
    """One HTTP/1.1 connection (TLS unless the server URL is http://). Requests are written
    whole; answers are parsed from one receive buffer (a read offset instead of cutting the
    buffer at each line: a watch stream's read brings many chunks at once).

    TLS is an `ssl.SSLObject` over memory buffers on a non-blocking socket, driven here rather
    than by trio's SSLStream and SocketStream: a connection is only ever used by one task at a
    time (a request and its answer, or a watch), so their locks, conflict detectors and the
    scheduler round trip every socket call makes (a checkpoint before and after) were pure cost
    (one runner of 100 nodes given 3,000 pods, all else equal: 0.91-0.96 -> 0.77-0.80 CPU-s per
    1,000 pods with this and the request path's other savings below). A socket call that can
    proceed does so at once; one that cannot waits for the socket in trio's I/O manager (a
    checkpoint, so timeouts still cancel it). The bytes on the wire are the same: the same
    TLS context and handshake, no close_notify on close (as trio's aclose_forcefully)."""

    def __init__(self, sock: socket.socket, tls: ssl.SSLObject | None = None,
                 incoming: ssl.MemoryBIO | None = None,
                 outgoing: ssl.MemoryBIO | None = None) -> None:
        self.sock = sock
        self.tls, self.incoming, self.outgoing = tls, incoming, outgoing
        self.buf = bytearray()
        self.pos = 0
        self.idle_since = time.monotonic()
        # Set once a request is sent: its answer cannot have come yet, so the next receive
        # waits for the socket first instead of trying a read that fails.
        self.answer_pending = False

    @classmethod
    async def open(cls, host: str, port: int, context: ssl.SSLContext | None) -> _Connection:
        sock = await _connect_tcp(host, port)
        if context is None:
            return cls(sock)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = context.wrap_bio(incoming, outgoing, server_side=False, server_hostname=host)
        conn = cls(sock, tls, incoming, outgoing)
        try:
            await conn._handshake()
        except BaseException:
            conn.close()
            raise
        return conn

    async def _handshake(self) -> None:
        assert self.tls is not None and self.incoming is not None
        while True:
            try:
                self.tls.do_handshake()
            except ssl.SSLWantReadError:
                await self._flush()
                raw = await self._recv_raw()
                if not raw:
                    raise _TransportError("TLS handshake: the server closed the connection") \
                        from None
                self.incoming.write(raw)
                continue
            except (ssl.SSLError, ssl.CertificateError) as exc:
                raise _TransportError(f"TLS handshake: {exc}") from exc
            await self._flush()
            return

    async def _flush(self) -> None:
        """Send what TLS has written (records, handshake messages)."""
        if self.outgoing is not None and self.outgoing.pending:
            await self._send_raw(self.outgoing.read())

    async def _send_raw(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                sent = self.sock.send(view)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(self.sock)
                continue
            except OSError as exc:
                raise _TransportError(f"send: {exc}") from exc
            view = view[sent:]

    async def _recv_raw(self) -> bytes:
        if self.answer_pending:
            self.answer_pending = False
            await trio.lowlevel.wait_readable(self.sock)
        while True:
            try:
                return self.sock.recv(READ_SIZE)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self.sock)
            except OSError as exc:
                raise _TransportError(f"receive: {exc}") from exc

    async def send(self, data: bytes) -> None:
        if self.tls is None:
            await self._send_raw(data)
        else:
            try:
                self.tls.write(data)  # into the memory buffer: never waits
            except ssl.SSLError as exc:
                raise _TransportError(f"TLS: {exc}") from exc
            await self._flush()
        self.answer_pending = True

    async def _receive(self) -> bytes:
        """Bytes the server sent (decrypted), waiting for some; b"" when it closed."""
        if self.tls is None:
            return await self._recv_raw()
        assert self.incoming is not None
        while True:
            # Read only once something received is left to decrypt: a read of nothing fails
            # with SSLWantReadError, which was an exception per watch event and per answer.
            if self.incoming.pending or self.tls.pending():
                try:
                    return self.tls.read(READ_SIZE)
                except ssl.SSLWantReadError:
                    pass  # part of a record, or a post-handshake message and no data
                except ssl.SSLZeroReturnError:
                    return b""
                except ssl.SSLError as exc:
                    raise _TransportError(f"TLS: {exc}") from exc
            await self._flush()  # a post-handshake message may want an answer
            raw = await self._recv_raw()
            if not raw:
                return b""  # closed without close_notify: framing tells what is missing
            self.incoming.write(raw)

    async def _fill(self) -> None:
        if self.pos and self.pos == len(self.buf):
            self.buf.clear()
            self.pos = 0
        elif self.pos > READ_SIZE:  # keep the unread tail only
            del self.buf[:self.pos]
            self.pos = 0
        chunk = await self._receive()
        if not chunk:
            raise _TransportError("the server closed the connection")
        self.buf += chunk

    async def _until(self, marker: bytes) -> int:
        """Index of `marker` at or after the read offset, reading until it arrives."""
        while (end := self.buf.find(marker, self.pos)) < 0:
            if len(self.buf) - self.pos > MAX_HEAD:
                raise _TransportError("an over-long line from the server")
            await self._fill()
        return end

    async def _take(self, n: int) -> bytes:
        while len(self.buf) - self.pos < n:
            await self._fill()
        data = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return data

    async def response(self) -> _Response:
        """Read the status line and headers of the next answer."""
        end = await self._until(b"\r\n\r\n")
        head = bytes(self.buf[self.pos:end]).split(b"\r\n")
        self.pos = end + 4
        try:
            version, code = head[0].split(b" ", 2)[:2]
            status = int(code)
        except ValueError:
            raise _TransportError(f"not an HTTP status line: {head[0][:80]!r}") from None
        if not version.startswith(b"HTTP/1."):
            raise _TransportError(f"not HTTP/1.x: {head[0][:80]!r}")
        headers: dict[str, str] = {}
        for line in head[1:]:
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        try:
            length = int(headers["content-length"]) if "content-length" in headers else None
        except ValueError:
            raise _TransportError("a bad Content-Length") from None
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        keep_alive = ("close" not in headers.get("connection", "").lower()
                      and version == b"HTTP/1.1")
        if 100 <= status < 200:  # an interim answer (we never ask for one): the next
            return await self.response()
        if status in (204, 304):
            length = 0
        if not chunked and length is None:  # the body ends when the connection does
            raise _TransportError("an answer without framing (no length, not chunked)")
        return _Response(status, headers, length, chunked, keep_alive)

    async def chunk(self) -> bytes:
        """The next chunk of a chunked body; b"" at its end (trailers skipped)."""
        end = await self._until(b"\r\n")
        try:
            size = int(bytes(self.buf[self.pos:end]).split(b";", 1)[0], 16)
        except ValueError:
            raise _TransportError("a bad chunk size") from None
        self.pos = end + 2
        if size == 0:
            while (end := await self._until(b"\r\n")) != self.pos:  # trailer lines
                self.pos = end + 2
            self.pos += 2
            return b""
        data = await self._take(size + 2)
        if data[-2:] != b"\r\n":
            raise _TransportError("a chunk not ended by CRLF")
        return data[:-2]

    async def body(self, resp: _Response) -> bytes:
        if not resp.chunked:
            return await self._take(resp.length or 0)
        parts = []
        while part := await self.chunk():
            parts.append(part)
        return b"".join(parts)

    def reusable(self, resp: _Response) -> bool:
        """Whether the connection can carry another request now (the answer was read)."""
        if resp.keep_alive and self.pos == len(self.buf):
            self.idle_since = time.monotonic()
            return True
        return False

    def close(self) -> None:
        trio.lowlevel.notify_closing(self.sock)
        self.sock.close()

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()


async def _connect_tcp(host: str, port: int) -> socket.socket:
    """A connected non-blocking TCP socket (Nagle off: requests are written whole)."""
    try:
        infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise _TransportError(f"connect: {exc}") from exc
    last: OSError | None = None
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                sock.connect(address)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(sock)
                error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if error:
                    raise OSError(error, os.strerror(error)) from None
            return sock
        except OSError as exc:
            last = exc
            trio.lowlevel.notify_closing(sock)
            sock.close()
        except BaseException:
            trio.lowlevel.notify_closing(sock)
            sock.close()
            raise
    raise _TransportError(f"connect: {last or 'no address'}")


def tls_context(verify: bool | str) -> ssl.SSLContext:
    """The TLS context for `verify` as the agent takes it: a CA bundle path, True (the
    system's CAs) or False (no verification: tests only)."""
    context = tls_verify(verify)
    if isinstance(context, ssl.SSLContext):
        return context
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class SharedParts:
    """One copy, for all the hollow nodes of a process, of the parts their pods have alike.

    Pods made from one template differ in a few fields (names, uid, node, times) and are the
    same in the rest: a decoded pod was ~10 KB, half of a hollow pod's memory, mostly copies
    of its template's containers, labels and owner. `pod(obj)` swaps those parts for the
    first equal copy seen (as the leader's informers share theirs). The agent never changes
    a pod it received -- it computes new statuses -- so a shared part stays as decoded
    (tests/scale checks that after the pods ran)."""

    def __init__(self) -> None:
        self._parts: dict[bytes, Any] = {}

    def pod(self, obj: dict[str, Any]) -> dict[str, Any]:
        spec = obj.get("spec")
        if isinstance(spec, dict):
            for key, value in spec.items():  # values replaced, no key added: safe to iterate
                if value and isinstance(value, (dict, list)):
                    spec[key] = self._one(value)
        md = obj.get("metadata")
        if isinstance(md, dict):
            for key in ("labels", "ownerReferences"):
                if md.get(key):
                    md[key] = self._one(md[key])
        return obj

    def _one(self, value: Any) -> Any:
        key = orjson.dumps(value)
        found = self._parts.get(key)
        if found is None:
            if len(self._parts) >= SHARED_PARTS_MAX:
                self._parts.clear()
            self._parts[key] = found = value
        return found


class HollowApiSession(HttpApiSession):
    """`HttpApiSession` over the lean transport. `context`: the TLS context of the cluster CA
    (one per process, shared by all its nodes); None for http:// servers. `shared`: the
    process's SharedParts, applied to every pod its watch receives."""

    def __init__(self, servers: list[str], token: str | None = None, *,
                 context: ssl.SSLContext | None = None, shared: SharedParts | None = None,
                 timeout: float = REQUEST_TIMEOUT) -> None:
        # The httpx client slot is never used: _send and _consume_watch below are the whole
        # transport (a client passed in is also one the session does not create or close).
        super().__init__(servers, token, timeout=timeout, client=cast(Any, self))
        self._context = context
        self._shared = shared
        self._idle: dict[str, list[_Connection]] = {}
        # Per server, the connection of a watch the server ended, kept for the next watch.
        self._ended_watch: dict[str, _Connection] = {}
        self._slots = trio.CapacityLimiter(REQUEST_CONNECTIONS)
        self._endpoints = {s: self._endpoint(s) for s in self.servers}
        self.connects = 0  # connections opened (a runner reports how well they are reused)
        self.requests = 0

    @staticmethod
    def _endpoint(server: str) -> tuple[str, int, str, bool]:
        url = urlsplit(server)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) URL: {server!r}")
        tls = url.scheme == "https"
        port = url.port or (443 if tls else 80)
        return url.hostname, port, url.netloc, tls

    def _message(self, server: str, method: str, target: str, headers: dict[str, str],
                 body: bytes | None) -> bytes:
        """The request as sent: request line, headers, body."""
        lines = [f"{method} {target} HTTP/1.1\r\nHost: {self._endpoints[server][2]}\r\n"]
        lines.extend(f"{k}: {v}\r\n" for k, v in headers.items())
        if body is None:
            lines.append("\r\n")
            return "".join(lines).encode()
        lines.append(f"Content-Length: {len(body)}\r\n\r\n")
        return "".join(lines).encode() + body

    async def _connect(self, server: str) -> _Connection:
        host, port, _, tls = self._endpoints[server]
        if tls and self._context is None:
            raise ValueError("https server without a TLS context")
        self.connects += 1
        return await _Connection.open(host, port, self._context if tls else None)

    async def _take_idle(self, server: str) -> _Connection | None:
        idle = self._idle.get(server)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if now - conn.idle_since < IDLE_EXPIRY:
                return conn
            await conn.aclose()
        return None

    async def _exchange(self, server: str, message: bytes
                        ) -> tuple[int, Mapping[str, str], bytes]:
        """One request and its whole answer (status, headers, body). A kept-alive connection
        the server closed meanwhile fails before any answer: that is retried once on a new
        connection (the request cannot have been processed)."""
        self.requests += 1
        # A free slot is taken without the scheduler round trip `async with` makes.
        try:
            self._slots.acquire_nowait()
        except trio.WouldBlock:
            await self._slots.acquire()
        try:
            return await self._exchange_on_pooled(server, message)
        finally:
            self._slots.release()

    async def _exchange_on_pooled(self, server: str, message: bytes
                                  ) -> tuple[int, Mapping[str, str], bytes]:
        for attempt in range(2):
            conn = await self._take_idle(server) if attempt == 0 else None
            reused = conn is not None
            if conn is None:
                conn = await self._connect(server)
            try:
                await conn.send(message)
                resp = await conn.response()
            except _TransportError:
                conn.close()
                if reused:
                    continue
                raise
            except BaseException:  # cancelled (the request's timeout): the answer is lost
                conn.close()
                raise
            try:
                data = await conn.body(resp)
            except BaseException:
                conn.close()
                raise
            idle = self._idle.setdefault(server, [])
            if len(idle) < REQUEST_CONNECTIONS and conn.reusable(resp):
                idle.append(conn)
            else:
                conn.close()
            return resp.status, resp.headers, data
        raise AssertionError("unreachable")

    async def _send(self, method: str, url: str, *, params: dict[str, Any] | None,
                    headers: dict[str, str], content: bytes | None
                    ) -> tuple[int, Mapping[str, str], bytes]:
        server = next(s for s in self.servers if url.startswith(s + "/"))
        target = url[len(server):] + ("?" + urlencode(params) if params else "")
        # A plain cancel scope: trio.fail_after wraps one in a generator context manager.
        with trio.CancelScope(relative_deadline=self._timeout):
            return await self._exchange(server, self._message(
                server, method, target, headers, content))
        raise _TransportError(f"no answer within {self._timeout:g}s")

    async def _consume_watch(self, index: int, params: dict[str, str], timeout: Any,
                             handle: WatchHandler) -> None:
        server = self.servers[index]
        read_timeout = float(getattr(timeout, "read", None) or timeout)
        conn: _Connection | None = None
        message = self._message(server, "GET", "/api/v1/pods?" + urlencode(params),
                                self._headers, None)
        try:
            with trio.fail_after(self._timeout):
                for attempt in range(2):
                    # The connection of the watch the server ended last, as httpx's pool
                    # hands a finished stream's connection to the next request.
                    conn = self._ended_watch.pop(server, None) if attempt == 0 else None
                    if conn is not None and time.monotonic() - conn.idle_since >= IDLE_EXPIRY:
                        conn.close()
                        conn = None
                    reused = conn is not None
                    if conn is None:
                        conn = await self._connect(server)
                    try:
                        await conn.send(message)
                        resp = await conn.response()
                        break
                    except _TransportError:
                        conn.close()
                        conn = None
                        if not reused:  # (a kept connection the server closed: a new one)
                            raise
            assert conn is not None
            if resp.status in _RETRY_ELSEWHERE:
                self._move_on(index)
                raise ApiUnavailable(f"{server}: HTTP {resp.status}")
            if resp.status >= 400:
                with trio.fail_after(self._timeout):
                    data = await conn.body(resp)
                raise _status_error(resp.status, data)
            with trio.fail_after(read_timeout):
                await self._events(conn, resp, handle)
            if conn.reusable(resp):  # the server ended the watch and keeps the connection
                self._ended_watch[server], conn = conn, None
        except (_TransportError, trio.TooSlowError) as exc:
            self._move_on(index)
            raise ApiUnavailable(f"{server}: watch: {exc}") from exc
        except orjson.JSONDecodeError as exc:  # a torn line: the connection broke mid-event
            raise ApiUnavailable(f"{server}: bad watch stream: {exc}") from exc
        finally:
            if conn is not None:
                with trio.CancelScope(shield=True):
                    await conn.aclose()

    async def _events(self, conn: _Connection, resp: _Response, handle: WatchHandler) -> None:
        """Hand each watch event (one JSON object per line) to `handle` until the stream
        ends."""
        if not resp.chunked:  # our API servers stream every watch
            raise _TransportError("a watch answered without chunked encoding")
        buffer = b""
        while True:
            data = await conn.chunk()
            if not data:
                return
            buffer += data
            if b"\n" not in buffer:
                continue
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.strip():
                    etype, obj = watch_event(orjson.loads(line))
                    if self._shared is not None and etype != "BOOKMARK":
                        obj = self._shared.pod(obj)
                    await handle(etype, obj)

    async def aclose(self) -> None:
        idle, self._idle = self._idle, {}
        for conn in self._ended_watch.values():
            conn.close()
        self._ended_watch = {}
        with trio.CancelScope(shield=True):
            for conns in idle.values():
                for conn in conns:
                    await conn.aclose()
