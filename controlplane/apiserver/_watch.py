"""Watch streams: newline-delimited JSON events over a chunked HTTP response.

One JSON line per event, encoded once per (event type, key, revision) and shared by every
stream that sends the same event in plain JSON (most watchers of a busy kind see the same
events). Periodic BOOKMARK events (``allowWatchBookmarks=true``) carry a resourceVersion the
client may resume from. A 410 (history compacted) arrives as an ERROR event with a Status,
as Kubernetes sends it, and ends the stream.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from ..codec import dumps
from ..errors import ApiError
from ..registry import Registry, WatchEvent

__all__ = ["EventEncoder", "stream_watch"]

log = logging.getLogger("controlplane.apiserver")

# A watch whose client accepts no data for this long is closed (it would pin events in memory).
_STALL_SECONDS = 60.0
# How often per _STALL_SECONDS a stream checks for a stalled send: a stuck client is closed
# within 60-75 s.
_STALL_CHECKS = 4
# Encoded event lines kept for sharing between streams (one entry per recent event, ~2 KiB).
_LINE_CACHE_SIZE = 4096
# Events encoded and sent per chunk of a large batch (~5-10 ms of encoding between yields).
_SEND_SLICE = 256


class EventEncoder:
    """JSON lines for watch events, cached so N watchers cost one encode."""

    def __init__(self) -> None:
        self._cache: OrderedDict[tuple[str, str, int], bytes] = OrderedDict()

    def line(self, event: WatchEvent) -> bytes:
        key = (event.type, event.key, event.revision)
        line = self._cache.get(key)
        if line is None:
            line = dumps({"type": event.type, "object": event.object}) + b"\n"
            self._cache[key] = line
            if len(self._cache) > _LINE_CACHE_SIZE:
                self._cache.popitem(last=False)
        return line


async def stream_watch(
    send: Callable[[dict[str, Any]], Awaitable[None]],
    receive: Callable[[], Awaitable[dict[str, Any]]],
    *,
    registry: Registry,
    rtype: Any,
    namespace: str | None,
    resource_version: str | None,
    label_selector: str | None,
    field_selector: str | None,
    timeout: float | None,
    bookmark_interval: float | None,
    encoder: EventEncoder,
    render: Callable[[WatchEvent], bytes] | None = None,
    headers: list[tuple[bytes, bytes]],
    send_initial_events: bool = False,
) -> None:
    """Send the response start, then events until the timeout, the client leaves or an error.

    ``render`` replaces the shared JSON encoding (Table output). Never raises for stream
    errors: they become an ERROR event (ApiError) or a logged, closed stream.
    """
    async def out_once(message: dict[str, Any]) -> None:
        # A client that stops reading must not pin events (and memory) here forever.
        with trio.fail_after(_STALL_SECONDS):
            await send(message)

    state = {"sent": 0, "seen": 0}
    sending_since = math.inf  # when the send in progress began (inf: none is)

    async def out(message: dict[str, Any]) -> None:
        # No cancel scope per send (one per event was ~7 us of its ~100 us of CPU): the
        # watchdog ends a stream whose client stopped reading.
        nonlocal sending_since
        sending_since = trio.current_time()
        await send(message)
        sending_since = math.inf

    async def watchdog() -> None:
        while True:
            await trio.sleep(_STALL_SECONDS / _STALL_CHECKS)
            if trio.current_time() - sending_since >= _STALL_SECONDS:
                raise trio.TooSlowError

    await out_once({"type": "http.response.start", "status": 200, "headers": headers})
    send_lock = trio.Lock()

    async def emit(chunk: bytes) -> None:
        async with send_lock:
            await out({"type": "http.response.body", "body": chunk, "more_body": True})

    def progress(revision: int) -> None:
        state["seen"] = max(state["seen"], revision)

    async def pump() -> None:
        events: Any = registry.watch(
            rtype, namespace, resource_version=resource_version,
            label_selector=label_selector, field_selector=field_selector, on_progress=progress,
            send_initial_events=send_initial_events,
        )
        try:
            async for batch in events:
                # A large batch (a watch's initial state, a burst) goes out in slices with the
                # event loop free in between (each send yields), so it does not hold every other
                # request; under the lock throughout, so no BOOKMARK comes between its slices.
                # (Free, the lock is taken without the pass of the event loop ``async with``
                # costs: this runs once per event.)
                if send_lock.locked():
                    await send_lock.acquire()
                else:
                    send_lock.acquire_nowait()
                try:
                    for start in range(0, len(batch), _SEND_SLICE):
                        part = batch[start:start + _SEND_SLICE] if len(batch) > _SEND_SLICE else batch
                        chunk = b"".join(render(ev) if render and ev.type != "BOOKMARK" else encoder.line(ev) for ev in part)
                        await out({"type": "http.response.body", "body": chunk, "more_body": True})
                    state["sent"] = max(state["sent"], batch[-1].revision)
                finally:
                    send_lock.release()
        except ApiError as exc:
            await emit(dumps({"type": "ERROR", "object": exc.status()}) + b"\n")
        finally:
            await events.aclose()

    async def bookmarks() -> None:
        # A bookmark may only name a revision whose events this stream has already sent:
        # the revision this watch has fully seen, or the store revision one interval ago
        # (changes committed that long ago have long been delivered to the watch).
        assert bookmark_interval is not None
        earlier = registry.watch_revision()
        while True:
            await trio.sleep(bookmark_interval)
            revision = max(state["seen"], earlier)
            earlier = registry.watch_revision()
            async with send_lock:
                if revision <= state["sent"]:
                    continue
                body = {"type": "BOOKMARK", "object": {
                    "kind": rtype.kind, "apiVersion": rtype.api_version,
                    "metadata": {"resourceVersion": str(revision), "creationTimestamp": None},
                }}
                await out({"type": "http.response.body", "body": dumps(body) + b"\n", "more_body": True})
                state["sent"] = revision

    async def until_disconnect(cancel: trio.CancelScope) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        cancel.cancel()

    try:
        with trio.move_on_after(timeout if timeout is not None else math.inf) as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(until_disconnect, nursery.cancel_scope)
                nursery.start_soon(watchdog)
                if bookmark_interval:
                    nursery.start_soon(bookmarks)
                await pump()
                nursery.cancel_scope.cancel()
        del scope
        await out_once({"type": "http.response.body", "body": b"", "more_body": False})
    except* (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the client went away mid-send
    except* trio.TooSlowError:
        log.info("closing a %s watch: the client read nothing for %.0f s", rtype.plural, _STALL_SECONDS)
    except* Exception:
        log.exception("watch stream of %s failed", rtype.plural)
