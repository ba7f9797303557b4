"""The object store layer: Kubernetes API semantics over the replicated key-value store.

Everything that writes API objects goes through :class:`Registry` — the HTTP API server, and
in-process the scheduler and the controllers — so defaulting, validation, optimistic
concurrency, graceful deletion and finalizers are applied in one place.

Layout: ``/registry/<plural>/<namespace>/<name>`` (cluster-scoped ``/registry/<plural>/<name>``),
values are msgpack-encoded objects *without* ``metadata.resourceVersion``: the version is the
key's ``mod_revision``, which is only known after the commit, and is filled in on every read.

Every write is a store transaction guarded by a compare on the key (``exists == False`` for a
create, ``mod_revision == <read revision>`` for an update or delete), so two writers can never
both win, and a deposed leader's late write fails instead of clobbering.

Deletion (what the garbage-collector and namespace controllers can rely on):

- Pods bound to a node with a grace period > 0 are only marked: ``deletionTimestamp`` (now +
  grace) and ``deletionGracePeriodSeconds``; the node agent removes them with
  ``grace_period_seconds=0`` once the containers are gone. Unbound or finished pods go at once.
- Objects with ``metadata.finalizers`` get ``deletionTimestamp`` and stay until an update removes
  the last finalizer (then they are deleted by that update).
- ``propagation_policy``: ``Foreground`` adds the ``foregroundDeletion`` finalizer, ``Orphan``
  the ``orphan`` finalizer (the GC controller orphans the dependents, then removes it);
  ``Background`` (the default) deletes the owner now and leaves dependents to the GC controller,
  which deletes objects whose ``ownerReferences`` point at a missing owner.
- Namespaces are marked ``Terminating``; :meth:`Registry.finalize_namespace` deletes their
  contents and removes the namespace once empty (the delete call runs it once itself).
"""

from __future__ import annotations

import base64
import binascii
import builtins
import json
import os
import string
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import trio

from raftstore import Compacted, Compare, InvalidCommand, KeyValue, Op, StoreUnavailable

from . import _allocators, errors, kinds
from ._asof import store_page
from ._sharing import share
from ._watchcache import WatchCache
from .codec import decode_object, encode_object
from .errors import ApiError
from .selectors import FieldSelector, LabelSelector, SelectorError

__all__ = ["Registry", "WatchEvent", "resolve_resource"]


class _RandomPool:
    """UIDs and generated name suffixes from the OS's CSPRNG, read in blocks: uuid.uuid4 and
    secrets.choice make a getrandom call per UID / per character (~2 % of a loaded leader's
    event loop creating pods and events, py-spy); the bytes are the same quality."""

    _BLOCK = 4096  # bytes per getrandom call: 256 UIDs

    def __init__(self) -> None:
        self._buf = b""
        self._pos = 0

    def _take(self, n: int) -> bytes:
        if self._pos + n > len(self._buf):
            self._buf, self._pos = os.urandom(self._BLOCK), 0
        out = self._buf[self._pos:self._pos + n]
        self._pos += n
        return out

    def uid(self) -> str:
        return str(uuid.UUID(bytes=self._take(16), version=4))

    def suffix(self, length: int = 5) -> str:
        """``length`` characters of _GENERATE_ALPHABET, uniformly (bytes >= 252 are skipped)."""
        out: list[str] = []
        while len(out) < length:
            for b in self._take(length):
                if b < 252 and len(out) < length:  # 252 = 7 * 36: no bias
                    out.append(_GENERATE_ALPHABET[b % 36])
        return "".join(out)


_random = _RandomPool()
# a forked child (the store's snapshot writer) must never hand out its parent's buffered bytes
os.register_at_fork(after_in_child=lambda: _random.__init__())

# Attempts of a read-modify-write whose compare lost a race with another writer (unconditional
# updates and patches retry; a request that carried a resourceVersion gets 409 at once).
_RETRIES = 8
# generateName collisions: 5 random characters from 36 make a collision very unlikely; a few
# retries make it practically impossible.
_GENERATE_RETRIES = 5
_GENERATE_ALPHABET = string.ascii_lowercase + string.digits
# Decoded objects shared by all watchers of the same event (an event is decoded once, not once
# per watcher). Watchers normally consume an event within one scheduling round, and the watch
# cache hands one decoded object to all of them, so a few hundred recent versions suffice. Kept
# small because every decoded object it keeps alive is walked by the garbage collector's young
# collections and promoted: with 2,048 (~30 MiB of decoded pods) a follower spent 0.8-1.0 s in
# collections (pauses up to 134 ms) during a 400-node/12,000-pod run, with 256 0.4-0.6 s (<= 104 ms).
_SHARED_CACHE_SIZE = 256
# Items of a batch write (bind_many, update_many, create_many) prepared between two yields to
# the event loop: a 256-pod binding batch decodes, changes and encodes each pod (~15-25 ms on
# a loaded leader) and held every API request of the master for as long.
_BATCH_YIELD_EVERY = 32
# Kinds whose status is owned by a controller or agent: a create starts from an empty status.
_RESET_STATUS_ON_CREATE = frozenset({"pods", "deployments", "replicasets"})
# Kinds that may be created by a PUT (Kubernetes: AllowCreateOnUpdate), used by heartbeats.
_CREATE_ON_UPDATE = frozenset({"endpoints", "events", "leases"})
# Pod grace period when neither the request nor the pod says (Kubernetes' default).
_DEFAULT_GRACE_SECONDS = 30
# Larger limits are the same as "everything" (and must stay a machine-size int for the store).
_MAX_LIMIT = 1 << 31
# Page size while filtering a selector-limited list: stores are read in chunks of this many keys.
_FILTER_CHUNK = 500
# Kubernetes' words for a continue token whose revision is no longer available, when the 410 carries
# a new token that continues the list at the latest revision (clients and users match them).
_CONTINUE_INCONSISTENT = (
    "The provided continue parameter is too old to display a consistent list result. "
    "You can start a new list without the continue parameter, or use the continue token in this "
    "response to retrieve the remainder of the results. Continuing with the provided token results "
    "in an inconsistent list - objects that were created, modified, or deleted between the time the "
    "first chunk was returned and now may show up in the list."
)
# Kubernetes' words for a list (without a continue token) whose revision was compacted while read.
_LIST_EXPIRED = "The resourceVersion for the provided list is too old."
# A continue token's revision meaning "the latest" (Kubernetes' inconsistent-continue token: any
# negative revision; -1 is what it issues. 0 stays invalid, as there, to tell a token without one).
_LATEST = -1


def _rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def resolve_resource(resource: Any) -> Any:
    """A ResourceType from itself, ``"pods"``, ``"deployments.apps"`` or ``"apps/v1/deployments"``."""
    if not isinstance(resource, str):
        return resource
    group = None
    plural = resource
    if "/" in resource:
        parts = resource.split("/")
        plural = parts[-1]
        group = parts[0] if len(parts) == 3 else ""
    elif "." in resource:
        plural, group = resource.split(".", 1)
    for rtype in kinds.RESOURCES:
        if rtype.plural == plural and (group is None or rtype.group == group):
            return rtype
    raise errors.not_found("resources", resource)


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One watch event. ``object`` may be shared between watchers: never mutate it."""

    type: str  # ADDED | MODIFIED | DELETED
    object: dict[str, Any]
    key: str
    revision: int


def _spec_part(obj: dict[str, Any]) -> dict[str, Any]:
    # What counts as "spec" for metadata.generation: everything but metadata and status.
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def _without_rv(obj: dict[str, Any]) -> dict[str, Any]:
    meta = dict(obj.get("metadata") or {})
    meta.pop("resourceVersion", None)
    return {**obj, "metadata": meta}


def _causes(field_errors: Iterable[Any]) -> list[dict[str, Any]]:
    causes = []
    for fe in field_errors:
        causes.append({"reason": fe.type, "message": fe.message, "field": fe.field})
    return causes


def _parse_rv(value: Any, what: str = "resourceVersion") -> int:
    try:
        rv = int(value)
    except (TypeError, ValueError):
        raise errors.bad_request(f"invalid {what}: {value!r} is not a resource version") from None
    if rv < 0:
        raise errors.bad_request(f"invalid {what}: {value!r} is not a resource version")
    return rv


# Field selector fields stored verbatim as a string in the object (so `field=value` matches only
# objects whose encoding contains the encoded value).
_VERBATIM_FIELDS = frozenset({"spec.nodeName"})


class _Selection:
    """Label and field selectors parsed once per request."""

    __slots__ = ("labels", "fields", "needles")

    def __init__(self, rtype: Any, label_selector: str | None, field_selector: str | None) -> None:
        try:
            self.labels = LabelSelector.parse(label_selector) if label_selector else None
            self.fields = FieldSelector.parse(field_selector, rtype) if field_selector else None
        except SelectorError as exc:
            raise errors.bad_request(f"unable to parse requirement: {exc}") from None
        if self.labels is not None and self.labels.empty:
            self.labels = None
        if self.fields is not None and self.fields.empty:
            self.fields = None
        # Encoded values a stored object must contain to match (a node's agent watches its
        # pods with spec.nodeName=NODE): an event whose bytes lack them is skipped without
        # decoding, so 1,000 agents' watches do not each decode every pod event.
        self.needles: tuple[bytes, ...] = ()
        if self.fields is not None:
            # (msgpack encodes a lone string the same way as inside an object)
            self.needles = tuple(encode_object(v) for f, op, v in self.fields.terms  # type: ignore[arg-type]
                                 if op == "=" and v and f in _VERBATIM_FIELDS)

    def may_match(self, value: bytes) -> bool:
        """False only if the stored form cannot match (a needle is missing from it)."""
        return all(n in value for n in self.needles)

    @property
    def everything(self) -> bool:
        return self.labels is None and self.fields is None

    def matches(self, obj: dict[str, Any]) -> bool:
        if self.labels is not None and not self.labels.matches((obj.get("metadata") or {}).get("labels") or {}):
            return False
        return self.fields is None or self.fields.matches(obj)


class Registry:
    """Kubernetes object semantics over a :class:`raftstore.Store`.

    Reads: ``get``, ``list`` (selectors, limit/continue, resourceVersion rules), ``watch``
    (batches of :class:`WatchEvent`), ``get_kv``/``list_kvs`` (stored form). Writes: ``create``,
    ``update`` / ``update_status``, ``patch`` (merge/json/strategic; ``subresource="status"`` or
    ``"scale"``), ``get_scale``/``update_scale``, ``delete`` (preconditions, grace, propagation),
    ``deletecollection``, ``bind``/``bind_many`` and ``update_many`` (one store round for many
    objects), ``finalize_namespace``, ``ensure_namespaces``.

    ``resource`` arguments accept a ResourceType or a name (``"pods"``, ``"deployments.apps"``).
    Every method raises :class:`controlplane.errors.ApiError` for failures a client can act on;
    a store that has no quorum surfaces as 503 ServiceUnavailable (504 Timeout if the write may
    have been applied).
    """

    def __init__(
        self,
        store: Any,
        *,
        clock: Callable[[], float] = time.time,
        commit_observer: Callable[[float], None] | None = None,
        service_network: _allocators.ServiceNetwork | None = None,
    ) -> None:
        self.store = store
        # the range used until the cluster's own setting (written by the first leader) is seen
        self._network_default = service_network or _allocators.ServiceNetwork.parse(None)
        self._network_stored: _allocators.ServiceNetwork | None = None
        self._clock = clock
        #: called with the duration of every store write (the API server's commit histogram)
        self.commit_observer = commit_observer
        #: called with the duration of every linearizable read point (ReadIndex or a barrier
        #: through the log, with a single get: its local read): how much of a read is Raft
        self.barrier_observer: Callable[[float], None] | None = None
        self._shared: OrderedDict[tuple[str, int], dict[str, Any]] = OrderedDict()
        #: set while :meth:`serve_watch_cache` runs: watches and lists are served from it
        self.watch_cache: WatchCache | None = None

    async def serve_watch_cache(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the watch cache (see :mod:`controlplane._watchcache`) until cancelled or the
        store closes; ``started`` once it is filled. Without it every watch and list reads
        the store directly (same answers, more work per watcher)."""
        cache = WatchCache(self)
        self.watch_cache = cache
        try:
            await cache.serve(task_status=task_status)
        finally:
            if self.watch_cache is cache:
                self.watch_cache = None

    def _ready_cache(self) -> WatchCache | None:
        cache = self.watch_cache
        return cache if cache is not None and cache.ready else None

    async def _cache_target(self, resource_version: str | None, linearizable: bool) -> int | None:
        """The revision a read from the cache must reflect (None: any, resourceVersion "0")."""
        if linearizable:
            return int(await self._read_point(self.store.barrier))
        if resource_version in (None, "", "0"):
            return None
        return _parse_rv(resource_version)

    def watch_revision(self) -> int:
        """The newest revision every watch of this registry has been handed (bookmarks)."""
        cache = self._ready_cache()
        return cache.revision if cache is not None else int(self.store.revision)

    # ---------------------------------------------------------------- keys and reads

    @staticmethod
    def key(rtype: Any, namespace: str | None, name: str) -> str:
        if rtype.namespaced:
            return f"/registry/{rtype.plural}/{namespace}/{name}"
        return f"/registry/{rtype.plural}/{name}"

    @staticmethod
    def prefix(rtype: Any, namespace: str | None) -> str:
        if rtype.namespaced and namespace:
            return f"/registry/{rtype.plural}/{namespace}/"
        return f"/registry/{rtype.plural}/"

    @staticmethod
    def decode(kv: KeyValue) -> dict[str, Any]:
        """A fresh object (``metadata.resourceVersion`` filled in) from a stored key-value."""
        obj = decode_object(kv.value)
        obj["metadata"]["resourceVersion"] = str(kv.mod_revision)
        return obj

    @staticmethod
    def _decode(kv: KeyValue) -> dict[str, Any]:
        obj = decode_object(kv.value)
        obj["metadata"]["resourceVersion"] = str(kv.mod_revision)
        return obj

    @staticmethod
    def decode_cached(kv: KeyValue) -> dict[str, Any]:
        """:meth:`decode` for objects kept by caches (informers, watch events): subtrees and
        short strings repeated across objects (a ReplicaSet's labels, owner reference and
        containers in each of its pods) are shared (~8.2 -> ~2.9 KB per pod), so the object
        and its parts must never be mutated (copy first). Only for objects kept long (the
        sharing table costs memory and CPU: watch events that are encoded and dropped skip it)."""
        return share(Registry._decode(kv))

    def _decode_shared(self, kv: KeyValue) -> dict[str, Any]:
        cache_key = (kv.key, kv.mod_revision)
        obj = self._shared.get(cache_key)
        if obj is None:
            obj = self._decode(kv)
            self._shared[cache_key] = obj
            if len(self._shared) > _SHARED_CACHE_SIZE:
                self._shared.popitem(last=False)
        return obj

    async def _read_point(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """``fn`` (a barrier or a linearizable read), timed for ``barrier_observer``."""
        started = time.perf_counter()
        try:
            return await self._store_call(fn, *args, **kw)
        finally:
            if self.barrier_observer is not None:
                self.barrier_observer(time.perf_counter() - started)

    async def _store_call(self, fn: Callable[..., Any], *args: Any, write: bool = False, **kw: Any) -> Any:
        started = time.perf_counter()
        try:
            return await fn(*args, **kw)
        except InvalidCommand as exc:
            raise errors.bad_request(f"the request cannot be stored: {exc}") from None
        except StoreUnavailable as exc:
            if getattr(exc, "maybe_committed", False):
                raise ApiError(504, "Timeout", f"the write may or may not have been applied: {exc}") from None
            raise errors.service_unavailable(f"the store is unavailable: {exc}") from None
        finally:
            if write and self.commit_observer is not None:
                self.commit_observer(time.perf_counter() - started)

    async def _read_mode(self, resource_version: str | None, match: str | None = None) -> bool:
        """Whether a read must be linearizable, per Kubernetes' resourceVersion rules."""
        if resource_version in (None, ""):
            if match:
                raise errors.bad_request("resourceVersionMatch is forbidden unless resourceVersion is provided")
            return True
        rv = _parse_rv(resource_version)
        if match not in (None, "", "NotOlderThan", "Exact"):
            raise errors.bad_request(f"resourceVersionMatch: unsupported value {match!r}: supported values: \"Exact\", \"NotOlderThan\"")
        if rv == 0:
            if match == "Exact":
                raise errors.bad_request("resourceVersionMatch \"Exact\" is forbidden for resourceVersion \"0\"")
            return False  # "any version": the local replica answers
        if self.store.revision >= rv and match != "Exact":
            return False
        current = await self._read_point(self.store.barrier)
        if current < rv:
            raise ApiError(
                504, "Timeout", f"Too large resource version: {rv}, current: {current}",
                {"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                 "retryAfterSeconds": 1},
            )
        if match == "Exact" and current != rv:
            raise errors.expired(f"too old resource version: {rv} ({current})")
        return False

    async def get(
        self, resource: Any, namespace: str | None, name: str, *, resource_version: str | None = None
    ) -> dict[str, Any]:
        return self._decode(await self.get_kv(resource, namespace, name, resource_version=resource_version))

    async def get_kv(
        self, resource: Any, namespace: str | None, name: str, *, resource_version: str | None = None
    ) -> KeyValue:
        """:meth:`get` as the stored key-value (decode with :meth:`decode`)."""
        rtype = resolve_resource(resource)
        linearizable = await self._read_mode(resource_version)
        call = self._read_point if linearizable else self._store_call
        kv = await call(self.store.get, self.key(rtype, namespace, name), linearizable=linearizable)
        if kv is None:
            raise errors.not_found(rtype.plural, name, rtype.group)
        return kv

    async def list(
        self,
        resource: Any,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int = 0,
        continue_token: str | None = None,
        resource_version: str | None = None,
        resource_version_match: str | None = None,
    ) -> dict[str, Any]:
        """A ``<Kind>List``; with ``limit``, ``metadata.continue`` resumes after the last item.

        Every page shows the objects as they were at the first page's resourceVersion (the token
        carries it; later pages undo the changes made since, from the watch cache's or the
        store's history), so the pages together are one consistent list and a watch from its
        resourceVersion sees every later change. 410 Expired when that history no longer reaches
        back to the token's revision: start a new list, or (as Kubernetes) continue with the
        Status' ``metadata.continue``, which lists the keys after the last one returned as they
        are now (the "inconsistent" rest of the list, at a new resourceVersion that its later
        pages keep).
        """
        header, kvs = await self.list_kvs(
            resource, namespace, label_selector=label_selector, field_selector=field_selector,
            limit=limit, continue_token=continue_token, resource_version=resource_version,
            resource_version_match=resource_version_match,
        )
        header["items"] = [self._decode(kv) for kv in kvs]
        return header

    async def list_kvs(
        self,
        resource: Any,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int = 0,
        continue_token: str | None = None,
        resource_version: str | None = None,
        resource_version_match: str | None = None,
    ) -> tuple[dict[str, Any], builtins.list[KeyValue]]:
        """:meth:`list` as (the list without ``items``, the stored key-values of the items).

        For callers that encode items themselves (the API server caches each item's JSON).
        """
        rtype = resolve_resource(resource)
        selection = _Selection(rtype, label_selector, field_selector)
        if limit < 0:
            raise errors.bad_request("limit must be a non-negative integer")
        limit = min(limit, _MAX_LIMIT)
        prefix = self.prefix(rtype, namespace)
        if continue_token:
            # (the order of Kubernetes' checks: list options, then the token, then the storage's rule)
            if resource_version_match:
                raise errors.bad_request("resourceVersionMatch is forbidden when continue is provided")
            revision, start_after = self._decode_continue(continue_token, prefix)
            if resource_version not in (None, "", "0"):
                raise errors.bad_request("specifying resource version is not allowed when using continue")
            if revision < 0:
                return await self._page_now(rtype, namespace, selection, limit, start_after)
            kvs = await self._page_at(rtype, namespace, selection, limit, revision, start_after)
            return self._page(rtype, revision, kvs, limit)
        linearizable = await self._read_mode(resource_version, resource_version_match)
        cache = self._ready_cache()
        if cache is not None and resource_version_match != "Exact":
            target = await self._cache_target(resource_version, linearizable)
            if target is None or await cache.wait_for(target):
                kvs, revision = cache.snapshot(rtype, namespace, selection, limit)
                return self._page(rtype, revision, kvs, limit)
        return await self._store_page_now(rtype, prefix, selection, limit, linearizable, None)

    async def _store_page_now(
        self, rtype: Any, prefix: str, selection: _Selection, limit: int, linearizable: bool, start_after: str | None
    ) -> tuple[dict[str, Any], builtins.list[KeyValue]]:
        """A page of the keys after ``start_after`` (None: from the first) as the store has them now."""
        rr = await self._store_call(
            self.store.range, prefix, limit=self._chunk(selection, limit), start_after=start_after,
            linearizable=linearizable,
        )
        accept = self._accepts(selection)
        items: builtins.list[KeyValue] = []
        for kv in rr.kvs:
            if accept(kv):
                items.append(kv)
                if limit and len(items) > limit:
                    break
        else:
            if rr.more and rr.kvs:
                # The rest of the page (a selector skipped keys) at the same revision.
                items += await self._store_page_at(
                    prefix, selection, limit + 1 - len(items), rr.revision, rr.kvs[-1].key, start_after
                )
        return self._page(rtype, rr.revision, items, limit)

    async def _page_now(
        self, rtype: Any, namespace: str | None, selection: _Selection, limit: int, start_after: str
    ) -> tuple[dict[str, Any], builtins.list[KeyValue]]:
        """The page after ``start_after`` of an inconsistent-continue token: read as of now, as a
        list without resourceVersion is (linearizable), and its resourceVersion is that read's
        revision, which the next page's token carries (the rest of the list is consistent again)."""
        cache = self._ready_cache()
        if cache is not None:
            target = await self._cache_target(None, True)
            if target is None or await cache.wait_for(target):
                revision = cache.revision
                # (the cache's own revision: nothing to undo, no await between the two reads)
                kvs = cache.snapshot_at(rtype, namespace, selection, limit, revision, start_after)
                if kvs is not None:
                    return self._page(rtype, revision, kvs, limit)
        return await self._store_page_now(rtype, self.prefix(rtype, namespace), selection, limit, True, start_after)

    @staticmethod
    def _chunk(selection: _Selection, limit: int) -> int:
        """Keys per store range for a page of ``limit`` (one more tells that more remain)."""
        if not limit:
            return 0
        return limit + 1 if selection.everything else max(limit + 1, _FILTER_CHUNK)

    def _accepts(self, selection: _Selection) -> Callable[[KeyValue], bool]:
        if selection.everything:
            return lambda kv: True
        decode = self._decode_shared
        return lambda kv: selection.may_match(kv.value) and selection.matches(decode(kv))

    async def _page_at(
        self, rtype: Any, namespace: str | None, selection: _Selection, limit: int, revision: int, start_after: str
    ) -> builtins.list[KeyValue]:
        """Up to ``limit + 1`` matching key-values after ``start_after`` as they were at ``revision``
        (a continue page: every page of a list shows the first page's state, as Kubernetes' do)."""
        if revision > self.store.revision:
            # Issued by another master, or this replica is behind: wait until it has the revision.
            current = await self._read_point(self.store.barrier)
            if revision > current:
                raise errors.bad_request(
                    f"continue key is not valid: its resource version {revision} is newer than the store's ({current})"
                )
        cache = self._ready_cache()
        if cache is not None and await cache.wait_for(revision):
            kvs = cache.snapshot_at(rtype, namespace, selection, limit, revision, start_after)
            if kvs is not None:
                return kvs
        return await self._store_page_at(self.prefix(rtype, namespace), selection, limit + 1 if limit else 0,
                                         revision, start_after, start_after)

    async def _store_page_at(
        self, prefix: str, selection: _Selection, want: int, revision: int, start_after: str,
        continued_after: str | None,
    ) -> builtins.list[KeyValue]:
        """Up to ``want`` (0: all) matching key-values after ``start_after`` at ``revision``, from
        the store's history; 410 Expired if the history no longer reaches back to ``revision``.
        ``continued_after``: the key the request's continue token resumes after (None: no token)."""
        try:
            kvs: builtins.list[KeyValue] = await self._store_call(
                store_page, self.store, prefix, start_after, revision,
                want=want, chunk=self._chunk(selection, max(want - 1, 1)) if want else 0,
                accept=self._accepts(selection),
            )
        except Compacted:
            if continued_after is None:
                raise errors.expired(_LIST_EXPIRED) from None
            # Kubernetes' answer to a compacted continue revision: 410 with a token that lists
            # the keys after the same one at the latest revision, for a client that accepts an
            # inconsistent list (one that does not, starts a new list).
            token = self._encode_continue(_LATEST, continued_after)
            raise errors.expired(_CONTINUE_INCONSISTENT, continue_token=token) from None
        return kvs

    def _page(
        self, rtype: Any, revision: int, kvs: builtins.list[KeyValue], limit: int
    ) -> tuple[dict[str, Any], builtins.list[KeyValue]]:
        # ``kvs`` holds one item beyond ``limit`` when more remain
        if limit and len(kvs) > limit:
            kvs = kvs[:limit]
            return self._list_header(rtype, revision, kvs[-1].key), kvs
        return self._list_header(rtype, revision, None), kvs

    def _list_header(self, rtype: Any, revision: int, continue_after: str | None) -> dict[str, Any]:
        """A list without its items at ``revision``; a continue token when more follow ``continue_after``."""
        meta: dict[str, Any] = {"resourceVersion": str(revision)}
        if continue_after is not None:
            meta["continue"] = self._encode_continue(revision, continue_after)
        return {
            "kind": rtype.list_kind,
            "apiVersion": f"{rtype.group}/{rtype.version}" if rtype.group else rtype.version,
            "metadata": meta,
        }

    @staticmethod
    def _encode_continue(revision: int, last_key: str) -> str:
        raw = json.dumps({"v": "meta.k8s.io/v1", "rv": revision, "start": last_key}, separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    def _decode_continue(self, token: str, prefix: str) -> tuple[int, str]:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            data = json.loads(raw)
            revision, start = int(data["rv"]), data["start"]
            if data.get("v") != "meta.k8s.io/v1" or not isinstance(start, str):
                raise ValueError("unknown continue token version")
        except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
            raise errors.bad_request("continue key is not valid: the continue token is malformed") from None
        if revision == 0:
            # (Kubernetes' check: 0 is no revision; a negative one is the latest)
            raise errors.bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
        if not start.startswith(prefix):
            raise errors.bad_request("continue key is not valid: it was issued for a different list")
        # (whether the history still reaches back to the revision is known where the page is read)
        return revision, start

    # ---------------------------------------------------------------- create

    def _check_identity(self, rtype: Any, namespace: str | None, obj: Any) -> dict[str, Any]:
        if not isinstance(obj, dict):
            raise errors.bad_request(f"the body must be a {rtype.kind} object")
        api_version = f"{rtype.group}/{rtype.version}" if rtype.group else rtype.version
        if obj.get("kind") not in (None, "", rtype.kind):
            raise errors.bad_request(
                f"the kind in the body ({obj.get('kind')}) does not match the resource {rtype.plural} ({rtype.kind})"
            )
        if obj.get("apiVersion") not in (None, "", api_version):
            raise errors.bad_request(
                f"the API version in the data ({obj.get('apiVersion')}) does not match the expected API version ({api_version})"
            )
        obj["kind"] = rtype.kind
        obj["apiVersion"] = api_version
        meta = obj.get("metadata")
        if meta is None:
            meta = obj["metadata"] = {}
        if not isinstance(meta, dict):
            raise errors.bad_request("metadata must be an object")
        if rtype.namespaced:
            if namespace is None:  # in-process callers may leave the namespace to the object
                namespace = meta.get("namespace") or None
            if meta.get("namespace") in (None, ""):
                meta["namespace"] = namespace
            elif meta["namespace"] != namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
        else:
            meta.pop("namespace", None)
        return meta

    def _default(self, rtype: Any, obj: dict[str, Any]) -> None:
        try:
            rtype.default(obj)
        except (TypeError, AttributeError, ValueError, KeyError) as exc:
            # defaulting assumes the right shapes; a malformed object gets validation's verdict
            problems = rtype.validate(obj, None)
            if problems:
                name = (obj.get("metadata") or {}).get("name") or ""
                raise errors.invalid(rtype.kind, name, _causes(problems), rtype.group) from None
            raise errors.bad_request(f"the {rtype.kind} could not be defaulted: {exc}") from None

    def _validate(self, rtype: Any, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        problems = rtype.validate(obj, old)
        if problems:
            name = (obj.get("metadata") or {}).get("name") or ""
            raise errors.invalid(rtype.kind, name, _causes(problems), rtype.group)

    async def _namespace_guard(self, rtype: Any, namespace: str | None) -> Compare | None:
        """The namespace must exist and not be terminating; returns the txn compare pinning it."""
        if not rtype.namespaced:
            return None
        if not namespace:
            raise errors.bad_request(f"{rtype.plural} are namespaced: a namespace is required")
        ns_key = f"/registry/namespaces/{namespace}"
        kv = await self._store_call(self.store.get, ns_key, linearizable=False)
        if kv is None:
            kv = await self._store_call(self.store.get, ns_key)  # maybe just created elsewhere
        if kv is None:
            raise errors.not_found("namespaces", namespace)
        ns = decode_object(kv.value)
        if (ns.get("metadata") or {}).get("deletionTimestamp") or (ns.get("status") or {}).get("phase") == "Terminating":
            raise errors.forbidden(
                rtype.plural, "",
                f"unable to create new content in namespace {namespace} because it is being terminated",
                rtype.group,
            )
        return Compare.mod_revision(ns_key, "==", kv.mod_revision)

    async def service_network(self) -> _allocators.ServiceNetwork:
        """The cluster's service range: the stored setting (read once: it never changes), else
        this registry's default (a store nobody bootstrapped, e.g. in-process tests)."""
        if self._network_stored is None:
            kv = await self._store_call(self.store.get, _allocators.NETWORK_KEY)
            if kv is None:
                return self._network_default
            self._network_stored = _allocators.ServiceNetwork.decode(kv.value)
        return self._network_stored

    async def _taken_keys(self, prefix: str) -> set[str]:
        rr = await self._store_call(self.store.range, prefix, linearizable=False)
        return {kv.key for kv in rr.kvs}

    async def _allocation_plan(
        self, old: dict[str, Any] | None, new: dict[str, Any], avoid: set[str]
    ) -> _allocators.AllocationPlan:
        return await _allocators.plan_allocations(
            await self.service_network(), old, new, self._taken_keys, avoid)

    def _generate_name(self, base: str) -> str:
        return base + _random.suffix()

    def _prepare_create(self, rtype: Any, namespace: str | None, obj: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        """``obj`` made ready to store (identity, defaults, validation); (its metadata, its generateName)."""
        meta = self._check_identity(rtype, namespace, obj)
        generate = meta.get("generateName") if not meta.get("name") else None
        if generate is not None and not isinstance(generate, str):
            raise errors.invalid(rtype.kind, "", [{"reason": "FieldValueInvalid", "message": "Invalid value: must be a string", "field": "metadata.generateName"}], rtype.group)
        if not meta.get("name") and not generate:
            raise errors.invalid(
                rtype.kind, "",
                [{"reason": "FieldValueRequired", "message": "Required value: name or generateName is required", "field": "metadata.name"}],
                rtype.group,
            )
        now = self._clock()
        for key in ("resourceVersion", "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields"):
            meta.pop(key, None)
        meta["uid"] = _random.uid()
        meta["creationTimestamp"] = _rfc3339(now)
        meta["generation"] = 1
        if rtype.plural in _RESET_STATUS_ON_CREATE:
            obj["status"] = {}
        if generate:
            meta["name"] = self._generate_name(generate)
        self._default(rtype, obj)
        if rtype.plural == "pods":
            obj.setdefault("status", {}).setdefault("phase", "Pending")
        elif rtype.plural == "namespaces":
            obj["status"] = {"phase": "Active"}
        self._validate(rtype, obj, None)
        return meta, generate

    async def create_many(
        self, resource: Any, items: builtins.list[tuple[str | None, dict[str, Any]]]
    ) -> builtins.list[dict[str, Any] | ApiError]:
        """Create many named objects of one resource in ONE store round (one Raft entry): per
        item the stored object or an ApiError (409 AlreadyExists, 404 for a missing namespace,
        invalid). For kinds without allocations (not services) and without generateName retries:
        the leader's Event writes."""
        rtype = resolve_resource(resource)
        if rtype.plural == "services" and not rtype.group:
            raise ValueError("create_many does not allocate service addresses; use create")
        results: builtins.list[dict[str, Any] | ApiError | None] = [None] * len(items)
        txns: builtins.list[tuple[builtins.list[Compare], builtins.list[tuple], builtins.list[tuple]]] = []
        pending: builtins.list[tuple[int, dict[str, Any]]] = []
        guards: dict[str | None, Any] = {}
        for i, (namespace, obj) in enumerate(items):
            if i and i % _BATCH_YIELD_EVERY == 0:
                await trio.lowlevel.checkpoint()  # see _BATCH_YIELD_EVERY
            try:
                meta, _ = self._prepare_create(rtype, namespace, obj)
                ns = meta.get("namespace")
                if ns not in guards:
                    guards[ns] = await self._namespace_guard(rtype, ns)
                key = self.key(rtype, ns, meta["name"])
                compares = [Compare.absent(key)] + ([guards[ns]] if guards[ns] else [])
                txns.append((compares, [Op.put(key, encode_object(obj))], [Op.get(key)]))
                pending.append((i, obj))
            except ApiError as exc:
                results[i] = exc
        if txns:
            outcome = await self._store_call(self.store.txn_many, txns, write=True)
            for (i, obj), txn in zip(pending, outcome, strict=True):
                name = obj["metadata"]["name"]
                if txn.succeeded:
                    obj["metadata"]["resourceVersion"] = str(txn.revision)
                    results[i] = obj
                elif txn.results and txn.results[0] is not None:
                    results[i] = errors.already_exists(rtype.plural, name, rtype.group)
                else:  # the namespace changed (deleted or terminating) since it was checked
                    results[i] = errors.conflict(rtype.plural, name, errors.MODIFIED, rtype.group)
        return results  # type: ignore[return-value]

    async def create(
        self, resource: Any, namespace: str | None, obj: dict[str, Any], *, dry_run: bool = False
    ) -> dict[str, Any]:
        """Create ``obj``: defaulted, validated, 409 AlreadyExists if the name is taken."""
        rtype = resolve_resource(resource)
        meta, generate = self._prepare_create(rtype, namespace, obj)
        if dry_run:
            await self._namespace_guard(rtype, meta.get("namespace"))
            return obj
        services = rtype.plural == "services" and not rtype.group
        # what each allocation starts from (services only)
        requested_spec = encode_object(obj.get("spec") or {}) if services else b""
        avoid: set[str] = set()
        for attempt in range(_GENERATE_RETRIES + _RETRIES):
            ns_compare = await self._namespace_guard(rtype, meta.get("namespace"))
            key = self.key(rtype, meta.get("namespace"), meta["name"])
            compares = [Compare.absent(key)] + ([ns_compare] if ns_compare else [])
            plan = None
            if services:  # the VIP and node ports are taken in the same transaction
                obj["spec"] = decode_object(requested_spec)
                plan = await self._allocation_plan(None, obj, avoid)
                compares += plan.compares
            result = await self._store_call(
                self.store.txn, compares, [Op.put(key, encode_object(obj))] + (plan.ops if plan else []),
                [Op.get(key)] + (plan.failure_gets() if plan else []), write=True
            )
            if result.succeeded:
                meta["resourceVersion"] = str(result.revision)
                return obj
            if result.results and result.results[0] is not None:
                if generate and attempt < _GENERATE_RETRIES:
                    meta["name"] = self._generate_name(generate)
                    continue
                raise errors.already_exists(rtype.plural, meta["name"], rtype.group)
            if plan is not None:
                taken = plan.error_for(meta["name"], result.results[1:])
                if taken is not None:
                    raise taken
                avoid.update(k for k, kv in zip(plan.claimed, result.results[1:], strict=False) if kv is not None)
            # otherwise the namespace changed under us (or a picked value was just taken): again
        raise errors.conflict(rtype.plural, meta["name"], errors.MODIFIED, rtype.group)

    # ---------------------------------------------------------------- update and patch

    def _prepare_update(
        self, rtype: Any, old: dict[str, Any], new: Any, subresource: str | None
    ) -> dict[str, Any]:
        """The object to store for an update of ``old`` by ``new`` (Kubernetes' update strategy)."""
        old_meta = old["metadata"]
        namespace = old_meta.get("namespace")
        meta = self._check_identity(rtype, namespace, new)
        if meta.get("name") not in (None, "", old_meta["name"]):
            raise errors.bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the URL ({old_meta['name']})"
            )
        if meta.get("uid") not in (None, "", old_meta.get("uid")):
            # the caller edited another incarnation of this name (deleted and re-created since):
            # a status write too (an agent's patch names the pod's uid so that a late status
            # of a deleted pod never lands on its successor)
            raise errors.conflict(
                rtype.plural, old_meta["name"],
                f"Precondition failed: UID in precondition: {meta.get('uid')}, UID in object meta: {old_meta.get('uid')}",
                rtype.group,
            )
        if subresource == "status":
            # status writes change only status (and keep everything else as stored)
            result = {k: v for k, v in old.items() if k != "status"}
            result["metadata"] = dict(old_meta)
            if "status" in new:
                result["status"] = new["status"]
            self._validate(rtype, result, old)
            return result
        meta["name"] = old_meta["name"]
        for key in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"):
            if key in old_meta:
                meta[key] = old_meta[key]
            else:
                meta.pop(key, None)
        meta.pop("managedFields", None)
        meta.pop("selfLink", None)
        if "status" in getattr(rtype, "subresources", ()):
            if "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)
        self._default(rtype, new)
        if rtype.plural == "services" and not rtype.group:
            _allocators.carry_allocated(old, new)
        generation = old_meta.get("generation") or 1
        if _spec_part(new) != _spec_part(old):
            generation += 1
        meta["generation"] = generation
        if old_meta.get("deletionTimestamp"):
            added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
            if added:
                raise errors.forbidden(
                    rtype.plural, old_meta["name"],
                    f"no new finalizers can be added if the object is being deleted, found new finalizers {sorted(added)!r}",
                    rtype.group,
                )
        self._validate(rtype, new, old)
        return new

    @staticmethod
    def _deleted_by_update(obj: dict[str, Any]) -> bool:
        # Kubernetes: an update that removes the last finalizer of an object being deleted
        # deletes it, unless a graceful deletion (pods) is still pending.
        meta = obj["metadata"]
        return bool(
            meta.get("deletionTimestamp")
            and not meta.get("finalizers")
            and not meta.get("deletionGracePeriodSeconds")
        )

    async def _read_current(self, rtype: Any, key: str, linearizable: bool) -> KeyValue | None:
        """The stored version a write starts from. A local read is enough when the txn compares
        its mod_revision (a stale one just fails the compare), but "absent" must be confirmed
        linearizably: the object may have been created through another master a moment ago."""
        kv = await self._store_call(self.store.get, key, linearizable=linearizable)
        if kv is None and not linearizable:
            kv = await self._store_call(self.store.get, key, linearizable=True)
        return kv

    async def _update_with(
        self,
        rtype: Any,
        namespace: str | None,
        name: str,
        mutate: Callable[[dict[str, Any]], Any] | None,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        create_body: dict[str, Any] | None = None,
        replacement: bytes | None = None,
        mutate_keeps_current: bool = False,
        admit: Callable[[dict[str, Any] | None], None] | None = None,
    ) -> dict[str, Any]:
        """Read, ``mutate(current) -> desired``, prepare, compare-and-swap; retry lost races.
        Without ``mutate``, desired is the encoded ``replacement`` (PUT: no copy of the stored
        object to hand to a mutation). ``mutate`` gets an object of its own to change, or, with
        ``mutate_keeps_current`` (a mutation that changes nothing it is given, for a status
        write, which takes only ``status`` from desired), the decoded current object itself:
        one decode of the stored object per attempt instead of two.

        ``admit(current)`` (an authorizer's check of the stored object, e.g. a node writing
        only pods bound to it) runs on the version each attempt starts from, None if there is
        none, and raises the ApiError that refuses the write; a refusal on a possibly stale
        local copy is decided again on the latest version.

        A desired object carrying a resourceVersion different from the stored one is a 409 at
        once (the caller's precondition); without one, lost races are retried.
        """
        key = self.key(rtype, namespace, name)
        linearizable = False
        services = rtype.plural == "services" and not rtype.group and subresource is None
        avoid: set[str] = set()
        for _attempt in range(_RETRIES):
            was_linearizable = linearizable
            kv = await self._read_current(rtype, key, linearizable)
            linearizable = True  # a lost race means our local view was stale
            if kv is None:
                if admit is not None:
                    admit(None)  # (absent is read linearizably: _read_current)
                if create_body is not None:
                    return await self.create(rtype, namespace, create_body, dry_run=dry_run)
                raise errors.not_found(rtype.plural, name, rtype.group)
            current = self._decode(kv)
            try:
                if admit is not None:
                    admit(current)
                if mutate is None:
                    desired = decode_object(replacement)  # type: ignore[arg-type]
                else:
                    desired = mutate(current if mutate_keeps_current else self._decode(kv))
                if not isinstance(desired, dict):
                    raise errors.bad_request(f"the body must be a {rtype.kind} object")
                wanted_rv = (desired.get("metadata") or {}).get("resourceVersion") if isinstance(desired.get("metadata"), dict) else None
                if wanted_rv not in (None, ""):
                    if _parse_rv(wanted_rv, "metadata.resourceVersion") != kv.mod_revision:
                        raise errors.conflict(rtype.plural, name, errors.MODIFIED, rtype.group)
                result = self._prepare_update(rtype, current, desired, subresource)
            except ApiError:
                if not was_linearizable:
                    continue  # decided on a possibly stale local copy: decide on the latest
                raise
            result["metadata"].pop("resourceVersion", None)
            deleting = self._deleted_by_update(result)
            if not deleting and result == _without_rv(current):
                if not was_linearizable:
                    # "Nothing to change" compared with a possibly stale local copy: the latest
                    # version may differ (a follower that lags would drop the write).
                    continue
                return current  # no change: no write, same resourceVersion (as Kubernetes)
            if dry_run:
                result["metadata"]["resourceVersion"] = str(kv.mod_revision)
                return result
            compares = [Compare.mod_revision(key, "==", kv.mod_revision)]
            ops: builtins.list[tuple] = []
            plan = None
            if services and deleting:
                ops = _allocators.release_ops(current)
            elif services:
                plan = await self._allocation_plan(current, result, avoid)
                compares += plan.compares
                ops = plan.ops
            op = Op.delete(key) if deleting else Op.put(key, encode_object(result))
            txn = await self._store_call(
                self.store.txn, compares, [op, *ops], plan.failure_gets() if plan else [], write=True
            )
            if txn.succeeded:
                result["metadata"]["resourceVersion"] = str(txn.revision)
                return result
            if plan is not None:
                taken = plan.error_for(name, txn.results)
                if taken is not None:
                    raise taken
                avoid.update(k for k, got in zip(plan.claimed, txn.results, strict=False) if got is not None)
        raise errors.conflict(rtype.plural, name, errors.MODIFIED, rtype.group)

    async def update(
        self,
        resource: Any,
        namespace: str | None,
        name: str,
        obj: dict[str, Any],
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        admit: Callable[[dict[str, Any] | None], None] | None = None,
    ) -> dict[str, Any]:
        """PUT semantics: replace the object (or its status with ``subresource="status"``).
        ``admit``: see :meth:`_update_with`."""
        rtype = resolve_resource(resource)
        if subresource not in (None, "status"):
            raise errors.not_found(f"{rtype.plural}/{subresource}", name, rtype.group)
        if not isinstance(obj, dict):
            raise errors.bad_request(f"the body must be a {rtype.kind} object")
        create_body = None
        if rtype.plural in _CREATE_ON_UPDATE and subresource is None:
            create_body = obj
        snapshot = encode_object(obj)  # each attempt starts from the body as sent
        return await self._update_with(
            rtype, namespace, name, None, replacement=snapshot,
            subresource=subresource, dry_run=dry_run, create_body=create_body, admit=admit,
        )

    async def update_status(
        self, resource: Any, namespace: str | None, name: str, obj: dict[str, Any]
    ) -> dict[str, Any]:
        return await self.update(resource, namespace, name, obj, subresource="status")

    async def patch(
        self,
        resource: Any,
        namespace: str | None,
        name: str,
        patch_type: str,
        patch: Any,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        admit: Callable[[dict[str, Any] | None], None] | None = None,
    ) -> dict[str, Any]:
        """Apply a ``merge``, ``json`` or ``strategic`` patch (retried if another write races it).
        ``admit``: see :meth:`_update_with`."""
        from . import patch as patches

        rtype = resolve_resource(resource)
        if subresource == "scale":
            return await self._patch_scale(rtype, namespace, name, patch_type, patch, dry_run=dry_run)
        if subresource not in (None, "status"):
            raise errors.not_found(f"{rtype.plural}/{subresource}", name, rtype.group)

        def mutate(current: dict[str, Any]) -> Any:
            return self._apply_patch(patches, rtype, current, patch_type, patch)

        # A merge or strategic patch leaves ``current`` as it is (its result shares the parts
        # it does not touch), and a status write keeps from its result only ``status``, which
        # _prepare_update puts into a new object: such a patch can start from the stored
        # object as decoded for the comparison. Any other write changes its desired object
        # (identity, defaults) and gets a decode of its own.
        keeps = subresource == "status" and patch_type in ("merge", "strategic")
        return await self._update_with(rtype, namespace, name, mutate, subresource=subresource, dry_run=dry_run,
                                       mutate_keeps_current=keeps, admit=admit)

    @staticmethod
    def _apply_patch(patches: Any, rtype: Any, current: dict[str, Any], patch_type: str, patch: Any) -> Any:
        try:
            if patch_type == "merge":
                return patches.apply_merge_patch(current, patch, share=True)
            if patch_type == "json":
                return patches.apply_json_patch(current, patch)
            if patch_type == "strategic":
                return patches.apply_strategic_merge_patch(current, patch, rtype, share=True)
        except patches.PatchError as exc:
            raise ApiError(422, "Invalid", f"the patch could not be applied: {exc}") from None
        except ApiError:
            raise
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
            raise errors.bad_request(f"the patch could not be applied: {exc}") from None
        raise ApiError(415, "UnsupportedMediaType", f"unsupported patch type {patch_type!r}")

    # ---------------------------------------------------------------- scale subresource

    @staticmethod
    def _to_scale(rtype: Any, obj: dict[str, Any]) -> dict[str, Any]:
        return kinds.scale_of(obj)

    def _check_scale(self, rtype: Any) -> None:
        if "scale" not in getattr(rtype, "subresources", ()):
            raise errors.not_found(f"{rtype.plural}/scale", "", rtype.group)

    async def get_scale(self, resource: Any, namespace: str | None, name: str) -> dict[str, Any]:
        rtype = resolve_resource(resource)
        self._check_scale(rtype)
        return self._to_scale(rtype, await self.get(rtype, namespace, name))

    def _scale_mutation(self, rtype: Any, scale: Any, name: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
        if not isinstance(scale, dict) or not isinstance(scale.get("spec"), dict):
            raise errors.bad_request("the body must be an autoscaling/v1 Scale with spec.replicas")
        replicas = scale["spec"].get("replicas", 0)
        if type(replicas) is not int or replicas < 0:
            raise errors.invalid(
                "Scale", name,
                [{"reason": "FieldValueInvalid", "message": f"Invalid value: {replicas!r}: must be greater than or equal to 0", "field": "spec.replicas"}],
                "autoscaling",
            )
        wanted_rv = (scale.get("metadata") or {}).get("resourceVersion") if isinstance(scale.get("metadata"), dict) else None

        def mutate(current: dict[str, Any]) -> dict[str, Any]:
            current.setdefault("spec", {})["replicas"] = replicas
            if wanted_rv not in (None, ""):
                current["metadata"]["resourceVersion"] = wanted_rv
            return current

        return mutate

    async def update_scale(self, resource: Any, namespace: str | None, name: str, scale: Any, *, dry_run: bool = False) -> dict[str, Any]:
        rtype = resolve_resource(resource)
        self._check_scale(rtype)
        obj = await self._update_with(rtype, namespace, name, self._scale_mutation(rtype, scale, name), dry_run=dry_run)
        return self._to_scale(rtype, obj)

    async def _patch_scale(self, rtype: Any, namespace: str | None, name: str, patch_type: str, patch: Any, *, dry_run: bool) -> dict[str, Any]:
        from . import patch as patches

        self._check_scale(rtype)
        key = self.key(rtype, namespace, name)
        for _attempt in range(_RETRIES):
            kv = await self._read_current(rtype, key, True)
            if kv is None:
                raise errors.not_found(rtype.plural, name, rtype.group)
            scale = self._to_scale(rtype, self._decode(kv))
            kind = "merge" if patch_type == "strategic" else patch_type  # Scale has no merge keys
            patched = self._apply_patch(patches, rtype, scale, kind, patch)
            try:
                return await self.update_scale(rtype, namespace, name, patched, dry_run=dry_run)
            except ApiError as exc:
                explicit = isinstance(patch, dict) and (patch.get("metadata") or {}).get("resourceVersion")
                if exc.reason != "Conflict" or explicit:
                    raise
        raise errors.conflict(rtype.plural, name, errors.MODIFIED, rtype.group)

    # ---------------------------------------------------------------- batches and bindings

    async def update_many(
        self, items: builtins.list[tuple[Any, str | None, str, dict[str, Any]]], *, subresource: str | None = None
    ) -> builtins.list[dict[str, Any] | ApiError]:
        """Update many objects in ONE store round (one Raft entry); per item a result or an ApiError.

        Each body should carry ``metadata.resourceVersion`` (else the version read here is used);
        an item whose object changed since is a 409 Conflict, the others still commit.
        """
        results: builtins.list[dict[str, Any] | ApiError | None] = [None] * len(items)
        txns: builtins.list[tuple[builtins.list[Compare], builtins.list[tuple], builtins.list[tuple]]] = []
        pending: builtins.list[tuple[int, Any, str, dict[str, Any]]] = []
        for i, (resource, namespace, name, obj) in enumerate(items):
            if i and i % _BATCH_YIELD_EVERY == 0:
                await trio.lowlevel.checkpoint()  # see _BATCH_YIELD_EVERY
            try:
                rtype = resolve_resource(resource)
                key = self.key(rtype, namespace, name)
                kv = await self._read_current(rtype, key, False)
                if kv is None:
                    raise errors.not_found(rtype.plural, name, rtype.group)
                wanted = (obj.get("metadata") or {}).get("resourceVersion") if isinstance(obj, dict) else None
                expected = _parse_rv(wanted) if wanted not in (None, "") else kv.mod_revision
                if expected > kv.mod_revision:  # the local replica is behind the caller
                    kv = await self._read_current(rtype, key, True)
                    if kv is None:
                        raise errors.not_found(rtype.plural, name, rtype.group)
                if expected != kv.mod_revision:
                    raise errors.conflict(rtype.plural, name, errors.MODIFIED, rtype.group)
                result = self._prepare_update(rtype, self._decode(kv), decode_object(encode_object(obj)), subresource)
                result["metadata"].pop("resourceVersion", None)
                op = Op.delete(key) if self._deleted_by_update(result) else Op.put(key, encode_object(result))
                txns.append(([Compare.mod_revision(key, "==", expected)], [op], []))
                pending.append((i, rtype, name, result))
            except ApiError as exc:
                results[i] = exc
        if txns:
            outcome = await self._store_call(self.store.txn_many, txns, write=True)
            for (i, rtype, name, result), txn in zip(pending, outcome, strict=True):
                if txn.succeeded:
                    result["metadata"]["resourceVersion"] = str(txn.revision)
                    results[i] = result
                else:
                    results[i] = errors.conflict(rtype.plural, name, errors.MODIFIED, rtype.group)
        return results  # type: ignore[return-value]

    def _bound(self, pod: dict[str, Any], node: str) -> dict[str, Any]:
        meta = pod["metadata"]
        if meta.get("deletionTimestamp"):
            raise errors.conflict("pods", meta["name"], "the pod is being deleted")
        bound_to = (pod.get("spec") or {}).get("nodeName")
        if bound_to:
            raise errors.conflict("pods", meta["name"], f"pod {meta['name']} is already assigned to node \"{bound_to}\"")
        pod.setdefault("spec", {})["nodeName"] = node
        status = pod.setdefault("status", {})
        conditions = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
        conditions.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                           "lastTransitionTime": _rfc3339(self._clock())})
        status["conditions"] = conditions
        meta.pop("resourceVersion", None)
        return pod

    async def bind_many(self, bindings: builtins.list[tuple[str, str, str]]) -> builtins.list[dict[str, Any] | ApiError]:
        """Bind ``(namespace, pod, node)`` triples in one store round; per binding the pod or an ApiError."""
        results: builtins.list[dict[str, Any] | ApiError | None] = [None] * len(bindings)
        txns: builtins.list[tuple[builtins.list[Compare], builtins.list[tuple], builtins.list[tuple]]] = []
        pending: builtins.list[tuple[int, str, dict[str, Any]]] = []
        rtype = resolve_resource("pods")
        for i, (namespace, name, node) in enumerate(bindings):
            if i and i % _BATCH_YIELD_EVERY == 0:
                await trio.lowlevel.checkpoint()  # see _BATCH_YIELD_EVERY
            try:
                if not node:
                    raise errors.invalid("Binding", name, [{"reason": "FieldValueRequired", "message": "Required value", "field": "target.name"}])
                key = self.key(rtype, namespace, name)
                kv = await self._read_current(rtype, key, False)
                if kv is None:
                    raise errors.not_found("pods", name)
                pod = self._bound(self._decode(kv), node)
                txns.append(([Compare.mod_revision(key, "==", kv.mod_revision)], [Op.put(key, encode_object(pod))], []))
                pending.append((i, name, pod))
            except ApiError as exc:
                results[i] = exc
        if txns:
            outcome = await self._store_call(self.store.txn_many, txns, write=True)
            for (i, name, pod), txn in zip(pending, outcome, strict=True):
                if txn.succeeded:
                    pod["metadata"]["resourceVersion"] = str(txn.revision)
                    results[i] = pod
                else:
                    results[i] = errors.conflict("pods", name, errors.MODIFIED)
        return results  # type: ignore[return-value]

    async def bind(self, namespace: str, name: str, binding: Any) -> dict[str, Any]:
        """The ``pods/binding`` subresource: a ``v1 Binding`` with ``target.name`` (the node)."""
        if not isinstance(binding, dict):
            raise errors.bad_request("the body must be a v1 Binding")
        target = binding.get("target") or {}
        bmeta = binding.get("metadata") or {}
        if not isinstance(target, dict) or not isinstance(bmeta, dict):
            raise errors.bad_request("the body must be a v1 Binding")
        if bmeta.get("name") not in (None, "", name):
            raise errors.bad_request(f"the name of the binding ({bmeta.get('name')}) does not match the pod ({name})")
        if target.get("kind") not in (None, "", "Node"):
            raise errors.invalid("Binding", name, [{"reason": "FieldValueNotSupported", "message": f"Unsupported value: {target.get('kind')!r}: supported values: \"Node\"", "field": "target.kind"}])
        node = target.get("name")
        if not isinstance(node, str):
            node = ""
        [result] = await self.bind_many([(namespace, name, node)])
        if isinstance(result, ApiError):
            raise result
        return result

    # ---------------------------------------------------------------- delete

    async def delete(
        self,
        resource: Any,
        namespace: str | None,
        name: str,
        *,
        grace_period_seconds: int | None = None,
        propagation_policy: str | None = None,
        preconditions: dict[str, Any] | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Delete (or mark for deletion, see the module doc); returns the object's last state."""
        rtype = resolve_resource(resource)
        if propagation_policy not in (None, "", "Orphan", "Background", "Foreground"):
            raise errors.bad_request(
                f'propagationPolicy: Unsupported value: "{propagation_policy}": supported values: "Foreground", "Background", "Orphan"'
            )
        if grace_period_seconds is not None and grace_period_seconds < 0:
            grace_period_seconds = 0
        key = self.key(rtype, namespace, name)
        # preconditions are checked against what we read, which must then be current
        linearizable = bool(preconditions)
        for _attempt in range(_RETRIES):
            kv = await self._read_current(rtype, key, linearizable)
            linearizable = True  # a lost race means our local view was stale
            if kv is None:
                raise errors.not_found(rtype.plural, name, rtype.group)
            obj = self._decode(kv)
            meta = obj["metadata"]
            self._check_preconditions(rtype, obj, preconditions)
            marked = self._mark_for_deletion(rtype, obj, grace_period_seconds, propagation_policy)
            if dry_run:
                return obj
            if marked is not None:
                if not marked:
                    return obj  # already marked as asked: nothing to write
                meta.pop("resourceVersion", None)
                op: tuple = Op.put(key, encode_object(obj))
            else:
                op = Op.delete(key)
            release = _allocators.release_ops(obj) if marked is None and rtype.plural == "services" and not rtype.group else []
            txn = await self._store_call(
                self.store.txn, [Compare.mod_revision(key, "==", kv.mod_revision)], [op, *release], [], write=True
            )
            if txn.succeeded:
                if marked is None:
                    meta["resourceVersion"] = str(kv.mod_revision)
                else:
                    meta["resourceVersion"] = str(txn.revision)
                    if rtype.plural == "namespaces":
                        await self.finalize_namespace(name)
                return obj
        raise errors.conflict(rtype.plural, name, errors.MODIFIED, rtype.group)

    @staticmethod
    def _check_preconditions(rtype: Any, obj: dict[str, Any], preconditions: dict[str, Any] | None) -> None:
        if not preconditions:
            return
        meta = obj["metadata"]
        uid = preconditions.get("uid")
        if uid not in (None, "") and uid != meta.get("uid"):
            raise errors.conflict(
                rtype.plural, meta["name"],
                f"Precondition failed: UID in precondition: {uid}, UID in object meta: {meta.get('uid')}", rtype.group,
            )
        rv = preconditions.get("resourceVersion")
        if rv not in (None, "") and str(rv) != meta.get("resourceVersion"):
            raise errors.conflict(
                rtype.plural, meta["name"],
                f"Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {meta.get('resourceVersion')}",
                rtype.group,
            )

    def _mark_for_deletion(
        self, rtype: Any, obj: dict[str, Any], grace: int | None, policy: str | None
    ) -> bool | None:
        """Mutates ``obj`` to its marked state. None: delete now; True: write it; False: unchanged."""
        meta = obj["metadata"]
        now = self._clock()
        if rtype.plural == "pods":
            spec, status = obj.get("spec") or {}, obj.get("status") or {}
            if grace is None:
                grace = spec.get("terminationGracePeriodSeconds", _DEFAULT_GRACE_SECONDS)
                if type(grace) is not int or grace < 0:
                    grace = _DEFAULT_GRACE_SECONDS
            if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
                grace = 0
            if grace > 0:
                previous = meta.get("deletionGracePeriodSeconds")
                if meta.get("deletionTimestamp") and previous is not None and previous <= grace:
                    return False
                meta["deletionTimestamp"] = _rfc3339(now + grace)
                meta["deletionGracePeriodSeconds"] = grace
                return True
            if meta.get("deletionGracePeriodSeconds"):
                meta["deletionGracePeriodSeconds"] = 0
        finalizers = list(meta.get("finalizers") or [])
        extra = {"Foreground": "foregroundDeletion", "Orphan": "orphan"}.get(policy or "")
        if extra and extra not in finalizers and not meta.get("deletionTimestamp"):
            finalizers.append(extra)
        if rtype.plural == "namespaces":
            changed = not meta.get("deletionTimestamp")
            meta.setdefault("deletionTimestamp", _rfc3339(now))
            meta["deletionGracePeriodSeconds"] = 0
            obj.setdefault("status", {})["phase"] = "Terminating"
            if finalizers:
                meta["finalizers"] = finalizers
            return changed or True
        if finalizers:
            changed = finalizers != (meta.get("finalizers") or []) or not meta.get("deletionTimestamp")
            meta["finalizers"] = finalizers
            meta.setdefault("deletionTimestamp", _rfc3339(now))
            meta.setdefault("deletionGracePeriodSeconds", 0)
            return changed
        return None

    async def deletecollection(
        self,
        resource: Any,
        namespace: str | None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        grace_period_seconds: int | None = None,
        propagation_policy: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Delete every matching object; returns the list of their last states."""
        rtype = resolve_resource(resource)
        listed = await self.list(rtype, namespace, label_selector=label_selector, field_selector=field_selector)
        deleted = []
        for item in listed["items"]:
            meta = item["metadata"]
            try:
                deleted.append(
                    await self.delete(
                        rtype, meta.get("namespace"), meta["name"],
                        grace_period_seconds=grace_period_seconds,
                        propagation_policy=propagation_policy,
                        preconditions={"uid": meta.get("uid")},
                        dry_run=dry_run,
                    )
                )
            except ApiError as exc:
                if exc.code not in (404, 409):
                    raise
        listed["items"] = deleted
        return listed

    async def finalize_namespace(self, name: str) -> bool:
        """Delete a terminating namespace's contents; remove it once empty. True when gone."""
        ns_key = f"/registry/namespaces/{name}"
        kv = await self._read_current(None, ns_key, True)
        if kv is None:
            return True
        ns = self._decode(kv)
        if not ns["metadata"].get("deletionTimestamp"):
            return False
        remaining = 0
        for rtype in kinds.RESOURCES:
            if not rtype.namespaced:
                continue
            rr = await self._store_call(self.store.range, self.prefix(rtype, name), linearizable=False)
            for item_kv in rr.kvs:
                remaining += 1
                item = decode_object(item_kv.value)
                if item["metadata"].get("deletionTimestamp"):
                    continue
                try:
                    await self.delete(rtype, name, item["metadata"]["name"], propagation_policy="Background")
                except ApiError as exc:
                    if exc.code != 404:
                        raise
        if remaining:
            # pods under graceful deletion or finalizers may still hold it: a later call finishes
            left = 0
            for rtype in kinds.RESOURCES:
                if rtype.namespaced:
                    left += len((await self._store_call(self.store.range, self.prefix(rtype, name), limit=1)).kvs)
            if left:
                return False
        if ns["metadata"].get("finalizers"):
            return False
        txn = await self._store_call(
            self.store.txn, [Compare.mod_revision(ns_key, "==", kv.mod_revision)], [Op.delete(ns_key)], [], write=True
        )
        return bool(txn.succeeded)

    async def ensure_namespaces(self, names: Iterable[str] = ("default", "kube-system", "kube-public", "kube-node-lease")) -> None:
        """Create the standard namespaces if missing (a new cluster's bootstrap)."""
        for ns in names:
            try:
                await self.create("namespaces", None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
            except ApiError as exc:
                if exc.reason != "AlreadyExists":
                    raise

    # ---------------------------------------------------------------- watch

    def check_selectors(self, resource: Any, label_selector: str | None, field_selector: str | None) -> None:
        """400 BadRequest now for selectors a list or watch could not parse."""
        _Selection(resolve_resource(resource), label_selector, field_selector)

    async def watch(
        self,
        resource: Any,
        namespace: str | None = None,
        *,
        resource_version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        on_progress: Callable[[int], None] | None = None,
        send_initial_events: bool = False,
    ) -> AsyncIterator[builtins.list[WatchEvent]]:
        """Batches of watch events after ``resource_version`` (or the current state first, as
        ADDED events, when it is unset or "0").

        With selectors, an object that stops matching arrives as DELETED (its last matching
        content at the new revision) and one that starts matching as ADDED, as in Kubernetes.
        ``on_progress(revision)`` is told every store revision this watch has fully seen.
        Raises ApiError 410 Expired when the revision is older than the store's history.
        ``send_initial_events`` (Kubernetes' watch-list): the current state as ADDED events, then
        a BOOKMARK annotated ``k8s.io/initial-events-end``, whatever ``resource_version`` says.
        """
        rtype = resolve_resource(resource)
        selection = _Selection(rtype, label_selector, field_selector)
        prefix = self.prefix(rtype, namespace)
        cached = await self._cached_watch(rtype, namespace, selection, resource_version, on_progress, send_initial_events)
        if cached is not None:
            try:
                async for batch in cached:
                    yield batch
            finally:
                await cached.aclose()  # type: ignore[attr-defined]
            return
        if send_initial_events or resource_version in (None, "", "0"):
            if resource_version not in (None, "", "0"):
                await self._read_mode(resource_version)  # "not older than": 400/504 as for a list
            rr = await self._store_call(self.store.range, prefix, linearizable=resource_version != "0")
            initial = []
            for kv in rr.kvs:
                obj = self._decode_shared(kv)
                if selection.everything or selection.matches(obj):
                    initial.append(WatchEvent("ADDED", obj, kv.key, kv.mod_revision))
            if send_initial_events:
                initial.append(self._initial_events_end(rtype, prefix, rr.revision))
            if initial:
                yield initial
            if on_progress is not None:
                on_progress(rr.revision)
            start = rr.revision + 1
        else:
            rv = _parse_rv(resource_version)
            start = rv + 1
            if start <= self.store.compact_revision:
                raise errors.expired(f"too old resource version: {rv} ({self.store.compact_revision})")
        try:
            async for batch in self.store.watch(prefix, start):
                out = self._convert(batch, selection)
                if out:
                    yield out
                if on_progress is not None and batch:
                    on_progress(batch[-1].revision)
        except Compacted as exc:
            raise errors.expired(f"too old resource version: {start - 1} ({exc.compact_revision})") from None
        except StoreUnavailable as exc:
            raise errors.service_unavailable(f"the store is unavailable: {exc}") from None

    async def _cached_watch(
        self,
        rtype: Any,
        namespace: str | None,
        selection: _Selection,
        resource_version: str | None,
        on_progress: Callable[[int], None] | None,
        send_initial_events: bool,
    ) -> AsyncIterator[builtins.list[WatchEvent]] | None:
        """The watch served by the watch cache, or None when the store must serve it."""
        cache = self._ready_cache()
        if cache is None:
            return None
        if send_initial_events or resource_version in (None, "", "0"):
            linearizable = await self._read_mode(resource_version) if resource_version != "0" else False
            target = await self._cache_target(resource_version, linearizable)
            if target is not None and not await cache.wait_for(target):
                return None
            kvs, revision = cache.snapshot(rtype, namespace, selection)
            initial = [WatchEvent("ADDED", self._decode_shared(kv), kv.key, kv.mod_revision) for kv in kvs]
            if send_initial_events:
                initial.append(self._initial_events_end(rtype, self.prefix(rtype, namespace), revision))
            return cache.watch(rtype, namespace, selection, revision + 1, initial, on_progress, from_state=True)
        rv = _parse_rv(resource_version)
        if rv + 1 <= self.store.compact_revision:
            raise errors.expired(f"too old resource version: {rv} ({self.store.compact_revision})")
        return cache.watch(rtype, namespace, selection, rv + 1, [], on_progress)

    @staticmethod
    def _initial_events_end(rtype: Any, prefix: str, revision: int) -> WatchEvent:
        """The BOOKMARK that ends a watch-list's initial state (Kubernetes' annotation)."""
        return WatchEvent("BOOKMARK", {
            "kind": rtype.kind, "apiVersion": rtype.api_version,
            "metadata": {"resourceVersion": str(revision),
                         "annotations": {"k8s.io/initial-events-end": "true"}},
        }, prefix, revision)

    def _convert(self, batch: builtins.list[Any], selection: _Selection) -> builtins.list[WatchEvent]:
        out = []
        for ev in batch:
            if selection.needles and not selection.may_match(ev.kv.value) and (
                    ev.prev_kv is None or not selection.may_match(ev.prev_kv.value)):
                continue  # neither version can match: nothing to send
            new = self._decode_shared(ev.kv) if ev.type == "PUT" else None
            old = self._decode_shared(ev.prev_kv) if ev.prev_kv is not None and (
                ev.type != "PUT" or not selection.everything) else None
            converted = self._event_for(ev, selection, new, old)
            if converted is not None:
                out.append(converted)
        return out

    def _event_for(self, ev: Any, selection: _Selection, new: dict[str, Any] | None,
                   old: dict[str, Any] | None) -> WatchEvent | None:
        """What a watcher with ``selection`` sees of one store event (``new``/``old``: the
        decoded versions after and before it, shared between watchers)."""
        if ev.type == "PUT":
            assert new is not None
            if selection.everything:
                return WatchEvent("ADDED" if ev.prev_kv is None else "MODIFIED", new, ev.kv.key, ev.revision)
            new_match = selection.matches(new)
            old_match = old is not None and selection.matches(old)
            if new_match:
                return WatchEvent("MODIFIED" if old_match else "ADDED", new, ev.kv.key, ev.revision)
            if old_match and old is not None:
                return WatchEvent("DELETED", self._at_revision(old, ev.revision), ev.kv.key, ev.revision)
        elif old is not None and (selection.everything or selection.matches(old)):
            return WatchEvent("DELETED", self._at_revision(old, ev.revision), ev.kv.key, ev.revision)
        return None

    @staticmethod
    def _at_revision(obj: dict[str, Any], revision: int) -> dict[str, Any]:
        # The deleted object's last content, stamped with the deletion revision (Kubernetes does).
        return {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(revision)}}
