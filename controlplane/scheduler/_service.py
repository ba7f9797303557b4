"""The scheduling loop: pending pods in, batched bindings out.

Pods are scheduled one after another against the in-memory snapshot (each choice is *assumed*
at once, so the next pod sees the node's reduced room), and the bindings of a whole batch are
committed in one store round (one Raft entry) through ``Registry.bind_many``. A binding that
loses a race (the pod changed, another scheduler bound it) is forgotten from the snapshot and
the pod re-examined from the informer's view.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any

import trio

from controlplane.controllers._informer import Informer, object_key
from controlplane.controllers._pods import now_rfc3339 as _now
from controlplane.controllers.events import EventRecorder
from controlplane.errors import ApiError

from ._framework import FitError, Scheduler
from ._snapshot import NodeInfo, PodInfo, Snapshot, _pod_holds_node

log = logging.getLogger(__name__)

# Pods scheduled per store round: large batches amortize the Raft round trip, but the store
# proposes a batch's entry (encode, encrypt, send) in one piece on the event loop: 256 pods of
# ~1 KB held it 30-40 ms of CPU at 500 pods/s; 128 halve that and still bind thousands of pods
# per second (one round every 20-50 ms).
BATCH_SIZE = 128
# Binding rounds in flight while the next batch is scheduled: the Raft round trip of a busy
# leader (0.1-0.3 s) no longer paces the scheduler (it bound ~240 pods/s at 1,000 nodes when
# each batch waited for its round).
BINDS_IN_FLIGHT = 4
# Unschedulable pods are retried on relevant node/pod changes; this is the fallback interval
# (kube-scheduler flushes its unschedulable queue after 5 minutes; we are a smaller cluster).
UNSCHEDULABLE_RETRY = 10.0
# Per-pod backoff between attempts of an unschedulable pod (kube-scheduler's podInitialBackoff
# and podMaxBackoff): cluster changes retry it, but no more often than this, so a burst of node
# or pod events does not re-run (and re-write the status of) every pending pod each time.
INITIAL_BACKOFF = 1.0
MAX_BACKOFF = 10.0
# A pending pod's PodScheduled message is rewritten at once when the kinds of reasons change,
# but when only the counts change ("0/57 nodes" -> "0/58 nodes") at most this often.
STATUS_REFRESH = 10.0
SCHEDULER_NAME = "default-scheduler"
# Pods examined between two yields to the event loop (~0.4 ms each at 1,000 nodes).
YIELD_EVERY = 16
# Pause after the store refused a whole batch (503/504), so a lost quorum is not a busy loop.
STORE_RETRY = 0.2


def _wants_scheduling(pod: dict) -> bool:
    spec = pod.get("spec") or {}
    meta = pod.get("metadata") or {}
    if spec.get("nodeName") or meta.get("deletionTimestamp"):
        return False
    if (spec.get("schedulerName") or SCHEDULER_NAME) != SCHEDULER_NAME:
        return False
    return (pod.get("status") or {}).get("phase", "Pending") == "Pending"


def _same_placement(old: dict, new: dict, *, bound_to: str | None = None) -> bool:
    """``new`` counts on its node exactly as ``old`` did: same pod, spec and labels, and it
    still holds the node (not finished). Equal sections compare fast: the informer shares them.
    With ``bound_to``, ``new`` is ``old`` bound to that node (its spec differs in nodeName only)."""
    om, nm = old.get("metadata") or {}, new.get("metadata") or {}
    old_spec = old.get("spec") or {}
    if bound_to is not None:
        old_spec = {**old_spec, "nodeName": bound_to}
    return (
        om.get("uid") == nm.get("uid")
        and old_spec == (new.get("spec") or {})
        and om.get("labels") == nm.get("labels")
        and _pod_holds_node(old) == _pod_holds_node(new)
    )


def _node_sched_view(info: NodeInfo) -> tuple:
    # The node fields that can turn an unschedulable pod schedulable.
    return (
        info.ready, info.unschedulable, info.alloc_cpu, info.alloc_memory, info.alloc_pods,
        sorted(info.labels.items()), [(t.get("key"), t.get("value"), t.get("effect")) for t in info.taints],
    )


class SchedulerService:
    """Runs the scheduler against informers of pods and nodes; writes through the registry."""

    def __init__(
        self,
        registry: Any,
        pods: Informer,
        nodes: Informer,
        recorder: EventRecorder | None = None,
        *,
        scheduler: Scheduler | None = None,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        self.registry = registry
        self.pods, self.nodes = pods, nodes
        self.recorder = recorder
        self.scheduler = scheduler or Scheduler()
        self.snapshot = Snapshot()
        self.batch_size = batch_size
        self.active: OrderedDict[str, None] = OrderedDict()
        self.unschedulable: dict[str, str] = {}  # key -> last message written
        # key -> (failed attempts, earliest next attempt on trio's clock)
        self.backoff: dict[str, tuple[int, float]] = {}
        self._retry_requested = False
        # key -> (reason kinds, when) of the last PodScheduled=False status we wrote
        self._written: dict[str, tuple[frozenset, float]] = {}
        # Pods bound by us whose bound version the informer has not delivered yet: key -> revision.
        self.assumed: dict[str, int] = {}
        self._wakeup = trio.Event()
        self.bound_total = 0
        # Pods whose binding is in flight: their informer events wait for the answer.
        self._binding: set[str] = set()
        self._binds_in_flight = trio.Semaphore(BINDS_IN_FLIGHT)
        self._store_failed = False
        pods.add_handler(self._on_pod)
        nodes.add_handler(self._on_node)

    # -- event handlers (index and enqueue only) ------------------------------------------------
    def _kick(self) -> None:
        self._wakeup.set()

    def _retry_unschedulable(self) -> None:
        # Only a flag: the loop moves the pods whose backoff has passed (one pass per batch,
        # however many events asked for it).
        if self.unschedulable:
            self._retry_requested = True
            self._kick()

    def _flush_unschedulable(self) -> float | None:
        """Move due unschedulable pods to the active queue; returns when the next one is due."""
        now = trio.current_time()
        next_due = None
        for key in self.unschedulable:
            due = self.backoff.get(key, (0, 0.0))[1]
            if due <= now:
                self.active[key] = None
            elif next_due is None or due < next_due:
                next_due = due
        self._retry_requested = next_due is not None
        return next_due

    def _forget(self, key: str) -> None:
        self.active.pop(key, None)
        self.unschedulable.pop(key, None)
        self.backoff.pop(key, None)
        self._written.pop(key, None)

    def _on_pod(self, old: dict | None, new: dict | None) -> None:
        if new is None:
            key = object_key(old or {})
            self._forget(key)
            self.assumed.pop(key, None)
            if self.snapshot.node_of(key) is not None:
                self.snapshot.remove_pod(key)
                self._retry_unschedulable()
            return
        key = object_key(new)
        rv = int(new["metadata"].get("resourceVersion") or 0)
        if (new.get("spec") or {}).get("nodeName"):
            assumed = self.assumed.pop(key, None) is not None
            self._forget(key)
            was_on = self.snapshot.node_of(key)
            if old is not None and was_on == new["spec"]["nodeName"]:
                if _same_placement(old, new):
                    # A status change of a counted pod (most events of a busy cluster): what the
                    # snapshot holds of it (requests, ports, labels, terms) cannot have changed.
                    return
                if assumed and _same_placement(old, new, bound_to=was_on) and self.snapshot.refresh_pod(key, new, old):
                    return  # our binding arrived: the assumed copy already counts it there
            self.snapshot.add_pod(new)
            if was_on is not None and self.snapshot.node_of(key) is None:
                self._retry_unschedulable()  # finished: its resources are free again
            return
        if key in self._binding or (key in self.assumed and rv <= self.assumed[key]):
            return  # an older copy than our binding: the bound version is on its way
        if self.snapshot.node_of(key) is not None:
            self.snapshot.remove_pod(key)
        if _wants_scheduling(new):
            if key not in self.unschedulable:
                self.active[key] = None
                self._kick()
        else:
            self._forget(key)

    def _on_node(self, old: dict | None, new: dict | None) -> None:
        if new is None:
            self.snapshot.remove_node((old or {}).get("metadata", {}).get("name", ""))
            return
        name = new["metadata"]["name"]
        before = self.snapshot.nodes.get(name)
        self.snapshot.upsert_node(new)
        if before is None or _node_sched_view(before) != _node_sched_view(self.snapshot.nodes[name]):
            self._retry_unschedulable()

    # -- the loop --------------------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Schedule until cancelled; the informers must be running (started) already."""
        task_status.started()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._periodic_retry)
            while True:
                next_due = self._flush_unschedulable() if self._retry_requested else None
                if not self.active:
                    self._wakeup = trio.Event()
                    with trio.move_on_at(next_due if next_due is not None else float("inf")):
                        await self._wakeup.wait()
                    continue
                await self.schedule_batch(nursery)
                # After a batch the store refused (no quorum), pause instead of spinning; the
                # leader loop cancels us anyway if the leadership is really gone.
                await trio.sleep(STORE_RETRY if self._store_failed else 0)

    async def _periodic_retry(self) -> None:
        while True:
            await trio.sleep(UNSCHEDULABLE_RETRY)
            self._retry_unschedulable()

    async def schedule_batch(self, nursery: trio.Nursery | None = None) -> None:
        """Schedule up to ``batch_size`` queued pods and commit their bindings (in a task of
        ``nursery`` when given, at most BINDS_IN_FLIGHT batches at once; else before returning)."""
        bindings: list[tuple[str, str, str]] = []
        infos: list[PodInfo] = []
        failed: list[tuple[dict, FitError]] = []
        # Equivalence classes that found no node in this batch. Later assumptions only take room
        # away, so an identical pod would fail the same way: skip its full scan of the nodes
        # (with thousands of pending replicas, that scan is where the time would go).
        hopeless: dict[tuple, FitError] = {}
        # Failures count toward the batch too: their status writes are store writes as well, and
        # one pass must never turn thousands of pending pods into one giant Raft entry.
        examined = 0
        while self.active and len(bindings) + len(failed) < self.batch_size:
            examined += 1
            if examined % YIELD_EVERY == 0:
                # Let the API server's requests in: a whole batch at once kept the event loop
                # (and every request on this master) waiting ~0.1 s at 1,000 nodes.
                await trio.lowlevel.checkpoint()
                if not self.active:
                    break
            key, _ = self.active.popitem(last=False)
            pod = self.pods.get(key)
            if pod is None or not _wants_scheduling(pod):
                continue
            info = PodInfo.from_pod(pod)
            # (the key is spelled only once a pod of this batch failed: most batches bind all)
            eq = info.equivalence_key() if hopeless else None
            if eq is not None and eq in hopeless:
                failed.append((pod, hopeless[eq]))
                continue
            result = self.scheduler.schedule(info, self.snapshot)
            if result.node is None:
                assert result.fit_error is not None
                failed.append((pod, result.fit_error))
                if eq is None:
                    eq = info.equivalence_key()
                if eq is not None:
                    hopeless[eq] = result.fit_error
                continue
            self.scheduler.assume(self.snapshot, info, result.node)
            bindings.append((info.namespace, pod["metadata"]["name"], result.node))
            infos.append(info)
        if failed:
            await self._mark_unschedulable(failed)
        if not bindings:
            return
        self._binding.update(info.key for info in infos)
        if nursery is None:
            await self._bind(bindings, infos)
        else:
            # The binding cycle runs on its own, as kube-scheduler's: the next batch is
            # scheduled against the assumed pods while this one's Raft round is in flight.
            await self._binds_in_flight.acquire()
            nursery.start_soon(self._bind, bindings, infos, True)

    async def _bind(self, bindings: list[tuple[str, str, str]], infos: list[PodInfo], release: bool = False) -> None:
        try:
            try:
                results = await self.registry.bind_many(bindings)
                self._store_failed = False
            except ApiError as exc:
                results = [exc] * len(bindings)
                self._store_failed = exc.code >= 500
            for info, (ns, name, node), res in zip(infos, bindings, results, strict=True):
                if isinstance(res, ApiError):
                    self.scheduler.forget(self.snapshot, info)
                    if res.code != 404:
                        log.debug("binding %s/%s to %s failed: %s", ns, name, node, res)
                        latest = self.pods.get(info.key)
                        if latest is not None and _wants_scheduling(latest):
                            self.active[info.key] = None
                            self._kick()
                    continue
                self.bound_total += 1
                rv = int(res["metadata"]["resourceVersion"])
                if not self.pods.reflects(info.key, rv):
                    self.assumed[info.key] = rv
                if self.recorder is not None:
                    self.recorder.event(res, "Normal", "Scheduled", f"Successfully assigned {ns}/{name} to {node}")
        finally:
            self._binding.difference_update(info.key for info in infos)
            if release:
                self._binds_in_flight.release()

    async def _mark_unschedulable(self, failed: list[tuple[dict, FitError]]) -> None:
        updates = []
        now = trio.current_time()
        for pod, fit_error in failed:
            key = object_key(pod)
            message = fit_error.message()
            previous = self.unschedulable.get(key)
            self.unschedulable[key] = message
            attempts = self.backoff.get(key, (0, 0.0))[0] + 1
            delay = min(MAX_BACKOFF, INITIAL_BACKOFF * 2 ** (attempts - 1))
            self.backoff[key] = (attempts, now + delay)
            if previous == message:
                continue
            kinds = frozenset(fit_error.reasons)
            written = self._written.get(key)
            if written is not None and written[0] == kinds and now - written[1] < STATUS_REFRESH:
                # Only the node counts moved: not worth a store write per pending pod per
                # attempt while a cluster is growing; the message is refreshed periodically.
                continue
            self._written[key] = (kinds, now)
            status = dict(pod.get("status") or {})
            conds = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
            old = next((c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"), None)
            if old is not None and old.get("reason") == "Unschedulable" and old.get("message") == message:
                continue
            conds.append({"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                          "message": message, "lastProbeTime": None,
                          "lastTransitionTime": (old or {}).get("lastTransitionTime") if old and old.get("status") == "False" else _now()})
            status["conditions"] = conds
            body = {**pod, "status": status}
            updates.append(("pods", pod["metadata"]["namespace"], pod["metadata"]["name"], body))
            if self.recorder is not None:
                self.recorder.event(pod, "Warning", "FailedScheduling", message)
        if updates:
            try:
                results = await self.registry.update_many(updates, subresource="status")
            except ApiError as exc:
                results = [exc] * len(updates)
            for (_, ns, name, _body), res in zip(updates, results, strict=True):
                if isinstance(res, ApiError):
                    log.debug("writing PodScheduled=False for %s/%s failed: %s", ns, name, res)
                    key = f"{ns}/{name}"
                    if key in self.unschedulable:
                        self.unschedulable[key] = ""  # rewrite on the next attempt
                        self._written.pop(key, None)
