"""A list+watch cache of one resource over the :class:`~controlplane.registry.Registry`.

The cache holds the objects as the registry decoded them; they may be shared with other readers,
so handlers and syncs must never mutate them (copy before changing, as client-go's listers).
After a 410 Expired (the watch fell behind the store's history) it re-lists and reports the
difference as ordinary add/update/delete events, so handlers never miss a change.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import trio

from controlplane._sharing import share
from controlplane.errors import ApiError

log = logging.getLogger(__name__)

# Pause before re-listing after the store became unavailable (no quorum): short, since the
# leader loop stops duties anyway when the quorum is really gone.
RELIST_BACKOFF = 0.2

# Events handled between two yields to the event loop: a pod event costs its sharing and
# every controller's handler (0.1-0.3 ms, more on a CPU-starved host), so 16 keep a slice
# near 5 ms (64 held the loop 30-90 ms under load).
YIELD_EVERY = 16
# Cached objects replayed to deferred handlers (or decoded in a list) between two yields.
REPLAY_CHUNK = 128

Handler = Callable[[dict | None, dict | None], None]


def object_key(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name')}" if ns else str(meta.get("name"))


class Informer:
    """Keeps ``cache`` (key -> object) current and calls handlers with ``(old, new)``.

    ``old`` is None for an add and ``new`` is None for a delete. Handlers run synchronously in
    the watch task: they must only update indexes and enqueue keys.
    """

    def __init__(self, registry: Any, resource: str, *, namespace: str | None = None) -> None:
        self.registry = registry
        self.resource = resource
        self.namespace = namespace
        self.cache: dict[str, dict] = {}
        # namespace -> key -> object: a controller listing one namespace (a Service's pods, a
        # Deployment's ReplicaSets) does not walk every object of the cluster
        self._by_ns: dict[str, dict[str, dict]] = {}
        self.handlers: list[Handler] = []
        self.synced = trio.Event()
        self.revision = 0
        self._progress = trio.Event()
        self._deferred: list[Handler] | None = None

    def add_handler(self, handler: Handler) -> None:
        """Register ``handler``; like client-go, it is first told every cached object as an add
        (at once, or by :meth:`replay_deferred` inside :meth:`defer_replays`)."""
        self.handlers.append(handler)
        if self._deferred is not None:
            self._deferred.append(handler)
            return
        for obj in list(self.cache.values()):
            handler(None, obj)

    def defer_replays(self) -> None:
        """Handlers added from now on are told the cached objects by :meth:`replay_deferred`
        (a fresh leader's controllers over 30,000 cached pods: seconds of work in one piece
        would hold every API request of this master)."""
        self._deferred = []

    async def replay_deferred(self) -> None:
        """Tell the deferred handlers every cached object as an add, yielding to the event loop
        every :data:`REPLAY_CHUNK` objects. The handlers are registered already, so changes that
        arrive meanwhile reach them too; each object is read from the cache when its turn
        comes (never older than what a handler was already told), and one deleted meanwhile
        is skipped. A handler may thus see an update or delete of an object before its add,
        which handlers of live events must tolerate anyway."""
        handlers, self._deferred = self._deferred or [], None
        if not handlers:
            return
        for n, key in enumerate(list(self.cache), 1):
            obj = self.cache.get(key)
            if obj is not None:
                for handler in handlers:
                    handler(None, obj)
            if n % REPLAY_CHUNK == 0:
                await trio.lowlevel.checkpoint()

    def get(self, key: str) -> dict | None:
        return self.cache.get(key)

    def list(self, namespace: str | None = None) -> list[dict]:
        if namespace is None:
            return list(self.cache.values())
        return list(self._by_ns.get(namespace, {}).values())

    def _store(self, key: str, obj: dict) -> None:
        self.cache[key] = obj
        ns, sep, _ = key.partition("/")
        if sep:
            self._by_ns.setdefault(ns, {})[key] = obj

    def _drop(self, key: str) -> dict | None:
        prev = self.cache.pop(key, None)
        ns, sep, _ = key.partition("/")
        if sep and prev is not None:
            bucket = self._by_ns.get(ns)
            if bucket is not None:
                bucket.pop(key, None)
                if not bucket:
                    del self._by_ns[ns]
        return prev

    def _progressed(self) -> None:
        self._progress.set()
        self._progress = trio.Event()

    async def wait_for(self, seen: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Wait until ``seen()`` holds for the cache (e.g. our own writes are visible in it).

        This replaces client-go's "expectations": after creating or deleting objects, a sync
        waits for the informer to reflect them, so the next sync never counts stale state and
        creates duplicates. False after ``timeout`` (the next sync re-checks anyway).
        """
        with trio.move_on_after(timeout):
            while not seen():
                await self._progress.wait()
            return True
        return False

    def reflects(self, key: str, revision: int) -> bool:
        """The cache holds ``key`` at ``revision`` or later, or has seen it deleted."""
        obj = self.cache.get(key)
        if obj is None:
            return self.revision >= revision
        return int(obj["metadata"].get("resourceVersion") or 0) >= revision

    def _emit(self, old: dict | None, new: dict | None) -> None:
        for h in self.handlers:
            h(old, new)

    def _replace(self, items: Sequence[dict]) -> None:
        old_cache = self.cache
        self.cache, self._by_ns = {}, {}
        for o in items:
            self._store(object_key(o), o)
        fresh = self.cache
        for key, obj in fresh.items():
            prev = old_cache.get(key)
            if prev is None or prev["metadata"].get("resourceVersion") != obj["metadata"].get("resourceVersion"):
                self._emit(prev, obj)
        for key, prev in old_cache.items():
            if key not in fresh:
                self._emit(prev, None)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """List, signal ``started`` once the cache is filled, then watch; never returns unless cancelled."""
        started = False
        while True:
            try:
                header, kvs = await self.registry.list_kvs(self.resource, self.namespace)
                items = []
                for n, kv in enumerate(kvs, 1):
                    items.append(self.registry.decode_cached(kv))
                    if n % REPLAY_CHUNK == 0:
                        # 30,000 pods take a second or more to decode: not in one piece
                        await trio.lowlevel.checkpoint()
                self._replace(items)
                self.revision = int(header["metadata"]["resourceVersion"])
                self.synced.set()
                self._progressed()
                if not started:
                    started = True
                    task_status.started()
                async for batch in self.registry.watch(
                    self.resource, self.namespace, resource_version=str(self.revision)
                ):
                    for n, ev in enumerate(batch, 1):
                        if n % YIELD_EVERY == 0:
                            # A batch can hold thousands of events (a burst of bindings): let
                            # the API server's requests in between the handlers' work.
                            await trio.lowlevel.checkpoint()
                        key = object_key(ev.object)
                        if ev.type == "DELETED":
                            prev = self._drop(key)
                            self._emit(prev, None)
                        else:
                            prev = self.cache.get(key)
                            # kept until replaced: its repeated parts shared with other objects
                            # (equal values, so other holders of the event see no change); the
                            # parts an update left alone are taken from the version it replaces
                            obj = share(ev.object, prev)
                            self._store(key, obj)
                            self._emit(prev, obj)
                        self.revision = ev.revision
                    self._progressed()
                # The stream ended (store closing): re-list after a pause rather than spin.
                await trio.sleep(RELIST_BACKOFF)
            except ApiError as exc:
                if exc.code != 410:
                    log.info("informer %s: %s; re-listing", self.resource, exc)
                    await trio.sleep(RELIST_BACKOFF)
