"""Node lifecycle controller: Lease silence -> NotReady + unreachable taint -> pod eviction.

Runs as a monitor loop rather than a key queue: health is a function of *time passing* (a Lease
that does not change), which no event announces. Times come from ``trio.current_time()``, this
process's monotonic clock; see ``_nodelifecycle_plan`` for why the Lease's own timestamps are
never compared with it.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from controlplane.errors import ApiError

from ._informer import Informer, object_key
from ._nodelifecycle_plan import (
    LeaseObserver,
    NodeLifecycleConfig,
    TokenBucket,
    clear_unreachable,
    eviction_delay,
    evictions_allowed,
    has_unreachable_taint,
    mark_unreachable,
    pod_not_ready,
)
from ._pods import meta, now_rfc3339
from .events import EventRecorder

log = logging.getLogger(__name__)

# How often node health is re-judged: a small fraction of the 8 s grace period, so detection
# lands within grace + 0.5 s.
MONITOR_PERIOD = 0.5
# Namespace of the agents' heartbeat Leases (Kubernetes' layout).
LEASE_NAMESPACE = "kube-node-lease"


class NodeLifecycleController:
    name = "node-lifecycle-controller"

    def __init__(
        self,
        registry: Any,
        nodes: Informer,
        leases: Informer,
        pods: Informer,
        recorder: EventRecorder | None = None,
        *,
        config: NodeLifecycleConfig | None = None,
    ) -> None:
        self.registry = registry
        self.nodes, self.leases, self.pods = nodes, leases, pods
        self.recorder = recorder
        self.config = config or NodeLifecycleConfig()
        self.observer = LeaseObserver()
        # node -> when this leader first judged it unreachable (the eviction clock starts there)
        self.unreachable_since: dict[str, float] = {}
        self.bucket = TokenBucket(self.config.eviction_qps, self.config.eviction_burst, trio.current_time())
        self.evicted: set[str] = set()
        # A fresh leader has seen no renewal yet: every node starts a full grace period now.
        # node -> pod key -> pod, kept by the pods handler: a monitor pass every half second
        # must not walk every pod of the cluster (30,000 at scale) to find a node's pods.
        self._by_node: dict[str, dict[str, dict]] = {}
        nodes.add_handler(self._on_node)
        leases.add_handler(self._on_lease)
        pods.add_handler(self._on_pod)

    def _on_pod(self, old: dict | None, new: dict | None) -> None:
        if old is not None:
            node = (old.get("spec") or {}).get("nodeName")
            bucket = self._by_node.get(node) if isinstance(node, str) else None
            if bucket is not None and isinstance(node, str):
                bucket.pop(object_key(old), None)
                if not bucket:
                    del self._by_node[node]
        if new is not None:
            node = (new.get("spec") or {}).get("nodeName")
            if node:
                self._by_node.setdefault(node, {})[object_key(new)] = new

    def pods_on(self, node: str) -> list[dict]:
        return list(self._by_node.get(node, {}).values())

    def _on_node(self, old: dict | None, new: dict | None) -> None:
        if new is None:
            name = meta(old or {}).get("name", "")
            self.observer.forget(name)
            self.unreachable_since.pop(name, None)
            return
        self.observer.first_sight(meta(new)["name"], trio.current_time())

    def _on_lease(self, old: dict | None, new: dict | None) -> None:
        if new is None:
            return
        spec = new.get("spec") or {}
        # Any change of the Lease counts as a renewal; renewTime is only a change marker here.
        marker = (spec.get("renewTime"), meta(new).get("resourceVersion"))
        self.observer.observe(meta(new)["name"], marker, trio.current_time())

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Monitor until cancelled; informers must be running."""
        task_status.started()
        while True:
            try:
                await self.monitor_once()
            except ApiError as exc:
                log.debug("node monitor: %s", exc)
            await trio.sleep(MONITOR_PERIOD)

    def _event(self, obj: dict, type_: str, reason: str, message: str) -> None:
        if self.recorder is not None:
            self.recorder.event(obj, type_, reason, message)

    async def monitor_once(self) -> None:
        now = trio.current_time()
        now_text = now_rfc3339()
        nodes = self.nodes.list()
        unreachable = []
        for node in nodes:
            name = meta(node)["name"]
            try:
                if self.observer.unreachable(name, now, self.config.grace_period):
                    unreachable.append(node)
                    self.unreachable_since.setdefault(name, now)
                    await self._mark(node, now_text, self.pods_on(name))
                else:
                    self.unreachable_since.pop(name, None)
                    cleared = clear_unreachable(node)
                    if cleared is not None:
                        await self.registry.update("nodes", None, name, cleared)
            except ApiError as exc:
                # The agent wrote its Node meanwhile (409) or it is gone (404): the next pass,
                # half a second later, works from the fresh copy; other nodes go on.
                if exc.code not in (404, 409):
                    raise
        if unreachable and evictions_allowed(len(nodes), len(unreachable)):
            await self._evict(now)
        elif unreachable:
            log.warning(
                "%d of %d nodes unreachable: not evicting (the masters are likely the ones cut off)",
                len(unreachable), len(nodes),
            )
        await self._collect_orphans({meta(n)["name"] for n in nodes})

    async def _mark(self, node: dict, now_text: str, pods: list[dict]) -> None:
        name = meta(node)["name"]
        spec_change, status_change = mark_unreachable(node, now_text)
        if spec_change is not None:
            node = await self.registry.update("nodes", None, name, spec_change)
        if status_change is not None:
            body = {**node, "status": status_change["status"]}
            await self.registry.update_status("nodes", None, name, body)
            self._event(node, "Normal", "NodeNotReady", f"Node {name} status is now: NodeNotReady")
        for pod in pods:
            changed = pod_not_ready(pod, now_text)
            if changed is not None:
                try:
                    await self.registry.update_status("pods", meta(pod)["namespace"], meta(pod)["name"], changed)
                except ApiError as exc:
                    if exc.code not in (404, 409):
                        raise

    async def _evict(self, now: float) -> None:
        for node, since in list(self.unreachable_since.items()):
            for pod in self.pods_on(node):
                if not await self._maybe_evict(pod, now, since):
                    return  # rate limit reached: the next monitor pass continues

    async def _maybe_evict(self, pod: dict, now: float, since: float) -> bool:
        """Evict ``pod`` if its toleration has run out; False when the rate limit stops us."""
        pm = meta(pod)
        if pm.get("deletionTimestamp") or pm.get("uid") in self.evicted:
            return True
        delay = eviction_delay(pod, self.config.default_toleration_seconds)
        if delay is None or now < since + delay:
            return True
        if not self.bucket.take(now):
            return False
        try:
            await self.registry.delete("pods", pm["namespace"], pm["name"], preconditions={"uid": pm.get("uid")})
        except ApiError as exc:
            if exc.code not in (404, 409):
                raise
            return True
        self.evicted.add(pm.get("uid", ""))
        self._event(pod, "Normal", "TaintManagerEviction", f"Marking for deletion Pod {pm['namespace']}/{pm['name']}")
        return True

    async def _collect_orphans(self, node_names: set[str]) -> None:
        """Pods bound to a node that no longer exists can never be cleaned up by an agent."""
        if not self.nodes.synced.is_set():
            return
        for node in [n for n in self._by_node if n not in node_names]:
            pods = self.pods_on(node)
            # The caches may lag each other: ask the store whether the node really is gone.
            try:
                await self.registry.get("nodes", None, node)
                continue
            except ApiError as exc:
                if exc.code != 404:
                    raise
            for pod in pods:
                pm = meta(pod)
                try:
                    await self.registry.delete(
                        "pods", pm["namespace"], pm["name"], grace_period_seconds=0,
                        preconditions={"uid": pm.get("uid")},
                    )
                except ApiError as exc:
                    if exc.code not in (404, 409):
                        raise


__all__ = ["NodeLifecycleController", "NodeLifecycleConfig", "LEASE_NAMESPACE", "has_unreachable_taint"]
