"""A lean HTTP/1.1 server for the API's ASGI app, on trio (optionally TLS).

Why not only hypercorn: on this class of machine hypercorn spends ~0.6 ms of CPU per request
before the app runs (its layered protocol/stream/event design sends three socket writes per
response and schedules a dozen trio tasks and locks), which alone caps one master below the
read target. This server does the minimum for the clients the API has (kubectl/client-go, the
Python clients, curl): HTTP/1.1 keep-alive, Content-Length and chunked request bodies,
``Expect: 100-continue``, chunked streaming responses (watch, logs), one socket write per
response, strict limits on the request head. TLS is its own lean stream (``_TLSStream``: an
SSLObject over the socket, see there why not trio's SSLStream). hypercorn stays available
(``engine="hypercorn"``).

It speaks plain ASGI 3 to the app, so the app does not depend on it.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

import trio

__all__ = ["serve_http"]

log = logging.getLogger("controlplane.apiserver.http")

# Request line + headers: Kubernetes clients send ~1 KiB; 64 KiB tolerates big tokens and
# cookies while bounding what a slow or hostile client can make us buffer.
_MAX_HEAD_BYTES = 64 * 1024
# More header lines than any real client sends; bounds the per-request dict size.
_MAX_HEADERS = 100
# An idle keep-alive connection is closed after this long (clients reconnect cheaply).
_KEEP_ALIVE_SECONDS = 75.0
# A client must finish sending a request head within this long (slowloris protection).
_HEAD_TIMEOUT_SECONDS = 30.0
# TLS handshakes that take longer are abandoned.
_HANDSHAKE_SECONDS = 10.0
# A TLS connection starts with a handshake record (content type 22); anything else on the
# HTTPS port is a plain-HTTP client, answered with a readable 400 instead of a TLS alert.
_TLS_HANDSHAKE_RECORD = 0x16
_SNIFF_BYTES = 4096
_PLAIN_HTTP_ANSWER = (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                      b"Connection: close\r\nContent-Length: 48\r\n\r\n"
                      b"Client sent an HTTP request to an HTTPS server.\n")
# When we close first: how long and how much unread input is drained so that the peer receives
# our response instead of a connection reset.
_LINGER_SECONDS = 2.0
_LINGER_BYTES = 8 * 1024 * 1024
# A request body that makes no progress for this long is abandoned.
_BODY_IDLE_SECONDS = 30.0
# Open connections per server; more are closed at once (bounds file descriptors and memory).
_MAX_CONNECTIONS = 4096
# Read size per receive call.
_READ_SIZE = 65536

_REASONS = {
    100: "Continue", 200: "OK", 201: "Created", 202: "Accepted", 204: "No Content",
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 406: "Not Acceptable", 409: "Conflict", 410: "Gone",
    413: "Request Entity Too Large", 415: "Unsupported Media Type", 422: "Unprocessable Entity",
    429: "Too Many Requests", 431: "Request Header Fields Too Large", 500: "Internal Server Error",
    501: "Not Implemented", 503: "Service Unavailable", 504: "Gateway Timeout",
}


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Closed(Exception):
    """The peer closed the connection."""


class _Connection:
    def __init__(self, stream: Any, app: Any, scheme: str, client: tuple[str, int] | None,
                 server: tuple[str, int] | None, extensions: dict[str, Any] | None = None) -> None:
        self.extensions = extensions or {}
        self.stream = stream
        self.app = app
        self.scheme = scheme
        self.client = client
        self.server = server
        self.buffer = bytearray()
        self.peer_closed = False

    async def _fill(self) -> None:
        data = await self.stream.receive_some(_READ_SIZE)
        if not data:
            self.peer_closed = True
            raise _Closed()
        self.buffer += data

    async def _fill_body(self) -> None:
        # A body that stops arriving is a client gone (or a slowloris): give up on it.
        with trio.move_on_after(_BODY_IDLE_SECONDS):
            await self._fill()
            return
        self.peer_closed = True
        raise _Closed()

    async def _read_head(self) -> bytes | None:
        """The next request head, or None if the client closed an idle connection."""
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end > _MAX_HEAD_BYTES:
                raise _BadRequest(431, "the request head is too large")
            if end >= 0:
                head = bytes(self.buffer[:end])
                del self.buffer[: end + 4]
                return head
            if len(self.buffer) > _MAX_HEAD_BYTES:
                raise _BadRequest(431, "the request head is too large")
            try:
                await self._fill()
            except _Closed:
                if self.buffer.strip():
                    raise _BadRequest(400, "the connection closed inside a request head") from None
                return None

    async def serve(self) -> None:
        try:
            while True:
                head = None
                with trio.move_on_after(_KEEP_ALIVE_SECONDS if not self.buffer else _HEAD_TIMEOUT_SECONDS):
                    head = await self._read_head()
                if head is None:
                    return
                if not await self._one_request(head) or self.peer_closed:
                    return
        except _BadRequest as exc:
            await self._send_plain(exc.status, str(exc))
        except (_Closed, trio.BrokenResourceError, trio.ClosedResourceError, OSError, ssl.SSLError):
            pass
        finally:
            if not self.peer_closed:
                await self._linger()
            with trio.move_on_after(1) as cleanup:
                cleanup.shield = True
                try:
                    await self.stream.aclose()
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError, ssl.SSLError):
                    pass

    async def _linger(self) -> None:
        # Closing a socket with unread input makes the kernel send a reset, which can destroy
        # the response we just sent (e.g. a 413 before the body was read). Half-close, then
        # discard what the client still sends, for a bounded time and amount.
        with trio.move_on_after(_LINGER_SECONDS) as scope:
            scope.shield = True
            try:
                send_eof = getattr(self.stream, "send_eof", None)
                if send_eof is not None:
                    await send_eof()
                drained = 0
                while drained < _LINGER_BYTES:
                    data = await self.stream.receive_some(_READ_SIZE)
                    if not data:
                        return
                    drained += len(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError, ssl.SSLError):
                return

    async def _send_plain(self, status: int, message: str) -> None:
        body = message.encode() + b"\n"
        head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\ncontent-type: text/plain\r\n"
                f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode()
        try:
            with trio.move_on_after(5):
                await self.stream.send_all(head + body)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError, ssl.SSLError):
            pass

    async def _one_request(self, head: bytes) -> bool:
        """Serve one request; True if the connection may carry another."""
        lines = head.split(b"\r\n")
        try:
            method_b, target_b, version_b = lines[0].split(b" ")
        except ValueError:
            raise _BadRequest(400, "malformed request line") from None
        if version_b not in (b"HTTP/1.1", b"HTTP/1.0") or not method_b.isalpha() or not target_b:
            raise _BadRequest(400, "malformed request line")
        if len(lines) - 1 > _MAX_HEADERS:
            raise _BadRequest(431, "too many request headers")
        headers: list[tuple[bytes, bytes]] = []
        content_length: int | None = None
        chunked = False
        connection = b""
        expect_continue = False
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip() or b" " in name:
                raise _BadRequest(400, "malformed header line")
            name = name.lower()
            value = value.strip()
            headers.append((name, value))
            if name == b"content-length":
                if not value.isdigit() or (content_length is not None and int(value) != content_length):
                    raise _BadRequest(400, "invalid Content-Length")
                content_length = int(value)
            elif name == b"transfer-encoding":
                if value.lower() != b"chunked":
                    raise _BadRequest(501, "only chunked transfer encoding is supported")
                chunked = True
            elif name == b"connection":
                connection = value.lower()
            elif name == b"expect" and value.lower() == b"100-continue":
                expect_continue = True
        if chunked and content_length is not None:
            raise _BadRequest(400, "both Content-Length and Transfer-Encoding")  # request smuggling
        http10 = version_b == b"HTTP/1.0"
        keep_alive = (b"keep-alive" in connection) if http10 else (b"close" not in connection)
        raw_path, _, query = target_b.partition(b"?")
        try:
            path = unquote(raw_path.decode("ascii"), errors="strict")
        except (UnicodeDecodeError, UnicodeEncodeError):
            raise _BadRequest(400, "the request path is not valid") from None
        method = method_b.decode()
        scope = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.0" if http10 else "1.1", "method": method, "scheme": self.scheme,
            "path": path, "raw_path": raw_path, "query_string": query, "root_path": "",
            "headers": headers, "client": self.client, "server": self.server,
            "extensions": self.extensions,
        }
        body_left = content_length or 0
        body_done = not chunked and body_left == 0
        continue_sent = False
        body_delivered = False
        chunk_state: dict[str, Any] = {"left": 0, "done": False}
        pending_head: tuple[bytes, bool] | None = None
        response_started = False
        response_done = False
        streaming = False
        head_only = method == "HEAD"
        disconnected = False

        async def read_chunked() -> bytes:
            # One piece of a chunked body (b"" at its end).
            while True:
                if chunk_state["left"] == 0:
                    while b"\r\n" not in self.buffer:
                        if len(self.buffer) > 1024:
                            raise _BadRequest(400, "malformed chunked body")
                        await self._fill_body()
                    line, _, _rest = bytes(self.buffer).partition(b"\r\n")
                    del self.buffer[: len(line) + 2]
                    try:
                        size = int(line.split(b";")[0].strip(), 16)
                    except ValueError:
                        raise _BadRequest(400, "malformed chunk size") from None
                    if size == 0:
                        while b"\r\n" not in self.buffer:
                            await self._fill_body()
                        # trailers are not supported: expect the empty line that ends the body
                        line, _, _rest = bytes(self.buffer).partition(b"\r\n")
                        del self.buffer[: len(line) + 2]
                        chunk_state["done"] = True
                        return b""
                    chunk_state["left"] = size
                if not self.buffer:
                    await self._fill_body()
                take = min(chunk_state["left"], len(self.buffer))
                data = bytes(self.buffer[:take])
                del self.buffer[:take]
                chunk_state["left"] -= take
                if chunk_state["left"] == 0:
                    while len(self.buffer) < 2:
                        await self._fill_body()
                    del self.buffer[:2]
                if data:
                    return data

        async def receive() -> dict[str, Any]:
            nonlocal body_left, body_done, continue_sent, disconnected, body_delivered
            if body_done and not body_delivered:
                body_delivered = True  # an empty body is still one http.request message
                return {"type": "http.request", "body": b"", "more_body": False}
            if not body_done:
                if expect_continue and not continue_sent and not response_started:
                    continue_sent = True
                    await self.stream.send_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                try:
                    if chunked:
                        data = await read_chunked()
                        body_done = chunk_state["done"]
                    else:
                        if not self.buffer:
                            await self._fill_body()
                        take = min(body_left, len(self.buffer))
                        data = bytes(self.buffer[:take])
                        del self.buffer[:take]
                        body_left -= take
                        body_done = body_left == 0
                except _Closed:
                    disconnected = True
                    return {"type": "http.disconnect"}
                body_delivered = body_done
                return {"type": "http.request", "body": data, "more_body": not body_done}
            # The body is read: wait until the client goes away (watch and log streams).
            while not disconnected:
                if response_done:
                    await trio.sleep_forever()
                try:
                    await self._fill()  # pipelined bytes stay buffered for the next request
                except _Closed:
                    disconnected = True
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal response_started, response_done, streaming, pending_head
            kind = message["type"]
            if kind == "http.response.start":
                if response_started:
                    raise RuntimeError("the response has already started")
                response_started = True
                status = int(message["status"])
                out = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n".encode()]
                has_length = False
                for name, value in message.get("headers", []):
                    if b"\r" in name or b"\n" in name or b"\r" in value or b"\n" in value:
                        raise RuntimeError("header contains a line break")
                    if name.lower() == b"content-length":
                        has_length = True
                    out.append(name + b": " + value + b"\r\n")
                if not keep_alive or not body_done:
                    # an unread body means this connection closes after the response: say so,
                    # or the client would send its next request into a closing socket
                    out.append(b"connection: close\r\n")
                if has_length:
                    # a complete response follows: head and body go out in one write
                    pending_head = (b"".join(out), has_length)
                    return
                # no length: a stream (watch, logs) whose head the client needs now
                streaming = True
                if not http10:
                    out.append(b"transfer-encoding: chunked\r\n")
                await self.stream.send_all(b"".join(out) + b"\r\n")
                return
            if kind != "http.response.body" or response_done or disconnected:
                return
            body = message.get("body", b"")
            more = message.get("more_body", False)
            if pending_head is not None:
                head_bytes, has_length = pending_head
                pending_head = None
                if not more:
                    if not has_length:
                        head_bytes += b"content-length: %d\r\n" % len(body)
                    response_done = True
                    await self.stream.send_all(head_bytes + b"\r\n" + (b"" if head_only else body))
                    return
                streaming = True
                if http10:
                    await self.stream.send_all(head_bytes + b"\r\n" + body)
                else:
                    await self.stream.send_all(
                        head_bytes + b"transfer-encoding: chunked\r\n\r\n" + (b"%x\r\n%s\r\n" % (len(body), body) if body else b"")
                    )
                return
            if not streaming:
                return
            payload = b""
            if body:
                payload = body if http10 else b"%x\r\n%s\r\n" % (len(body), body)
            if not more:
                response_done = True
                if not http10:
                    payload += b"0\r\n\r\n"
            if payload:
                await self.stream.send_all(payload)

        try:
            await self.app(scope, receive, send)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError, ssl.SSLError, _Closed):
            return False
        except _BadRequest:
            raise
        except Exception:
            log.exception("the API app failed on %s %s", method, path)
            if not response_started:
                await self._send_plain(500, "internal error")
            return False
        if not response_done:
            if pending_head is not None and not streaming:
                # the app started but sent no body: an empty response
                head_bytes, has_length = pending_head
                await self.stream.send_all(head_bytes + (b"" if has_length else b"content-length: 0\r\n") + b"\r\n")
            elif not response_started:
                await self._send_plain(500, "internal error: the app sent no response")
            return False
        if streaming and http10:
            return False
        if not body_done:
            return False  # an unread body would be parsed as the next request: close instead
        return keep_alive


class _TLSStream(trio.abc.Stream):
    """The server side of a TLS connection: an SSLObject over memory buffers and the socket.

    Why not trio.SSLStream: each send there takes two locks, two passes of the event loop and
    a stack of wrappers (``_retry``, the transport stream, the socket's try-then-wait helper):
    about a quarter of the CPU a master spends per watch event delivered to a node agent
    (bench.watchfan). Here a send the kernel takes at once is one TLS write and one send(2),
    then one checkpoint (so a stream of sends still lets other tasks run, as trio's streams
    do). One task may receive while another sends (a watch stream waits for the client to
    leave while it sends events): every byte the TLS layer produces goes out in order, through
    ``_unsent`` when the kernel does not take it at once. Its peer may close without a TLS
    close_notify (a "ragged" EOF, as browsers and Go clients do): that is an end of stream.
    """

    def __init__(self, sock: socket.socket, context: ssl.SSLContext, head: bytes) -> None:
        self._sock = sock
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._incoming.write(head)  # (what was read to tell TLS from plain HTTP)
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._unsent = bytearray()  # TLS bytes the kernel has not taken yet, in order
        self._writer_waiting = False  # one task at a time waits for the socket to take more
        self._drained = trio.Event()
        self._closed = False

    def getpeercert(self, binary_form: bool = False) -> Any:
        return self._tls.getpeercert(binary_form)

    def _push(self) -> bool:
        """Hand the TLS layer's output to the kernel without waiting; True if all of it went."""
        if self._closed:
            raise trio.ClosedResourceError("the connection is closed")
        try:
            if self._outgoing.pending:
                data = self._outgoing.read()
                if not self._unsent:
                    try:
                        sent = self._sock.send(data)
                    except BlockingIOError:
                        sent = 0
                    if sent == len(data):
                        return True
                    data = data[sent:]
                self._unsent += data
            while self._unsent:
                try:
                    sent = self._sock.send(self._unsent)
                except BlockingIOError:
                    return False
                del self._unsent[:sent]
        except OSError as exc:
            raise trio.BrokenResourceError(f"the connection broke: {exc}") from exc
        return True

    async def _flush(self) -> None:
        while not self._push():
            if self._writer_waiting:  # another task waits for the socket: it sends ours too
                await self._drained.wait()
                continue
            self._writer_waiting = True
            try:
                await trio.lowlevel.wait_writable(self._sock)
            finally:
                self._writer_waiting = False
                self._drained.set()
                self._drained = trio.Event()

    async def _fill(self) -> None:
        """Feed the TLS layer what the client sent (its end of stream, if it closed)."""
        while True:
            try:
                data = self._sock.recv(_READ_SIZE)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self._sock)
                continue
            except OSError as exc:
                raise trio.BrokenResourceError(f"the connection broke: {exc}") from exc
            if data:
                self._incoming.write(data)
            else:
                self._incoming.write_eof()
            return

    async def do_handshake(self) -> None:
        while True:
            try:
                self._tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self._flush()
                if self._incoming.eof:
                    raise trio.BrokenResourceError("the client closed during the TLS handshake") from None
                await self._fill()
            except ssl.SSLError as exc:
                raise trio.BrokenResourceError(f"TLS handshake failed: {exc}") from exc
        await self._flush()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._closed:
            raise trio.ClosedResourceError("the connection is closed")
        if data:
            try:
                self._tls.write(data)
            except ssl.SSLError as exc:
                raise trio.BrokenResourceError(f"TLS write failed: {exc}") from exc
        if self._push():
            await trio.lowlevel.cancel_shielded_checkpoint()
        else:
            await self._flush()

    async def wait_send_all_might_not_block(self) -> None:
        await self._flush()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._closed:
            raise trio.ClosedResourceError("the connection is closed")
        waited = False
        while True:
            try:
                data = self._tls.read(max_bytes or _READ_SIZE)
                break
            except ssl.SSLWantReadError:
                if self._incoming.eof:
                    data = b""  # the client closed without a close_notify: the end
                    break
                await self._flush()  # (the TLS layer may have answered something first)
                await self._fill()
                waited = True
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                data = b""  # closed, with or without a close_notify
                break
            except ssl.SSLError as exc:
                raise trio.BrokenResourceError(f"TLS read failed: {exc}") from exc
        if self._outgoing.pending and not self._push():
            await self._flush()
        elif not waited:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return data

    async def aclose(self) -> None:
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        try:
            # our close_notify (we do not wait for the client's, as trio's https_compatible mode)
            self._tls.unwrap()
        except (ssl.SSLError, ValueError):
            pass
        try:
            await self._flush()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self._closed = True
            trio.lowlevel.notify_closing(self._sock)
            self._sock.close()


async def serve_http(
    app: Callable[..., Awaitable[None]],
    *,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` until cancelled; ``task_status.started([url])`` once listening."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    scheme = "https" if ssl_context else "http"
    server_addr = listeners[0].socket.getsockname()[:2]

    open_connections = 0

    async def handle(stream: trio.SocketStream) -> None:
        nonlocal open_connections
        if open_connections >= _MAX_CONNECTIONS:
            log.warning("refusing a connection: %d are open already", open_connections)
            await trio.aclose_forcefully(stream)
            return
        open_connections += 1
        try:
            await _serve_connection(stream)
        finally:
            open_connections -= 1

    async def _serve_connection(stream: trio.SocketStream) -> None:
        try:
            client = stream.socket.getpeername()[:2]
        except OSError:
            return
        conn_stream: Any = stream
        if ssl_context is not None:
            first = b""
            with trio.move_on_after(_HANDSHAKE_SECONDS):
                try:
                    first = await stream.receive_some(_SNIFF_BYTES)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    pass
            if not first or first[0] != _TLS_HANDSHAKE_RECORD:
                if first:
                    # Plain HTTP to the HTTPS port: say so (as Go's servers do), then hang up.
                    with trio.move_on_after(1):
                        try:
                            await stream.send_all(_PLAIN_HTTP_ANSWER)
                        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                            pass
                with trio.move_on_after(1) as cleanup:
                    cleanup.shield = True
                    await stream.aclose()
                return
            # The socket leaves trio's stream (whose close is then a no-op) for the TLS stream.
            raw = socket.socket(fileno=stream.socket.detach())
            raw.setblocking(False)
            conn_stream = _TLSStream(raw, ssl_context, first)
            try:
                with trio.fail_after(_HANDSHAKE_SECONDS):
                    await conn_stream.do_handshake()
            except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                with trio.move_on_after(1) as cleanup:
                    cleanup.shield = True
                    await conn_stream.aclose()
                return
        extensions: dict[str, Any] = {}
        if ssl_context is not None:
            # ASGI's TLS extension: the verified client certificate (node credentials) for the app
            der = conn_stream.getpeercert(binary_form=True)
            extensions["tls"] = {"client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
                                 "tls_version": None, "cipher_suite": None}
        try:
            await _Connection(conn_stream, app, scheme, client, server_addr, extensions).serve()
        except Exception:  # one connection's failure must never stop the listener
            log.exception("connection from %s failed", client)

    async with trio.open_nursery() as nursery:
        lifespan_send, lifespan_receive = trio.open_memory_channel[dict[str, Any]](1)
        started = trio.Event()

        async def lifespan_receive_fn() -> dict[str, Any]:
            return await lifespan_receive.receive()

        async def lifespan_send_fn(message: dict[str, Any]) -> None:
            if message["type"] == "lifespan.startup.complete":
                started.set()

        async def lifespan() -> None:
            try:
                await app({"type": "lifespan", "asgi": {"version": "3.0"}}, lifespan_receive_fn, lifespan_send_fn)
            except Exception:  # an app without lifespan support is fine
                started.set()

        nursery.start_soon(lifespan)
        await lifespan_send.send({"type": "lifespan.startup"})
        await started.wait()
        host_text = f"[{server_addr[0]}]" if ":" in server_addr[0] else server_addr[0]
        task_status.started([f"{scheme}://{host_text}:{server_addr[1]}"])
        await trio.serve_listeners(handle, listeners)
