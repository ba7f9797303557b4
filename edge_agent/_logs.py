"""The agent's log endpoint: container logs over HTTP for the API server to proxy.

Routes (GET, `Authorization: Bearer <credential>` required):
  /containerLogs/<namespace>/<pod>/<container>        (the kubelet's path)
  /api/v1/namespaces/<namespace>/pods/<pod>/log       (the API server's path, `?container=`)
with `follow`, `tailLines`, `previous`, `timestamps`, `limitBytes` as in `kubectl logs`.
Only pods of this node are served. HTTP/1.1 framing is done by h11 (already loaded by httpx),
which keeps the agent small: one request per connection, chunked responses while following.
"""

from __future__ import annotations

import functools
import hmac
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

import h11
import trio

log = logging.getLogger("edge_agent.logs")

# A log request is one short request line and a few headers; anything bigger is not ours.
MAX_REQUEST_BYTES = 16 * 1024
# A client that does not finish sending its request in this time is dropped.
REQUEST_TIMEOUT = 10.0


class LogLookupError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


@dataclass(frozen=True, slots=True)
class LogRequest:
    namespace: str
    pod: str
    container: str  # "" when not given
    follow: bool
    tail_lines: int | None
    previous: bool
    timestamps: bool
    limit_bytes: int | None


# Given a request, return the async byte stream to send (raises LogLookupError).
LogSource = Callable[[LogRequest], AsyncIterator[bytes]]


def _status_body(code: int, reason: str, message: str) -> bytes:
    return json.dumps({"kind": "Status", "apiVersion": "v1", "metadata": {},
                       "status": "Failure", "message": message, "reason": reason,
                       "code": code}).encode()


def _flag(query: dict[str, list[str]], name: str) -> bool:
    return (query.get(name) or ["false"])[-1].lower() in ("true", "1", "yes")


def _int(query: dict[str, list[str]], name: str) -> int | None:
    values = query.get(name)
    if not values:
        return None
    try:
        value = int(values[-1])
    except ValueError:
        raise LogLookupError(400, "BadRequest", f"{name} must be an integer") from None
    if value < 0:
        raise LogLookupError(400, "BadRequest", f"{name} must be >= 0")
    return value


def parse_log_target(target: str) -> LogRequest:
    """Parse a request target into a LogRequest (raises LogLookupError 404/400)."""
    parts = urlsplit(target)
    segments = [unquote(s) for s in parts.path.split("/") if s]
    query = parse_qs(parts.query)
    container = (query.get("container") or [""])[-1]
    if len(segments) == 4 and segments[0] == "containerLogs":
        namespace, pod, container = segments[1], segments[2], segments[3]
    elif (len(segments) == 7 and segments[:3] == ["api", "v1", "namespaces"]
          and segments[4] == "pods" and segments[6] == "log"):
        namespace, pod = segments[3], segments[5]
    else:
        raise LogLookupError(404, "NotFound", f"no such path {parts.path!r}")
    return LogRequest(namespace=namespace, pod=pod, container=container,
                      follow=_flag(query, "follow"), tail_lines=_int(query, "tailLines"),
                      previous=_flag(query, "previous"), timestamps=_flag(query, "timestamps"),
                      limit_bytes=_int(query, "limitBytes"))


async def serve_logs(host: str, port: int, *, credential: str, source: LogSource,
                     task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve container logs on host:port until cancelled; started with the bound port."""
    if not credential:
        raise ValueError("the log endpoint needs a credential")
    expected = f"Bearer {credential}".encode()

    async def handler(stream: trio.SocketStream) -> None:
        try:
            await _handle(stream, expected, source)
        except Exception as exc:  # one client's failure must never take the endpoint down
            if not _is_disconnect(exc):
                log.warning("log request failed: %r", exc)
        finally:
            await stream.aclose()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, handler, port, host=host))
        task_status.started(listeners[0].socket.getsockname()[1])


def _is_disconnect(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_is_disconnect(e) for e in exc.exceptions)
    return isinstance(exc, (trio.BrokenResourceError, trio.ClosedResourceError,
                            h11.ProtocolError, ConnectionError))


async def _send(stream: trio.SocketStream, conn: h11.Connection, event: h11.Event) -> None:
    data = conn.send(event)
    if data:
        await stream.send_all(data)


async def _error(stream: trio.SocketStream, conn: h11.Connection, code: int, reason: str,
                 message: str) -> None:
    body = _status_body(code, reason, message)
    await _send(stream, conn, h11.Response(status_code=code, headers=[
        ("Content-Type", "application/json"), ("Content-Length", str(len(body))),
        ("Connection", "close")]))
    await _send(stream, conn, h11.Data(data=body))
    await _send(stream, conn, h11.EndOfMessage())


async def _handle(stream: trio.SocketStream, expected: bytes, source: LogSource) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_BYTES)
    request: h11.Request | None = None
    with trio.move_on_after(REQUEST_TIMEOUT):
        while request is None:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(4096)
                conn.receive_data(data)
                if not data:
                    return
            elif isinstance(event, h11.Request):
                request = event
            else:
                return
    if request is None:
        return
    headers = dict(request.headers)
    if request.method != b"GET":
        await _error(stream, conn, 405, "MethodNotAllowed", "only GET is served")
        return
    target = request.target.decode("latin-1")
    if target == "/healthz":
        await _send(stream, conn, h11.Response(status_code=200, headers=[
            ("Content-Length", "2"), ("Connection", "close")]))
        await _send(stream, conn, h11.Data(data=b"ok"))
        await _send(stream, conn, h11.EndOfMessage())
        return
    if not hmac.compare_digest(headers.get(b"authorization", b""), expected):
        await _error(stream, conn, 401, "Unauthorized", "a valid bearer credential is required")
        return
    try:
        req = parse_log_target(target)
        chunks = source(req)
        first = await chunks.__anext__()
    except StopAsyncIteration:
        first = b""
        chunks = None  # type: ignore[assignment]
    except LogLookupError as exc:
        await _error(stream, conn, exc.code, exc.reason, exc.message)
        return
    await _send(stream, conn, h11.Response(status_code=200, headers=[
        ("Content-Type", "text/plain; charset=utf-8"), ("Connection", "close"),
        ("Transfer-Encoding", "chunked")]))
    budget = req.limit_bytes

    async def send_chunk(data: bytes) -> bool:
        nonlocal budget
        if budget is not None:
            data = data[:budget]
            budget -= len(data)
        if data:
            await _send(stream, conn, h11.Data(data=data))
        return budget is None or budget > 0

    async with trio.open_nursery() as nursery:
        async def hang_up_on_eof() -> None:
            # A following client that disconnects ends the stream at once, not at the next line.
            while await stream.receive_some(4096):
                pass
            nursery.cancel_scope.cancel()

        nursery.start_soon(hang_up_on_eof)
        try:
            if await send_chunk(first) and chunks is not None:
                async for chunk in chunks:
                    if not await send_chunk(chunk):
                        break
            await _send(stream, conn, h11.EndOfMessage())
        finally:
            if chunks is not None:
                await chunks.aclose()  # type: ignore[attr-defined]
            nursery.cancel_scope.cancel()
