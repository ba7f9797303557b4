"""Garbage collector: cascades deletion along ownerReferences (background, foreground, orphan)."""

from __future__ import annotations

import copy
import functools
import logging
from typing import Any

import trio

from controlplane import kinds
from controlplane.errors import ApiError

from ._gc_plan import GCPlan, ObjRef, plan_gc, waits_for_dependents
from ._informer import Informer
from ._pods import meta

log = logging.getLogger(__name__)

# Kinds whose objects own or are owned in this cluster (Deployment -> ReplicaSet -> Pod, and
# user-set references between Services, ConfigMaps and the rest).
GC_RESOURCES = ("deployments", "replicasets", "pods", "services", "configmaps", "endpoints")
# Debounce between passes: a burst of events is folded into one pass instead of one per event.
PASS_INTERVAL = 0.25
# Objects judged between two yields to the event loop in a pass (~10 ms of work).
PASS_SLICE = 512


def _may_make_garbage(obj: dict) -> bool:
    m = meta(obj)
    return bool(m.get("ownerReferences") or m.get("deletionTimestamp") or m.get("finalizers"))


def _gc_fields(obj: dict) -> tuple[object, object, object]:
    m = meta(obj)
    return m.get("ownerReferences"), m.get("deletionTimestamp"), m.get("finalizers")


def _ref(plural: str, obj: dict) -> ObjRef:
    m = meta(obj)
    return ObjRef(plural, m.get("namespace") or "", m.get("name", ""), m.get("uid", ""))


class GarbageCollector:
    name = "garbage-collector"

    def __init__(self, registry: Any, informers: dict[str, Informer]) -> None:
        self.registry = registry
        self.informers = informers
        self._dirty = trio.Event()
        # Every object the informers hold, by uid, and who depends on whom: a pass looks only at
        # the objects a change can concern (and what their verdicts depend on), not the whole
        # graph — with 30,000 pods a whole-graph pass per deletion would be most of the CPU.
        self._objs: dict[str, tuple[str, dict]] = {}  # uid -> (plural, object)
        self._dependents: dict[str, set[str]] = {}  # owner uid -> dependent uids
        self._suspects: set[str] = set()
        self._full = True  # the first pass (and one after an error) looks at everything
        for plural, inf in informers.items():
            inf.add_handler(functools.partial(self._on_change, plural=plural))

    def _index(self, plural: str, old: dict | None, new: dict | None) -> None:
        if old is not None:
            uid = meta(old).get("uid", "")
            self._objs.pop(uid, None)
            for ref in meta(old).get("ownerReferences") or []:
                deps = self._dependents.get(ref.get("uid", ""))
                if deps is not None:
                    deps.discard(uid)
                    if not deps:
                        del self._dependents[ref.get("uid", "")]
        if new is not None:
            uid = meta(new).get("uid", "")
            self._objs[uid] = (plural, new)
            for ref in meta(new).get("ownerReferences") or []:
                self._dependents.setdefault(ref.get("uid", ""), set()).add(uid)

    def _suspect(self, obj: dict) -> None:
        # The object, the owners that may wait for it (foreground, orphan), its dependents
        # (which may dangle, or wait for it).
        m = meta(obj)
        uid = m.get("uid", "")
        self._suspects.add(uid)
        self._suspects.update(r.get("uid", "") for r in m.get("ownerReferences") or [])
        self._suspects.update(self._dependents.get(uid, ()))

    def _on_change(self, old: dict | None, new: dict | None, *, plural: str = "") -> None:
        # A pass is skipped for changes that cannot make garbage (creating or updating a
        # standalone object, e.g. a burst of ConfigMaps). Garbage needs an owner reference, a
        # deletion in progress, or a deleted object (its dependents may dangle). An update that
        # leaves those alone (a pod's status: most events of a busy cluster) changes nothing
        # the collector looks at.
        dirty = False
        if new is None:
            dirty = True
        elif old is None:
            # A new dependent whose owners are all known cannot be garbage yet (a burst of
            # ReplicaSet pod creates would otherwise cost a pass each); an owner not seen
            # (gone, or its informer lags) gets a pass, which asks the store.
            m = meta(new)
            refs = m.get("ownerReferences") or []
            dirty = bool(m.get("deletionTimestamp") or m.get("finalizers") or any(
                r.get("uid") not in self._objs for r in refs))
        elif _gc_fields(old) != _gc_fields(new) and (_may_make_garbage(new) or _may_make_garbage(old)):
            dirty = True
        if (not dirty and old is not None and new is not None and meta(old).get("uid") == meta(new).get("uid")
                and meta(old).get("ownerReferences") == meta(new).get("ownerReferences")):
            # the same object with the same owners (a status change): only its latest version
            self._objs[meta(new).get("uid", "")] = (plural, new)
        elif old is not None and new is not None and meta(old).get("uid") != meta(new).get("uid"):
            self._index(plural, old, None)
            self._index(plural, None, new)
        else:
            self._index(plural, old, new)
        if dirty:
            for obj in (old, new):
                if obj is not None:
                    self._suspect(obj)
            self._dirty.set()

    def graph(self) -> dict[ObjRef, dict]:
        """Every object the informers hold."""
        out = {}
        for plural, inf in self.informers.items():
            for obj in inf.cache.values():
                out[_ref(plural, obj)] = obj
        return out

    def subgraph(self, uids: set[str]) -> dict[ObjRef, dict]:
        """The objects ``uids`` name plus what plan_gc needs to judge them: the owners of
        every included object (a dependent dangles only if none is left, up the chain) and
        the dependents of every included object under deletion (foreground, orphan)."""
        include: set[str] = set()
        todo = [u for u in uids if u in self._objs]
        while todo:
            uid = todo.pop()
            if uid in include:
                continue
            include.add(uid)
            obj = self._objs[uid][1]
            todo.extend(r.get("uid", "") for r in meta(obj).get("ownerReferences") or []
                        if r.get("uid", "") in self._objs)
            if meta(obj).get("deletionTimestamp"):
                todo.extend(d for d in self._dependents.get(uid, ()) if d in self._objs)
        out = {}
        for uid in include:
            plural, obj = self._objs[uid]
            out[_ref(plural, obj)] = obj
        return out

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Collect garbage whenever the graph changes; never returns unless cancelled."""
        task_status.started()
        while True:
            await self._dirty.wait()
            self._dirty = trio.Event()
            started = trio.current_time()
            suspects, self._suspects = self._suspects, set()
            if self._full:
                self._full = False
                suspects = set(self._objs)
            try:
                # In slices: a full pass over 30,000 pods in one piece held the event loop (and
                # every API request of this master) for 0.1-0.2 s. Each slice is judged with
                # what its verdicts depend on (subgraph), as an incremental pass is.
                uids = list(suspects)
                for i in range(0, len(uids), PASS_SLICE):
                    if i:
                        await trio.lowlevel.checkpoint()
                    graph = self.subgraph(set(uids[i:i + PASS_SLICE]))
                    await self.collect(plan_gc(graph), graph)
            except ApiError as exc:
                log.debug("gc pass: %s", exc)
                self._full = True
                self._dirty.set()
            # On a big cluster under churn, rest at least twice as long as the pass took, so
            # the collector never takes more than a third of the CPU.
            await trio.sleep(max(PASS_INTERVAL, 2 * (trio.current_time() - started)))

    async def _owner(self, obj: dict, ref: dict, seen: dict[tuple, dict | None]) -> dict | None:
        """The owner ``ref`` names as the store has it now (not the caches, which may lag each
        other), or None when it is gone: absent, or present under another uid (recreated).
        ``seen`` remembers the answers of one pass: a ReplicaSet's 500 pods ask once."""
        rtype = kinds.by_kind(ref.get("apiVersion", ""), ref.get("kind", ""))
        if rtype is None:
            return None  # a kind this API does not serve: no such owner can exist here
        ns = meta(obj).get("namespace") if rtype.namespaced else None
        key = (rtype.plural, ns, ref.get("name", ""))
        if key not in seen:
            try:
                seen[key] = await self.registry.get(rtype, ns, ref.get("name", ""))
            except ApiError as exc:
                if exc.code != 404:
                    raise
                seen[key] = None
        owner = seen[key]
        return owner if owner is not None and meta(owner).get("uid") == ref.get("uid") else None

    async def _attempt(self, ref: ObjRef, obj: dict, seen: dict[tuple, dict | None]) -> None:
        """Kubernetes' attemptToDeleteItem for a dependent the plan suspects: its owners are
        judged against the store. Any owner left (solid) keeps it, and the references to owners
        that are gone or that wait for it in foreground deletion are removed (an owner waiting
        for a dependent another owner keeps would wait forever); none left: it is deleted, in
        the foreground if an owner waits for it."""
        refs = meta(obj).get("ownerReferences") or []
        if not refs:
            return  # not a dependent (any more): nothing to collect
        solid, gone, waiting = False, set(), set()
        for owner_ref in refs:
            owner = await self._owner(obj, owner_ref, seen)
            if owner is None:
                gone.add(owner_ref.get("uid", ""))
            elif waits_for_dependents(owner):
                waiting.add(owner_ref.get("uid", ""))
            else:
                solid = True
        if solid:
            if gone or waiting:
                await self._drop_owner_refs(ref, obj, gone | waiting)
        else:
            await self._delete(ref, "Foreground" if waiting else "Background", meta(obj).get("resourceVersion"))

    async def _delete(self, ref: ObjRef, policy: str, resource_version: str | None = None) -> None:
        preconditions = {"uid": ref.uid}
        if resource_version:
            # judged on this version's owners: a reference added since must be judged too
            preconditions["resourceVersion"] = resource_version
        try:
            await self.registry.delete(
                ref.plural, ref.namespace or None, ref.name, propagation_policy=policy, preconditions=preconditions
            )
        except ApiError as exc:
            if exc.code == 409:
                self._retry(ref)
            elif exc.code != 404:
                raise

    async def collect(self, plan: GCPlan, graph: dict[ObjRef, dict] | None = None) -> None:
        if graph is None and (plan.delete_background or plan.orphan or plan.finalize or plan.drop_refs
                              or plan.delete_foreground):
            graph = self.graph()
        graph = graph or {}
        seen: dict[tuple, dict | None] = {}
        for ref in plan.delete_background:
            obj = graph.get(ref)
            if obj is None:
                await self._delete(ref, "Background")
            else:
                await self._attempt(ref, obj, seen)
        for ref in plan.delete_foreground:
            obj = graph.get(ref)
            if obj is not None and len(meta(obj).get("ownerReferences") or []) > 1:
                await self._attempt(ref, obj, seen)  # another owner may hold it: ask the store
            else:
                await self._delete(ref, "Foreground")
        for ref in plan.drop_refs:
            obj = graph.get(ref)
            if obj is not None:
                await self._attempt(ref, obj, seen)
        for ref, owner_uids in plan.orphan.items():
            obj = graph.get(ref)
            if obj is not None:
                await self._drop_owner_refs(ref, obj, owner_uids)
        for ref, finalizer in plan.finalize.items():
            obj = graph.get(ref)
            if obj is None:
                continue
            body = copy.deepcopy(obj)
            body["metadata"]["finalizers"] = [f for f in body["metadata"].get("finalizers") or [] if f != finalizer]
            await self._update(ref, body)

    async def _drop_owner_refs(self, ref: ObjRef, obj: dict, owner_uids: set[str]) -> None:
        """Remove the references to ``owner_uids``: a merge patch of metadata.ownerReferences
        with the version it was computed from (a 409 if the object changed meanwhile, and the
        next pass judges it again), as Kubernetes' collector patches them."""
        m = meta(obj)
        kept = [r for r in m.get("ownerReferences") or [] if r.get("uid") not in owner_uids]
        # (none left: the field goes, as an empty list is never shown by Kubernetes)
        patch = {"metadata": {"resourceVersion": m.get("resourceVersion"), "ownerReferences": kept or None}}
        try:
            await self.registry.patch(ref.plural, ref.namespace or None, ref.name, "merge", patch)
        except ApiError as exc:
            if exc.code == 409:
                self._retry(ref)
            elif exc.code != 404:
                raise

    def _retry(self, ref: ObjRef) -> None:
        # Changed since the caches showed it: the next pass judges it again. A change the
        # collector does not look at (a pod's status) would not make it a suspect by itself.
        self._suspects.add(ref.uid)
        self._dirty.set()

    async def _update(self, ref: ObjRef, body: dict) -> None:
        try:
            await self.registry.update(ref.plural, ref.namespace or None, ref.name, body)
        except ApiError as exc:
            if exc.code == 409:
                self._retry(ref)  # changed meanwhile: the next pass re-plans
            elif exc.code != 404:
                raise
