"""Garbage collector: cascades deletion along ownerReferences (background, foreground, orphan)."""

from __future__ import annotations

import copy
import logging
from typing import Any

import trio

from controlplane import kinds
from controlplane.errors import ApiError

from ._gc_plan import GCPlan, ObjRef, plan_gc
from ._informer import Informer
from ._pods import meta

log = logging.getLogger(__name__)

# Kinds whose objects own or are owned in this cluster (Deployment -> ReplicaSet -> Pod, and
# user-set references between Services, ConfigMaps and the rest).
GC_RESOURCES = ("deployments", "replicasets", "pods", "services", "configmaps", "endpoints")
# Debounce between passes: one pass looks at the whole graph, so a burst of events is folded
# into one pass instead of one per event.
PASS_INTERVAL = 0.25


def _may_make_garbage(obj: dict) -> bool:
    m = meta(obj)
    return bool(m.get("ownerReferences") or m.get("deletionTimestamp") or m.get("finalizers"))


def _gc_fields(obj: dict) -> tuple[object, object, object]:
    m = meta(obj)
    return m.get("ownerReferences"), m.get("deletionTimestamp"), m.get("finalizers")


class GarbageCollector:
    name = "garbage-collector"

    def __init__(self, registry: Any, informers: dict[str, Informer]) -> None:
        self.registry = registry
        self.informers = informers
        self._dirty = trio.Event()
        self._uids: set[str] = set()  # every object the informers hold (owner lookups)
        for inf in informers.values():
            inf.add_handler(self._on_change)

    def _on_change(self, old: dict | None, new: dict | None) -> None:
        # A pass walks the whole graph: skip it for changes that cannot make garbage (creating
        # or updating a standalone object, e.g. a burst of ConfigMaps). Garbage needs an owner
        # reference, a deletion in progress, or a deleted object (its dependents may dangle).
        # An update that leaves those alone (a pod's status: most events of a busy cluster)
        # changes nothing the collector looks at.
        if new is None:
            self._uids.discard(meta(old or {}).get("uid", ""))
            self._dirty.set()
        elif old is None:
            self._uids.add(meta(new).get("uid", ""))
            # A new dependent whose owners are all known cannot be garbage yet (a burst of
            # ReplicaSet pod creates would otherwise cost a whole-graph pass each); an owner
            # not seen (gone, or its informer lags) gets the full pass, which asks the store.
            m = meta(new)
            refs = m.get("ownerReferences") or []
            if m.get("deletionTimestamp") or m.get("finalizers") or any(
                    r.get("uid") not in self._uids for r in refs):
                self._dirty.set()
        elif _gc_fields(old) != _gc_fields(new) and (_may_make_garbage(new)
                                                      or _may_make_garbage(old)):
            self._dirty.set()

    def graph(self) -> dict[ObjRef, dict]:
        out = {}
        for plural, inf in self.informers.items():
            for obj in inf.cache.values():
                m = meta(obj)
                out[ObjRef(plural, m.get("namespace") or "", m.get("name", ""), m.get("uid", ""))] = obj
        return out

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Collect garbage whenever the graph changes; never returns unless cancelled."""
        task_status.started()
        while True:
            await self._dirty.wait()
            self._dirty = trio.Event()
            started = trio.current_time()
            try:
                await self.collect(plan_gc(self.graph()))
            except ApiError as exc:
                log.debug("gc pass: %s", exc)
                self._dirty.set()
            # A pass walks the whole graph: on a big cluster under churn, rest at least twice as
            # long as the pass took, so the collector never takes more than a third of the CPU.
            await trio.sleep(max(PASS_INTERVAL, 2 * (trio.current_time() - started)))

    async def _owner_exists(self, obj: dict) -> bool:
        """Ask the store (not the caches, which may lag each other) whether any owner still exists."""
        ns = meta(obj).get("namespace")
        for ref in meta(obj).get("ownerReferences") or []:
            rtype = kinds.by_kind(ref.get("apiVersion", ""), ref.get("kind", ""))
            if rtype is None:
                continue
            try:
                owner = await self.registry.get(rtype, ns if rtype.namespaced else None, ref.get("name", ""))
            except ApiError as exc:
                if exc.code == 404:
                    continue
                raise
            if meta(owner).get("uid") == ref.get("uid"):
                return True
        return False

    async def _delete(self, ref: ObjRef, policy: str) -> None:
        try:
            await self.registry.delete(
                ref.plural, ref.namespace or None, ref.name, propagation_policy=policy, preconditions={"uid": ref.uid}
            )
        except ApiError as exc:
            if exc.code not in (404, 409):
                raise

    async def collect(self, plan: GCPlan) -> None:
        graph = None
        if plan.delete_background or plan.orphan or plan.finalize:
            graph = self.graph()
        for ref in plan.delete_background:
            obj = (graph or {}).get(ref)
            if obj is not None and await self._owner_exists(obj):
                continue
            await self._delete(ref, "Background")
        for ref in plan.delete_foreground:
            await self._delete(ref, "Foreground")
        for ref, owner_uids in plan.orphan.items():
            obj = (graph or {}).get(ref)
            if obj is None:
                continue
            body = copy.deepcopy(obj)
            body["metadata"]["ownerReferences"] = [
                r for r in body["metadata"].get("ownerReferences") or [] if r.get("uid") not in owner_uids
            ]
            await self._update(ref, body)
        for ref, finalizer in plan.finalize.items():
            obj = (graph or {}).get(ref)
            if obj is None:
                continue
            body = copy.deepcopy(obj)
            body["metadata"]["finalizers"] = [f for f in body["metadata"].get("finalizers") or [] if f != finalizer]
            await self._update(ref, body)

    async def _update(self, ref: ObjRef, body: dict) -> None:
        try:
            await self.registry.update(ref.plural, ref.namespace or None, ref.name, body)
        except ApiError as exc:
            if exc.code == 409:
                self._dirty.set()  # changed meanwhile: the next pass re-plans
            elif exc.code != 404:
                raise
