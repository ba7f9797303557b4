"""Leader duties: the scheduler and the controllers run only on the Raft leader with a quorum lease.

Leadership *is* the Raft leadership (no second election as in kube-controller-manager), so
duties resume within about one election after a failover. Each term of duties starts from a
fresh list+watch — nothing is carried over from an earlier term — and runs inside a cancel
scope that is cancelled as soon as the store reports the leadership (or its quorum lease) lost.
Even in the window before that, every write carries a resourceVersion precondition, so a deposed
leader's writes fail with 409 instead of clobbering the new leader's.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import trio

from controlplane.controllers import (
    DeploymentController,
    EndpointsController,
    EventRecorder,
    GarbageCollector,
    Informer,
    NamespaceController,
    NodeLifecycleConfig,
    NodeLifecycleController,
    ReplicaSetController,
)
from controlplane.controllers._pods import now_rfc3339
from controlplane.controllers.nodelifecycle import LEASE_NAMESPACE
from controlplane.errors import ApiError
from controlplane.scheduler import Scheduler, SchedulerService
from controlplane.scheduler._service import BATCH_SIZE

log = logging.getLogger(__name__)

# Pause before restarting duties that crashed while this replica is still the leader.
RESTART_BACKOFF = 1.0
# The Lease that tells which master holds the duties (kube-controller-manager's is named alike).
DUTIES_LEASE_NAMESPACE = "kube-system"
DUTIES_LEASE_NAME = "edgeplane-leader-duties"
# How often the duties Lease is renewed while duties run (it is informational: the Raft
# leadership, not this Lease, decides who runs them).
DUTIES_LEASE_RENEW = 5.0


@dataclass(slots=True)
class LeaderConfig:
    name: str = ""
    node_lifecycle: NodeLifecycleConfig = field(default_factory=NodeLifecycleConfig)
    # Concurrent sync workers per queue-driven controller: kube-controller-manager's default
    # --concurrent-replicaset-syncs / --concurrent-deployment-syncs. A sync spends most of its
    # time waiting for Raft rounds (a ReplicaSet's slow-start creates are 7 in a row), so with
    # 2 workers Deployments created at 5/s were worked through at ~1.6/s, one after another.
    workers: int = 5
    scheduler_batch_size: int = BATCH_SIZE
    # Set False for tests that drive a single controller by hand.
    run_scheduler: bool = True
    # Flat shortcuts for command-line flags; when set they override ``node_lifecycle``.
    node_grace_period: float | None = None
    pod_eviction_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.node_grace_period is not None:
            if self.node_grace_period <= 0:
                raise ValueError(f"node grace period must be positive, not {self.node_grace_period}")
            self.node_lifecycle.grace_period = float(self.node_grace_period)
        if self.pod_eviction_seconds is not None:
            if self.pod_eviction_seconds < 0:
                raise ValueError(f"pod eviction delay must not be negative, not {self.pod_eviction_seconds}")
            self.node_lifecycle.default_toleration_seconds = float(self.pod_eviction_seconds)


@dataclass(slots=True)
class DutiesState:
    """What the master reports in cluster status about this replica's leader duties."""

    running: bool = False
    since: float | None = None  # wall-clock time duties last started
    terms: int = 0  # how many times duties started on this replica
    holder: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"running": self.running, "since": self.since, "terms": self.terms, "holder": self.holder}


def _new_informers(registry: Any) -> dict[str, Informer]:
    """One (not yet started) informer per resource the duties watch."""
    informers = {
        plural: Informer(registry, plural)
        for plural in ("nodes", "pods", "replicasets", "deployments", "services", "endpoints", "namespaces", "configmaps")
    }
    informers["leases"] = Informer(registry, "leases", namespace=LEASE_NAMESPACE)
    return informers


class _SharedInformers:
    """The informers of the duties, kept across terms on this replica.

    They are read-only caches of the local store and stay correct whoever leads, so a short
    lapse of the leadership lease (a loaded leader misses one renewal and regains it a moment
    later) does not cost a re-list and re-decode of every object: with 30,000 pods that is
    seconds of the leader's CPU each time. They are dropped after :data:`INFORMER_LINGER`
    seconds without leadership, so a follower does not hold the caches' memory.
    """

    def __init__(self, registry: Any, nursery: trio.Nursery) -> None:
        self.registry = registry
        self.nursery = nursery
        self.informers: dict[str, Informer] | None = None
        self._scope: trio.CancelScope | None = None
        self.failed = trio.Event()

    async def get(self) -> dict[str, Informer]:
        """The informers, each synced (started, and listed, on first use)."""
        if self.informers is None:
            informers = _new_informers(self.registry)
            self._scope = trio.CancelScope()
            self.failed = trio.Event()
            self.informers = informers
            self.nursery.start_soon(self._run, informers, self._scope, self.failed)
        informers = self.informers
        for inf in informers.values():
            await inf.synced.wait()
        return informers

    async def _run(self, informers: dict[str, Informer], scope: trio.CancelScope, failed: trio.Event) -> None:
        with scope:
            try:
                async with trio.open_nursery() as nursery:
                    # List every resource at once (each list is a linearizable read).
                    for inf in informers.values():
                        nursery.start_soon(inf.run)
            except Exception:
                log.exception("leader informers crashed; the next term starts fresh ones")
                if self.informers is informers:
                    self.informers = None
                failed.set()

    def drop(self) -> None:
        if self._scope is not None:
            self._scope.cancel()
        self.informers = None
        self._scope = None


# How long this replica keeps its informers after losing the leadership: longer than a lease
# lapse under load (which is regained within a second or two), short enough that a follower
# soon frees the memory of every cached object.
INFORMER_LINGER = 30.0


async def run_leader_duties(
    registry: Any,
    store: Any,
    *,
    config: LeaderConfig | None = None,
    state: DutiesState | None = None,
    task_status: trio.TaskStatus[DutiesState] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Follow the store's leadership forever: start duties when leading, cancel them when not.

    ``task_status.started(state)`` hands back the :class:`DutiesState` the master reports.
    Returns only when the store's leadership stream ends (the store closed).
    """
    config = config or LeaderConfig()
    state = state or DutiesState()
    state.holder = config.name
    task_status.started(state)
    async with trio.open_nursery() as nursery:
        shared = _SharedInformers(registry, nursery)
        scope: trio.CancelScope | None = None
        linger: trio.CancelScope | None = None

        async def drop_later(cancel: trio.CancelScope) -> None:
            with cancel:
                await trio.sleep(INFORMER_LINGER)
                shared.drop()

        async for leading in store.leadership():
            if leading and scope is None:
                if linger is not None:
                    linger.cancel()
                    linger = None
                scope = trio.CancelScope()
                nursery.start_soon(_duties_term, shared, config, state, scope)
            elif not leading and scope is not None:
                log.info("leadership lost: stopping leader duties")
                scope.cancel()
                scope = None
                linger = trio.CancelScope()
                nursery.start_soon(drop_later, linger)
        nursery.cancel_scope.cancel()


async def _duties_term(
    shared: _SharedInformers, config: LeaderConfig, state: DutiesState, scope: trio.CancelScope
) -> None:
    with scope:
        while True:
            state.running, state.since = True, time.time()
            state.terms += 1
            log.info("leader duties starting on %s", config.name or "this replica")
            try:
                informers = await shared.get()
                async with trio.open_nursery() as nursery:
                    async def stop_if_informers_fail(failed: trio.Event = shared.failed) -> None:
                        await failed.wait()
                        raise RuntimeError("the informers stopped")

                    nursery.start_soon(stop_if_informers_fail)
                    await run_duties(shared.registry, config, informers)
            except Exception:
                log.exception("leader duties crashed; restarting")
            finally:
                state.running = False
            await trio.sleep(RESTART_BACKOFF)


async def run_duties(registry: Any, config: LeaderConfig, informers: dict[str, Informer] | None = None) -> None:
    """One term: the scheduler and every controller over ``informers`` (synced; fresh ones
    when None); returns only on error. Handlers the term registers are removed when it ends."""
    async with trio.open_nursery() as nursery:
        if informers is None:
            informers = _new_informers(registry)
            for inf in informers.values():
                nursery.start_soon(inf.run)
            for inf in informers.values():
                await inf.synced.wait()
        kept = {name: len(inf.handlers) for name, inf in informers.items()}
        try:
            await _start_duties(nursery, registry, config, informers)
            await trio.sleep_forever()
        finally:
            for name, inf in informers.items():
                del inf.handlers[kept[name]:]


async def _start_duties(nursery: trio.Nursery, registry: Any, config: LeaderConfig, i: dict[str, Informer]) -> None:
    nursery.start_soon(_hold_duties_lease, registry, config.name)
    recorder = EventRecorder(registry, "edgeplane-controller-manager", host=config.name)
    await nursery.start(recorder.run)
    # Each controller registers its handlers; the caches are replayed to them afterwards in
    # chunks (nodes first, so the scheduler's pods find their nodes), before any worker runs.
    for inf in i.values():
        inf.defer_replays()
    controllers = [
        ReplicaSetController(registry, i["replicasets"], i["pods"], recorder),
        DeploymentController(registry, i["deployments"], i["replicasets"], recorder),
        EndpointsController(registry, i["services"], i["pods"], i["endpoints"]),
        NamespaceController(registry, i["namespaces"]),
    ]
    lifecycle = NodeLifecycleController(
        registry, i["nodes"], i["leases"], i["pods"], recorder, config=config.node_lifecycle
    )
    gc = GarbageCollector(
        registry, {p: i[p] for p in ("deployments", "replicasets", "pods", "services", "configmaps", "endpoints")}
    )
    scheduler = None
    if config.run_scheduler:
        scheduler = SchedulerService(
            registry, i["pods"], i["nodes"], EventRecorder(registry, "default-scheduler", host=config.name),
            scheduler=Scheduler(), batch_size=config.scheduler_batch_size,
        )
    for name in ("namespaces", "nodes", "leases", *i):
        await i[name].replay_deferred()
    if scheduler is not None:
        await nursery.start(scheduler.recorder.run)  # type: ignore[union-attr]
        await nursery.start(scheduler.run)
    for c in controllers:
        await nursery.start(lambda task_status, c=c: c.run(workers=config.workers, task_status=task_status))
    await nursery.start(lifecycle.run)
    await nursery.start(gc.run)


async def _hold_duties_lease(registry: Any, name: str) -> None:
    """Record in a Lease which master runs the duties, so any master can report it."""
    acquired = now_rfc3339()
    while True:
        now = now_rfc3339()
        try:
            try:
                lease = await registry.get("leases", DUTIES_LEASE_NAMESPACE, DUTIES_LEASE_NAME)
            except ApiError as exc:
                if exc.code != 404:
                    raise
                lease = None
            spec = {
                "holderIdentity": name,
                "leaseDurationSeconds": int(DUTIES_LEASE_RENEW * 3),
                "acquireTime": _micro(acquired),
                "renewTime": _micro(now),
            }
            if lease is None:
                await registry.create(
                    "leases", DUTIES_LEASE_NAMESPACE,
                    {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                     "metadata": {"name": DUTIES_LEASE_NAME, "namespace": DUTIES_LEASE_NAMESPACE}, "spec": spec},
                )
            else:
                old = lease.get("spec") or {}
                if old.get("holderIdentity") != name:
                    spec["leaseTransitions"] = int(old.get("leaseTransitions") or 0) + 1
                else:
                    spec["leaseTransitions"] = int(old.get("leaseTransitions") or 0)
                    spec["acquireTime"] = old.get("acquireTime") or spec["acquireTime"]
                await registry.update(
                    "leases", DUTIES_LEASE_NAMESPACE, DUTIES_LEASE_NAME, {**lease, "spec": spec}
                )
        except ApiError as exc:
            log.debug("duties lease: %s", exc)
        await trio.sleep(DUTIES_LEASE_RENEW)


def _micro(text: str) -> str:
    # Lease times are MicroTime: RFC 3339 with microseconds.
    return text.replace("Z", ".000000Z")
