"""Deployment controller: Deployment -> ReplicaSets (rolling update, Recreate, rollback, scale)."""

from __future__ import annotations

import copy
from typing import Any

from controlplane.errors import ApiError

from ._base import QueueController
from ._deployment_plan import (
    REVISION_ANNOTATION,
    DeploymentPlan,
    plan_deployment,
    replica_annotations,
)
from ._informer import Informer, object_key
from ._pods import controller_ref, key_of, meta, namespace_of, now_rfc3339
from .events import EventRecorder


class DeploymentController(QueueController):
    name = "deployment-controller"

    def __init__(
        self, registry: Any, deployments: Informer, replicasets: Informer, recorder: EventRecorder | None = None
    ) -> None:
        super().__init__()
        self.registry = registry
        self.deployments, self.replicasets = deployments, replicasets
        self.recorder = recorder
        # Deployment uid -> ReplicaSet key -> ReplicaSet it controls: a sync (one per status
        # change of any of its ReplicaSets) reads its own few, not every ReplicaSet of the
        # namespace (300 Deployments in one namespace made each sync walk 300).
        self._owned: dict[str, dict[str, dict]] = {}
        deployments.add_handler(self._on_deployment)
        replicasets.add_handler(self._on_rs)

    def _on_deployment(self, old: dict | None, new: dict | None) -> None:
        self.queue.add(object_key(new or old or {}))

    def _index(self, rs: dict, add: bool) -> None:
        # (the same shape as ReplicaSetController's pod index: drop the old version, add the new)
        ref = controller_ref(rs)
        if ref is None:
            return
        uid = ref.get("uid", "")
        if add:
            self._owned.setdefault(uid, {})[key_of(rs)] = rs
            return
        bucket = self._owned.get(uid)
        if bucket is not None:
            bucket.pop(key_of(rs), None)
            if not bucket:
                del self._owned[uid]

    def owned(self, d: dict) -> list[dict]:
        """The ReplicaSets ``d`` controls (plan_deployment's owned_replicasets, from the index)."""
        return list(self._owned.get(meta(d).get("uid", ""), {}).values())

    def _on_rs(self, old: dict | None, new: dict | None) -> None:
        if old is not None:
            self._index(old, add=False)
        if new is not None:
            self._index(new, add=True)
        for rs in (old, new):
            ref = controller_ref(rs) if rs is not None else None
            if ref is not None and ref.get("kind") == "Deployment":
                self.queue.add(f"{namespace_of(rs or {})}/{ref.get('name')}")

    def _event(self, obj: dict, reason: str, message: str) -> None:
        if self.recorder is not None:
            self.recorder.event(obj, "Normal", reason, message)

    async def sync(self, key: str) -> None:
        d = self.deployments.get(key)
        if d is None or meta(d).get("deletionTimestamp"):
            return
        plan = plan_deployment(d, self.owned(d), now_rfc3339())
        await self.commit(d, plan)
        if plan.recheck_after is not None:
            self.queue.add_after(key, plan.recheck_after)

    async def commit(self, d: dict, plan: DeploymentPlan) -> None:
        ns = namespace_of(d)
        written: list[tuple[str, int]] = []
        if plan.create is not None:
            # A 409 here means the name exists (our informer lags): retried with backoff.
            rs = await self.registry.create("replicasets", ns, plan.create)
            written.append((key_of(rs), int(meta(rs)["resourceVersion"])))
            replicas = rs["spec"]["replicas"]
            self._event(d, "ScalingReplicaSet", f"Scaled up replica set {meta(rs)['name']} from 0 to {replicas}")
        by_name = {meta(rs)["name"]: rs for rs in self.owned(d)}
        for name in sorted(set(plan.scale) | set(plan.set_revision) | plan.annotate):
            current = by_name.get(name)
            if current is None:
                continue
            body = copy.deepcopy(current)
            annotations = body["metadata"].setdefault("annotations", {})
            if name in plan.set_revision:
                annotations[REVISION_ANNOTATION] = str(plan.set_revision[name])
            if name in plan.scale or name in plan.annotate:
                # the size it is scaled for: the next proportional scale takes shares of it
                annotations.update(replica_annotations(d))
            if name in plan.scale:
                before = body["spec"].get("replicas", 1)
                body["spec"]["replicas"] = plan.scale[name]
            updated = await self.registry.update("replicasets", ns, name, body)
            written.append((key_of(updated), int(meta(updated)["resourceVersion"])))
            if name in plan.scale:
                direction = "up" if plan.scale[name] > before else "down"
                self._event(
                    d, "ScalingReplicaSet", f"Scaled {direction} replica set {name} from {before} to {plan.scale[name]}"
                )
        for name in plan.delete:
            current = by_name.get(name)
            if current is None:
                continue
            try:
                await self.registry.delete(
                    "replicasets", ns, name,
                    preconditions={"uid": meta(current).get("uid"), "resourceVersion": meta(current).get("resourceVersion")},
                )
            except ApiError as exc:
                if exc.code != 404:
                    raise
        if written:
            await self.replicasets.wait_for(lambda: all(self.replicasets.reflects(k, rv) for k, rv in written))
        await self._write_deployment(d, plan)

    async def _write_deployment(self, d: dict, plan: DeploymentPlan) -> None:
        ns, name = namespace_of(d), meta(d)["name"]
        annotations = meta(d).get("annotations") or {}
        if plan.deployment_revision and annotations.get(REVISION_ANNOTATION) != plan.deployment_revision:
            body = copy.deepcopy(d)
            body["metadata"].setdefault("annotations", {})[REVISION_ANNOTATION] = plan.deployment_revision
            d = await self.registry.update("deployments", ns, name, body)
        if plan.status != (d.get("status") or {}):
            d = await self.registry.update_status("deployments", ns, name, {**d, "status": plan.status})
        rv = int(meta(d)["resourceVersion"])
        await self.deployments.wait_for(lambda: self.deployments.reflects(key_of(d), rv))
