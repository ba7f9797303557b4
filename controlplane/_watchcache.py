"""The registry's watch cache: one store watch per master, fanned out to every watcher.

Kubernetes' API server keeps a "cacher" per resource between etcd and its watchers; this is
the same idea at this project's size. Without it every watch is its own store watch: each commit
wakes every watcher, each filters the store's history on its own and decodes what it keeps, so
1,000 node agents watching their pods (``fieldSelector=spec.nodeName=NODE``) cost 1,000
wake-ups, history scans and selector checks per pod event.

Here one pump follows the whole store (every revision is an event under some key, so the
cache's revision reaches the store's): per event it updates the resource's key map and its
``spec.nodeName`` index, decodes the object once (the registry's shared decode) and hands it
only to the watchers it can concern: watchers of that node (a dict lookup) and the few watchers
that are not indexed (informers, kubectl). Each watcher gets its own buffer and wake-up.

Reads served from the cache follow Kubernetes' rules (KEP-2340 "consistent reads from cache"):
``resourceVersion=""`` (most recent) takes a quorum read barrier for the current revision and
waits until the cache has reached it; ``"0"`` is any version (the cache as it is); ``N`` waits
for the cache to reach N. ``resourceVersionMatch=Exact`` goes to the store. A continue page is
served as of its token's revision from the cache's history (:meth:`WatchCache.snapshot_at`) when
that reaches back far enough, else from the store's history.

A watcher that falls more than :data:`MAX_PENDING` events behind is ended with 410 Expired (the
client re-lists, as with a Kubernetes cacher's slow watcher); a watch from a revision older than
the cache's history is served by the store directly (the history check is the store's).
"""

from __future__ import annotations

import functools
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from itertools import islice
from typing import TYPE_CHECKING, Any

import msgpack
import trio
from sortedcontainers import SortedList

from raftstore import Compacted, KeyValue, StoreUnavailable

from . import errors, kinds
from ._asof import ChangedKeys

if TYPE_CHECKING:
    from .registry import Registry, WatchEvent, _Selection

__all__ = ["WatchCache"]

log = logging.getLogger(__name__)

# Events buffered for one watcher before it is ended with 410 (it re-lists): a busy informer
# takes a 30,000-pod burst's events within a few scheduler rounds; a client that cannot keep up
# with that many would only pin memory.
MAX_PENDING = 50_000
# Events kept per resource for watches that resume from a recent revision (an agent's watch
# reconnecting): ~30 s of a 30,000-pod rollout's pod events; older resumes go to the store.
HISTORY_PER_RESOURCE = 20_000
# How long a read waits for the cache to reach the revision it must reflect before it is served
# by the store instead (the pump normally lags by one scheduling round).
CATCH_UP_SECONDS = 3.0
# Objects indexed between two yields to the event loop while the cache starts.
INDEX_CHUNK = 512
# The one field index: a node's agent lists and watches its pods by spec.nodeName.
NODE_FIELD = "spec.nodeName"
_NO_NODE = ""
# Events applied between two yields to the event loop (one Raft batch can carry thousands: a
# pump that fell behind, 64-pod ReplicaSet creates); ~256 decodes are a few milliseconds.
APPLY_SLICE = 256
# Marks an event's old version as not decoded yet (decoded only for a watcher that needs it).
_UNDECODED = object()


class _Watcher:
    __slots__ = ("ns_prefix", "selection", "node", "node_only", "start", "buffer", "wakeup", "error")

    def __init__(self, ns_prefix: str | None, selection: _Selection, node: str | None, start: int) -> None:
        self.ns_prefix = ns_prefix
        self.selection = selection
        self.node = node
        # Selects by node alone (an agent's pod watch): whether an event's old and new versions
        # match is known from the node index, without decoding the old version.
        self.node_only = (node is not None and selection.labels is None and selection.fields is not None
                          and list(selection.fields.terms) == [(NODE_FIELD, "=", node)])
        self.start = start  # first revision this watcher wants
        self.buffer: list[WatchEvent] = []
        self.wakeup = trio.Event()
        self.error: errors.ApiError | None = None


class _Resource:
    """One resource's current keys, its node index (pods) and its watchers."""

    __slots__ = ("prefix", "kvs", "keys", "by_node", "node_of", "watchers", "node_watchers", "history", "floor")

    def __init__(self, prefix: str, floor: int) -> None:
        self.prefix = prefix
        self.kvs: dict[str, KeyValue] = {}
        self.keys = SortedList()
        self.by_node: dict[str, set[str]] | None = None  # built on first indexed use
        self.node_of: dict[str, str] = {}  # key -> its node, for the keys in by_node
        self.watchers: set[_Watcher] = set()  # not indexed: every event of the resource
        self.node_watchers: dict[str, set[_Watcher]] = {}
        self.history: deque[Any] = deque(maxlen=HISTORY_PER_RESOURCE)
        self.floor = floor  # history holds every event of this resource after this revision

    def replays_from(self, start: int) -> bool:
        """Whether the history holds every event of this resource from revision ``start`` on."""
        if start <= self.floor:
            return False
        if len(self.history) < HISTORY_PER_RESOURCE:
            return True
        # Full: the oldest revision may have lost earlier events of the same transaction.
        return start > self.history[0][0].revision


_NODE_KEY = msgpack.packb("nodeName", use_bin_type=True)


@functools.lru_cache(maxsize=4096)
def _node_needle(node: str) -> bytes:
    """How a stored object (controlplane.codec's msgpack) holds ``"nodeName": node``."""
    return _NODE_KEY + msgpack.packb(node, use_bin_type=True)


def _stored_node(value: bytes) -> str | None:
    """:func:`_node_of` of a stored object read from its msgpack bytes: the top-level map is
    walked to ``spec`` and ``spec`` to ``nodeName``, every other value skipped undecoded (~2 µs
    against ~10-20 for a pod's decode). None when the bytes are not a map whose ``spec`` is a
    map (the caller decodes them)."""
    if _NODE_KEY not in value:
        return _NO_NODE  # no "nodeName" anywhere: unbound (every create of a Deployment's pod)
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(value)
    try:
        for _ in range(unpacker.read_map_header()):
            if unpacker.unpack() != "spec":
                unpacker.skip()
                continue
            for _ in range(unpacker.read_map_header()):
                if unpacker.unpack() == "nodeName":
                    node = unpacker.unpack()
                    return node if isinstance(node, str) else _NO_NODE
                unpacker.skip()
            return _NO_NODE
    except (ValueError, msgpack.UnpackException):
        return None  # (not a map, a spec that is not a map: _node_of decides)
    return _NO_NODE


def _node_of(obj: dict[str, Any] | None) -> str:
    if obj is None:
        return _NO_NODE
    node = (obj.get("spec") or {}).get("nodeName")
    return node if isinstance(node, str) else _NO_NODE


class WatchCache:
    """Serves :meth:`Registry.watch` and :meth:`Registry.list_kvs` from one store watch."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.store = registry.store
        self.revision = 0  # every store event up to here has been applied and dispatched
        self.ready = False
        self._resources: dict[str, _Resource] = {}
        self._progress = trio.Event()
        from .registry import WatchEvent  # (the registry imports this module)

        self._watch_event = WatchEvent

    # ------------------------------------------------------------------ the pump

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Fill the cache, then follow the store until cancelled or the store closes;
        ``started`` once filled (it serves reads once its node index is built, see ``ready``).

        If the pump falls behind the store's history it rebuilds, ending every watcher with 410.
        """
        started = False
        try:
            while True:
                try:
                    rr = await self.store.range("", linearizable=False)
                except StoreUnavailable:
                    return
                self._reset(rr.kvs, rr.revision)
                if not started:
                    started = True
                    task_status.started()
                # Until the node index is built (a second or two for 30,000 pods, in chunks so
                # the API keeps answering), reads and watches are served by the store.
                await self._build_index(self._resources["pods"])
                self.ready = True
                self._notify()
                try:
                    async for batch in self.store.watch("", rr.revision + 1):
                        await self._apply_sliced(batch)
                except Compacted:
                    log.warning("watch cache fell behind the store's history; rebuilding")
                    continue
                except StoreUnavailable:
                    return
                return
        finally:
            self.ready = False
            self._end_all(errors.service_unavailable("the API server's watch cache stopped"))
            if not started:
                task_status.started()

    def _reset(self, kvs: list[KeyValue], revision: int) -> None:
        self.ready = False
        self._end_all(errors.expired("the watch cache was rebuilt; re-list"))
        self._resources = {
            rtype.plural: _Resource(self.registry.prefix(rtype, None), revision) for rtype in kinds.RESOURCES
        }
        for kv in kvs:
            res = self._resource_of(kv.key)
            if res is not None:
                res.kvs[kv.key] = kv
        for res in self._resources.values():
            res.keys = SortedList(res.kvs)
        self.revision = revision

    def _end_all(self, error: errors.ApiError) -> None:
        for res in self._resources.values():
            for w in list(res.watchers) + [w for ws in res.node_watchers.values() for w in ws]:
                w.error = error
                w.wakeup.set()
            res.watchers.clear()
            res.node_watchers.clear()

    def _resource_of(self, key: str) -> _Resource | None:
        if not key.startswith("/registry/"):
            return None
        plural = key[10:].split("/", 1)[0]
        return self._resources.get(plural)

    def _notify(self) -> None:
        self._progress.set()
        self._progress = trio.Event()

    async def _apply_sliced(self, batch: list[Any]) -> None:
        """:meth:`_apply` in slices of about :data:`APPLY_SLICE` events, yielding to the event
        loop in between, so one large batch (a burst of creates, a pump that fell behind) does
        not hold every request. Slices end between revisions: at each yield the cache is exactly
        the state at its ``revision`` (lists served meanwhile are consistent)."""
        start, n = 0, len(batch)
        while n - start > APPLY_SLICE:
            end = start + APPLY_SLICE
            last = batch[end - 1].revision
            while end < n and batch[end].revision == last:
                end += 1  # (one transaction's events share a revision)
            self._apply(batch[start:end])
            start = end
            await trio.lowlevel.checkpoint()
        if start < n:
            self._apply(batch[start:] if start else batch)

    def _apply(self, batch: list[Any]) -> None:
        decode = self.registry._decode_shared
        event_for = self.registry._event_for
        watch_event = self._watch_event
        for ev in batch:
            res = self._resource_of(ev.kv.key)
            if res is None:
                continue
            key = ev.kv.key
            old_kv = res.kvs.get(key)
            if ev.type == "PUT":
                res.kvs[key] = ev.kv
                if old_kv is None:
                    res.keys.add(key)
            elif old_kv is not None:
                del res.kvs[key]
                res.keys.remove(key)
            if res.by_node is None and not res.watchers and not res.node_watchers:
                res.history.append((ev, None, None))
                continue
            put = ev.type == "PUT"
            old: Any = _UNDECODED if ev.prev_kv is not None else None
            if res.by_node is not None:
                # the old version's node from the index: no second decode per event
                old_node = res.node_of.get(key, _NO_NODE)
                # The new version's node from the stored bytes, the object decoded only for a
                # watcher that needs it: a follower holds the agents' watches of about half of
                # the nodes, and nothing there watches unbound pods.
                new: Any = _UNDECODED if put else None
                if not put:
                    new_node = _NO_NODE
                elif old_node and ev.prev_kv is not None and _node_needle(old_node) in ev.kv.value:
                    # A bound pod's update (its status, mostly): the registry never changes a
                    # set spec.nodeName, and the stored bytes still hold it.
                    new_node = old_node
                else:
                    # A create (unbound, mostly) or a binding.
                    stored = _stored_node(ev.kv.value)
                    if stored is None:
                        new = decode(ev.kv)
                        stored = _node_of(new)
                    new_node = stored
                if old_node != new_node or not put:
                    bucket = res.by_node.get(old_node)
                    if bucket is not None:
                        bucket.discard(key)
                if put:
                    res.by_node.setdefault(new_node, set()).add(key)
                    res.node_of[key] = new_node
                else:
                    res.node_of.pop(key, None)
                # The nodes ride along so that a node's watch resuming from the history only
                # decodes its own events.
                res.history.append((ev, old_node, new_node))
            else:
                # Not indexed (so no node watchers): the old version only if a watcher needs it.
                new = decode(ev.kv) if put else None
                new_node = _node_of(new)
                old_node = _NO_NODE
                res.history.append((ev, None, None))
            targets: list[_Watcher] = list(res.watchers) if res.watchers else []
            if res.node_watchers:
                targets.extend(res.node_watchers.get(new_node, ()))
                if old_node != new_node:
                    targets.extend(res.node_watchers.get(old_node, ()))
            for w in targets:
                if ev.revision < w.start or (w.ns_prefix is not None and not key.startswith(w.ns_prefix)):
                    continue
                if new is _UNDECODED:
                    new = decode(ev.kv)
                if w.node_only and (new is not None and new_node == w.node):
                    # (the common case, a pod of this node written: no need for the old version)
                    out: WatchEvent | None = watch_event(
                        "MODIFIED" if ev.prev_kv is not None and old_node == w.node else "ADDED",
                        new, key, ev.revision)
                elif new is not None and w.selection.everything:
                    out = watch_event("ADDED" if ev.prev_kv is None else "MODIFIED", new, key, ev.revision)
                else:
                    if old is _UNDECODED:
                        old = decode(ev.prev_kv)
                    out = event_for(ev, w.selection, new, old)
                if out is not None:
                    self._deliver(res, w, out)
        if batch:
            self.revision = max(self.revision, batch[-1].revision)
        self._notify()

    def _deliver(self, res: _Resource, w: _Watcher, event: WatchEvent) -> None:
        w.buffer.append(event)
        if len(w.buffer) > MAX_PENDING:
            w.buffer = []
            w.error = errors.expired("the watch fell too far behind; re-list")
            self._unregister(res, w)
        w.wakeup.set()

    # ------------------------------------------------------------------ registration

    def _register(self, res: _Resource, w: _Watcher) -> None:
        if w.node is None:
            res.watchers.add(w)
        else:
            res.node_watchers.setdefault(w.node, set()).add(w)

    def _unregister(self, res: _Resource, w: _Watcher) -> None:
        if w.node is None:
            res.watchers.discard(w)
            return
        bucket = res.node_watchers.get(w.node)
        if bucket is not None:
            bucket.discard(w)
            if not bucket:
                del res.node_watchers[w.node]

    async def _build_index(self, res: _Resource) -> None:
        decode = self.registry._decode  # (not the shared cache: only the node is kept)
        by_node: dict[str, set[str]] = {}
        node_of: dict[str, str] = {}
        for n, (key, kv) in enumerate(list(res.kvs.items()), 1):
            node = node_of[key] = _node_of(decode(kv))
            by_node.setdefault(node, set()).add(key)
            if n % INDEX_CHUNK == 0:
                await trio.lowlevel.checkpoint()
        res.by_node, res.node_of = by_node, node_of

    def _index(self, res: _Resource) -> dict[str, set[str]]:
        if res.by_node is None:
            decode = self.registry._decode_shared
            by_node: dict[str, set[str]] = {}
            node_of: dict[str, str] = {}
            for key, kv in res.kvs.items():
                node = node_of[key] = _node_of(decode(kv))
                by_node.setdefault(node, set()).add(key)
            res.by_node, res.node_of = by_node, node_of
        return res.by_node

    @staticmethod
    def indexed_node(rtype: Any, selection: _Selection) -> str | None:
        if rtype.plural != "pods" or selection.fields is None:
            return None
        return selection.fields.exact(NODE_FIELD)

    # ------------------------------------------------------------------ reads

    def count(self, plural: str) -> int:
        """How many objects of a resource the cache holds."""
        res = self._resources.get(plural)
        return len(res.kvs) if res is not None else 0

    async def wait_for(self, revision: int) -> bool:
        """Wait until the cache reflects ``revision``; False if it did not in time."""
        if self.ready and self.revision < revision:
            # The store may announce what it applied a few ms late (a RaftStore batches its
            # wake-ups of this thread); this reader waits for it now.
            wake = getattr(self.store, "wake_watchers_now", None)
            if wake is not None:
                wake()
        with trio.move_on_after(CATCH_UP_SECONDS):
            while self.ready and self.revision < revision:
                await self._progress.wait()
        return self.ready and self.revision >= revision

    def snapshot(
        self, rtype: Any, namespace: str | None, selection: _Selection, limit: int = 0
    ) -> tuple[list[KeyValue], int]:
        """The matching key-values in key order at the cache's revision (no await: consistent);
        with ``limit``, at most ``limit + 1`` of them (one more tells that more remain)."""
        res = self._resources[rtype.plural]
        prefix = self.registry.prefix(rtype, namespace)
        node = self.indexed_node(rtype, selection)
        if node is not None:
            keys = sorted(k for k in self._index(res).get(node, ()) if k.startswith(prefix))
        elif prefix == res.prefix:
            keys = res.keys
        else:
            keys = res.keys.irange(prefix, prefix + "\uffff")
        kvs_of = res.kvs
        if selection.everything:
            return [kvs_of[k] for k in (islice(keys, limit + 1) if limit else keys)], self.revision
        decode = self.registry._decode_shared
        kvs = []
        for k in keys:
            kv = kvs_of[k]
            if selection.may_match(kv.value) and selection.matches(decode(kv)):
                kvs.append(kv)
                if limit and len(kvs) > limit:
                    break
        return kvs, self.revision

    def snapshot_at(
        self, rtype: Any, namespace: str | None, selection: _Selection, limit: int, revision: int, start_after: str
    ) -> list[KeyValue] | None:
        """:meth:`snapshot` as of an older ``revision`` (a continue page), after ``start_after``;
        None if the cache has not reached ``revision`` or its history no longer reaches back to it.

        The present with every change since ``revision`` undone (see :mod:`controlplane._asof`):
        costs the events since ``revision`` plus the page, no await (consistent)."""
        res = self._resources[rtype.plural]
        if revision > self.revision or not res.replays_from(revision + 1):
            return None
        prefix = self.registry.prefix(rtype, namespace)
        recent = []
        for entry in reversed(res.history):
            if entry[0].revision <= revision:
                break
            recent.append(entry[0])
        changed = ChangedKeys(prefix, start_after)
        changed.record(reversed(recent))
        node = self.indexed_node(rtype, selection)
        if node is not None:
            # (the index is the present: right for the unchanged keys; changed ones are in ``changed``)
            keys: Any = sorted(k for k in self._index(res).get(node, ()) if k > start_after and k.startswith(prefix))
        else:
            keys = res.keys.irange(start_after, prefix + "\uffff", inclusive=(False, True))
        kvs_of = res.kvs
        decode = self.registry._decode_shared
        everything = selection.everything
        out = []
        for kv in changed.merged((kvs_of[k] for k in keys), start_after, None):
            if everything or (selection.may_match(kv.value) and selection.matches(decode(kv))):
                out.append(kv)
                if limit and len(out) > limit:
                    break
        return out

    def watch(
        self,
        rtype: Any,
        namespace: str | None,
        selection: _Selection,
        start: int,
        initial: list[WatchEvent],
        on_progress: Callable[[int], None] | None,
        *,
        from_state: bool = False,
    ) -> AsyncIterator[list[WatchEvent]] | None:
        """Events from revision ``start`` on, after ``initial``; None if the cache's history
        does not reach back to ``start`` (the caller asks the store). ``from_state``: the
        watch began with the state at ``start - 1`` (``initial``)."""
        res = self._resources[rtype.plural]
        if start <= self.revision and not res.replays_from(start):
            return None
        prefix = self.registry.prefix(rtype, namespace)
        ns_prefix = prefix if prefix != res.prefix else None
        node = self.indexed_node(rtype, selection)
        if node is not None:
            self._index(res)
        w = _Watcher(ns_prefix, selection, node, start)
        w.buffer.extend(initial)
        if start <= self.revision:
            w.buffer.extend(self._replay(res, start, ns_prefix, node, selection))
        self._register(res, w)
        return self._stream(res, w, on_progress, start - 1 if from_state else None)

    def _replay(
        self, res: _Resource, start: int, ns_prefix: str | None, node: str | None, selection: _Selection
    ) -> list[WatchEvent]:
        # Newest first until ``start``: a resuming watch usually wants only the last few.
        recent = []
        for entry in reversed(res.history):
            if entry[0].revision < start:
                break
            recent.append(entry)
        decode = self.registry._decode_shared
        out = []
        for ev, old_node, new_node in reversed(recent):
            if ns_prefix is not None and not ev.kv.key.startswith(ns_prefix):
                continue
            if node is not None and old_node is not None and node != old_node and node != new_node:
                continue  # (nodes known at apply time: no decode for other nodes' events)
            new = decode(ev.kv) if ev.type == "PUT" else None
            old = decode(ev.prev_kv) if ev.prev_kv is not None else None
            if node is not None and node != _node_of(new) and node != _node_of(old):
                continue
            converted = self.registry._event_for(ev, selection, new, old)
            if converted is not None:
                out.append(converted)
        return out

    async def _stream(
        self, res: _Resource, w: _Watcher, on_progress: Callable[[int], None] | None, seen: int | None
    ) -> AsyncIterator[list[WatchEvent]]:
        try:
            if seen is not None and on_progress is not None and not w.buffer:
                on_progress(seen)  # an empty initial state: the watch has seen everything so far
            while True:
                if w.buffer:
                    batch, w.buffer = w.buffer, []
                    yield batch
                    if on_progress is not None and not w.buffer:
                        on_progress(max(self.revision, batch[-1].revision))
                    continue
                if w.error is not None:
                    raise w.error
                w.wakeup = trio.Event()
                await w.wakeup.wait()
        finally:
            self._unregister(res, w)
