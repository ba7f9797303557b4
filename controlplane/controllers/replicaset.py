"""ReplicaSet controller: keeps exactly ``spec.replicas`` active pods per ReplicaSet."""

from __future__ import annotations

from typing import Any

import trio

from controlplane.errors import ApiError

from ._base import QueueController
from ._informer import Informer, object_key
from ._pods import controller_ref, is_terminating, key_of, meta, namespace_of, pod_is_active
from ._replicaset_plan import ReplicaSetPlan, adopt_patch, plan_replicaset, pod_from_template
from .events import EventRecorder

# Pod writes in flight per sync: parallel enough that a scale-up of hundreds is quick, bounded so
# one ReplicaSet cannot starve the others' writes.
WRITE_CONCURRENCY = 32
# Pod creates: the first batch (Kubernetes' slow start), doubling per batch up to CREATE_BATCH
# pods in one store round (100 replicas: 7 Raft entries instead of 100).
SLOW_START_INITIAL = 1
CREATE_BATCH = 64
# A pod change that moves only the ReplicaSet's status (a pod became ready) is synced this much
# later, joined with the changes that follow (kube-controller-manager's
# --endpoint-updates-batch-period does the same for Endpoints): 100 pods turning Running over a
# second cost 3 status writes instead of dozens (and as many Deployment syncs and writes).
# Changes that move the replica count (a pod gone, finished, orphaned) are synced at once.
STATUS_BATCH_PERIOD = 0.5


def _counts_alike(old: dict, new: dict) -> bool:
    """An update of a pod that changes nothing a ReplicaSet counts or adopts by: the same
    controller, labels and active-ness (only readiness, conditions, IPs... moved)."""
    return (
        controller_ref(old) == controller_ref(new)
        and meta(old).get("labels") == meta(new).get("labels")
        and pod_is_active(old) == pod_is_active(new)
    )


class ReplicaSetController(QueueController):
    name = "replicaset-controller"

    def __init__(self, registry: Any, replicasets: Informer, pods: Informer, recorder: EventRecorder | None = None) -> None:
        super().__init__()
        self.registry = registry
        self.replicasets, self.pods = replicasets, pods
        self.recorder = recorder
        # Indexes so a sync reads its own pods, not the whole namespace (a busy namespace has
        # thousands, and every binding or status change of one pod triggers its owner's sync).
        self._owned: dict[str, dict[str, dict]] = {}  # controller uid -> pod key -> pod
        self._orphans: dict[str, dict[str, dict]] = {}  # namespace -> pod key -> pod
        self._status_due: set[str] = set()  # ReplicaSets with a status-only sync scheduled
        replicasets.add_handler(self._on_rs)
        pods.add_handler(self._on_pod)

    def _on_rs(self, old: dict | None, new: dict | None) -> None:
        if old is not None and new is not None and old.get("spec") == new.get("spec") and all(
                meta(old).get(f) == meta(new).get(f) for f in ("deletionTimestamp", "labels", "ownerReferences")):
            # Its status moved (our own status write, mostly): nothing to create or delete.
            self._sync_soon(object_key(new))
            return
        self.queue.add(object_key(new or old or {}))

    def _sync_soon(self, key: str) -> None:
        """Sync ``key`` after STATUS_BATCH_PERIOD, together with what else arrives meanwhile."""
        if key not in self._status_due:
            self._status_due.add(key)
            self.queue.add_after(key, STATUS_BATCH_PERIOD)

    def _index(self, pod: dict, add: bool) -> None:
        key = key_of(pod)
        ref = controller_ref(pod)
        if ref is not None:
            bucket = self._owned.setdefault(ref.get("uid", ""), {})
        else:
            bucket = self._orphans.setdefault(namespace_of(pod), {})
        if add:
            bucket[key] = pod
        else:
            bucket.pop(key, None)

    def pods_for(self, rs: dict) -> list[dict]:
        """The ReplicaSet's own pods plus the orphans of its namespace (candidates to adopt)."""
        owned = self._owned.get(meta(rs).get("uid", ""), {})
        orphans = self._orphans.get(namespace_of(rs), {})
        return list(owned.values()) + list(orphans.values())

    def _on_pod(self, old: dict | None, new: dict | None) -> None:
        if old is not None:
            self._index(old, add=False)
        if new is not None:
            self._index(new, add=True)
        if old is not None and new is not None:
            ref = controller_ref(new)
            if ref is not None and ref.get("kind") == "ReplicaSet" and _counts_alike(old, new):
                self._sync_soon(f"{namespace_of(new)}/{ref.get('name')}")
                return
        for pod in (old, new):
            if pod is None:
                continue
            ref = controller_ref(pod)
            if ref is not None:
                if ref.get("kind") == "ReplicaSet":
                    self.queue.add(f"{namespace_of(pod)}/{ref.get('name')}")
            elif new is not None and not is_terminating(new):
                # An orphan: any ReplicaSet of its namespace may adopt it.
                for rs in self.replicasets.list(namespace_of(new)):
                    self.queue.add(key_of(rs))

    def _event(self, obj: dict, type_: str, reason: str, message: str) -> None:
        if self.recorder is not None:
            self.recorder.event(obj, type_, reason, message)

    async def sync(self, key: str) -> None:
        self._status_due.discard(key)
        rs = self.replicasets.get(key)
        if rs is None:
            return  # deleted: the garbage collector removes its pods
        plan = plan_replicaset(rs, self.pods_for(rs))
        await self.commit(rs, plan)

    async def commit(self, rs: dict, plan: ReplicaSetPlan) -> None:
        ns = namespace_of(rs)
        created: list[tuple[str, int]] = []
        deleted: list[str] = []
        errors: list[ApiError] = []
        limit = trio.CapacityLimiter(WRITE_CONCURRENCY)

        async def adopt(pod: dict) -> None:
            async with limit:
                try:
                    await self.registry.update("pods", ns, meta(pod)["name"], adopt_patch(rs, pod))
                except ApiError as exc:
                    errors.append(exc)

        async def create_all(count: int) -> None:
            # Kubernetes' slowStartBatch: batches of 1, 2, 4, ... pods, stopping after a batch
            # with a failure (a quota or a bad template fails the same way each time); each
            # batch is one store round (one Raft entry) instead of one per pod.
            size = SLOW_START_INITIAL
            while count > 0:
                batch = min(size, count, CREATE_BATCH)
                try:
                    results = await self.registry.create_many(
                        "pods", [(ns, pod_from_template(rs)) for _ in range(batch)])
                except ApiError as exc:
                    results = [exc] * batch
                failed = False
                for result in results:
                    if isinstance(result, ApiError):
                        failed = True
                        errors.append(result)
                        self._event(rs, "Warning", "FailedCreate", f"Error creating: {result}")
                        continue
                    created.append((key_of(result), int(meta(result)["resourceVersion"])))
                    self._event(rs, "Normal", "SuccessfulCreate", f"Created pod: {meta(result)['name']}")
                if failed:
                    return
                count -= batch
                size *= 2

        async def delete(pod: dict) -> None:
            m = meta(pod)
            async with limit:
                try:
                    await self.registry.delete(
                        "pods", ns, m["name"], preconditions={"uid": m.get("uid"), "resourceVersion": m.get("resourceVersion")}
                    )
                except ApiError as exc:
                    if exc.code != 404:
                        errors.append(exc)
                    return
                deleted.append(key_of(pod))
                self._event(rs, "Normal", "SuccessfulDelete", f"Deleted pod: {m['name']}")

        async with trio.open_nursery() as nursery:
            for pod in plan.adopt:
                nursery.start_soon(adopt, pod)
            if plan.create:
                nursery.start_soon(create_all, plan.create)
            for pod in plan.delete:
                nursery.start_soon(delete, pod)

        # Expectations: the next sync must see these writes, or it would count stale pods.
        def seen() -> bool:
            if not all(self.pods.reflects(k, rv) for k, rv in created):
                return False
            return all(self.pods.get(k) is None or is_terminating(self.pods.get(k) or {}) for k in deleted)

        if created or deleted:
            await self.pods.wait_for(seen)
        await self._write_status(rs, plan.status)
        if errors:
            raise errors[0]

    async def _write_status(self, rs: dict, status: dict) -> None:
        if status == (rs.get("status") or {}):
            return
        body = {**rs, "status": status}
        done = await self.registry.update_status("replicasets", namespace_of(rs), meta(rs)["name"], body)
        # Let the cache catch up with our own write so the next sync does not act on the old one.
        await self.replicasets.wait_for(lambda: self.replicasets.reflects(key_of(done), int(meta(done)["resourceVersion"])))
