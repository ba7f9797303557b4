"""PodSyncer: converges the container runtime to the desired pods of this node.

Like the kubelet's PLEG + pod workers. A round relists the runtime's containers and, for each
pod that changed (its spec, its containers, a probe result, the end of its back-off) and is not
already being worked on, plans (`plan_pod`, pure), executes the actions, computes the status
(`compute_pod_status`, pure) and hands it to `status_sink` only if it changed. One pod's slow
action (a 30 s graceful stop, a pull) never holds up the others.

Rounds run only when something happened. With a runtime that reports container events (Docker's
event stream: the kubelet's evented PLEG) an exit is seen at once and the relist every
`relist_interval` is only a safety net; a runtime without events, or whose stream is down, is
relisted every `resync_interval` (the generic PLEG). Every timed relist syncs every pod.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from typing import Any

import trio

from ._plan import (
    BackoffPolicy,
    ContainerRecord,
    Finalize,
    Kill,
    Remove,
    Start,
    Wait,
    plan_pod,
)
from ._podspec import (
    PodConfigError,
    container_spec,
    containers_of,
    image_registry,
    is_deleting,
    pod_key,
    pod_uid,
    pull_policy,
)
from ._probes import ProbeManager
from ._runtime import (
    ContainerInfo,
    ContainerRuntime,
    ContainerRuntimeError,
    ContainerStartError,
    EventsUnsupported,
    ImagePullError,
)
from ._status import ProbeState, compute_pod_status, host_ports

log = logging.getLogger("edge_agent.podsync")

# The kubelet's generic PLEG relists every second: fast enough for restart-on-exit. Used when
# the runtime has no event stream (hollow nodes) or while it is down.
DEFAULT_RESYNC_INTERVAL = 1.0
# With the engine's event stream an exit is seen at once; relisting is only the safety net for
# an event lost without the stream breaking (the kubelet's evented PLEG relists every 300 s).
# 30 s bounds that case at a cost of one list call per 30 s (every pod is also synced then).
DEFAULT_RELIST_INTERVAL = 30.0
# A pod whose sync raised (an engine error mid-way) is retried after this long even if
# nothing else happens: soon, but never a tight loop against a failing engine.
SYNC_RETRY_S = 1.0
# Reconnecting to the engine's event stream: first retry after 0.5 s, doubling up to 5 s
# (a restarting dockerd takes a few seconds; relisting every second covers the gap).
EVENTS_RETRY_MIN = 0.5
EVENTS_RETRY_MAX = 5.0
# Key put into a remembered status to make it differ from any computed one (resend_status);
# never written anywhere.
STALE_MARK = "_edgeplaneStale"

_MISSING = object()

StatusSink = Callable[[dict[str, Any], dict[str, Any], str], None]
Finalizer = Callable[[dict[str, Any]], Awaitable[None]]


def _by_id(c: ContainerInfo) -> str:
    return c.id


class PodSyncer:
    """Runs the pods in `desired` on `runtime`.

    status_sink(pod, status, host_ports_json) is called (synchronously; it must not block)
    whenever a pod's computed status or host-port mapping changed. on_finalized(pod) is awaited
    once a pod marked for deletion has all its containers stopped and removed.
    `pull_registries`: registries this node may pull from (None: any) -- a node that must not
    reach out (tests, air-gapped sites) names only local ones; an image from elsewhere is then
    used only if already present, else reported as ErrImagePull.
    """

    def __init__(self, runtime: ContainerRuntime, *, node_name: str, node_address: str,
                 status_sink: StatusSink | None = None,
                 on_finalized: Finalizer | None = None,
                 backoff: BackoffPolicy | None = None,
                 resync_interval: float = DEFAULT_RESYNC_INTERVAL,
                 relist_interval: float = DEFAULT_RELIST_INTERVAL,
                 pull_registries: Iterable[str] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.runtime = runtime
        self.node_name = node_name
        self.node_address = node_address
        self._sink = status_sink
        self._on_finalized = on_finalized
        self.backoff = backoff or BackoffPolicy()
        self.resync_interval = resync_interval
        self.relist_interval = relist_interval
        self.pull_registries = None if pull_registries is None else set(pull_registries)
        self._clock = clock
        self.desired: dict[str, dict[str, Any]] = {}  # uid -> pod
        self.containers: dict[str, list[ContainerInfo]] = {}  # uid -> last observed
        self.statuses: dict[str, tuple[dict[str, Any], str]] = {}  # uid -> last handed out
        self._records: dict[str, dict[str, ContainerRecord]] = {}
        self._busy: set[str] = set()
        self._wake_event = trio.Event()  # set: run a round now
        self._relist_needed = True  # the next round must list the runtime's containers
        self._rearm = trio.Event()  # set: a deadline was added, recompute how long to sleep
        # Pods to sync in the next round besides those whose containers changed: a round woken
        # by one pod's event syncs that pod, not all of them (a node receiving n pods one by one
        # did n rounds over up to n pods: quadratic, most of a hollow-node runner's CPU). Every
        # pod is synced at every timed relist, and on `wake()`.
        self._dirty: set[str] = set()
        # uid -> time.monotonic() when the pod's worker last changed its containers: a listing
        # begun before that is stale for the pod (it may lack a container just started).
        self._acted_at: dict[str, float] = {}
        self._all_dirty = True
        self._last_full_round = float("-inf")
        self._last_relist = float("-inf")
        # uid -> time.monotonic() at which the pod must be synced again without any other
        # change: the end of a back-off (its Wait action), or the retry of a failed sync.
        self._deadlines: dict[str, float] = {}
        # The runtime's event stream (evented PLEG), when it has one: while it is live the
        # syncer relists every relist_interval only; else every resync_interval.
        self.events_live = False
        self.events_connects = 0  # subscriptions made (tests: reconnects)
        self.container_events = 0  # events received
        self._events_retry = EVENTS_RETRY_MIN
        self.probes = ProbeManager(runtime, self.wake)
        # Whether `desired` is the whole truth, so containers of unknown pods may be removed.
        # An agent with masters sets this only once it has their list: a node that lost its
        # cache must not kill its pods before anyone has said they are gone.
        self.authoritative = True
        self.rounds = 0  # completed relist rounds (tests wait on progress)
        self.relists = 0  # successful list calls (tests: nothing relists while idle)
        self._round_done = trio.Event()
        self.echoes_skipped = 0  # status-only pod updates that needed no sync (benchmarks)
        self.inline_syncs = 0  # syncs done in the round itself (no actions to await)
        self.task_syncs = 0  # syncs with actions, each in a worker task of its own

    # ---- desired state (called by the agent: cache recovery, API list/watch) -------------

    def set_pods(self, pods: Iterable[dict[str, Any]]) -> None:
        """Replace the whole desired set (an authoritative list); missing pods get stopped."""
        self.desired = {pod_uid(p): p for p in pods if pod_uid(p)}
        self.wake()

    def upsert(self, pod: dict[str, Any]) -> None:
        uid = pod_uid(pod)
        if uid:
            if self._only_status_moved(uid, pod):
                # The watch echo of our own status write: a sync would plan nothing and compute
                # the same status. Keep the newer object (its status is what probes resume from)
                # without one. (Someone else's status, e.g. the node controller's NotReady,
                # lacks ours: synced, and the agent calls resend_status.)
                self.desired[uid] = pod
                self.echoes_skipped += 1
                return
            self.desired[uid] = pod
            self._wake_pod(uid)

    def _only_status_moved(self, uid: str, pod: dict[str, Any]) -> bool:
        """Whether `pod` differs from the desired copy in its status and resourceVersion only,
        while no worker holds the pod, and its status holds every field of the one last handed
        out (the echo of this node's own write). Any change of spec or metadata (a deletion's
        deletionTimestamp, labels, annotations) is synced."""
        old = self.desired.get(uid)
        if old is None or uid in self._busy or uid in self._dirty:
            return False
        last = self.statuses.get(uid)
        if last is None:
            return False
        # Our status is merged into the stored one (a merge patch): fields set by others
        # (qosClass by the API server) stay, so ours must be contained, not equal.
        status = pod.get("status") or {}
        if not all(status.get(k, _MISSING) == v for k, v in last[0].items()):
            return False
        if pod.get("spec") != old.get("spec"):
            return False
        md, old_md = pod.get("metadata") or {}, old.get("metadata") or {}
        if len(md) != len(old_md):
            return False
        return all(k == "resourceVersion" or old_md.get(k, _MISSING) == v
                   for k, v in md.items())

    def remove(self, uid: str) -> None:
        self.desired.pop(uid, None)
        self._wake_pod(uid)

    def forget_status(self, uid: str) -> None:
        """Make the next computed status be handed out even if unchanged (after a re-list)."""
        self.statuses.pop(uid, None)
        self._wake_pod(uid)

    def resend_status(self, uid: str) -> None:
        """Hand out the next computed status even if unchanged, keeping the last one's
        transition times: the API's copy was changed by someone else (the node controller marks
        a silent node's pods NotReady) and must be brought back to what the node sees."""
        last = self.statuses.get(uid)
        if last is not None:
            self.statuses[uid] = ({**last[0], STALE_MARK: True}, last[1])
            self._wake_pod(uid)

    def wake(self) -> None:
        """Run a round now, relisting and syncing every pod."""
        self._all_dirty = True
        self._relist_needed = True
        self._kick()

    def _wake_pod(self, uid: str) -> None:
        """Run a round now, syncing this pod (and any whose containers changed)."""
        self._dirty.add(uid)
        self._kick()

    def find_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        for pod in self.desired.values():
            if pod_key(pod) == f"{namespace}/{name}":
                return pod
        return None

    async def wait_rounds(self, n: int = 1) -> None:
        """Wait until `n` more relist rounds have completed (tests, benchmarks)."""
        target = self.rounds + n
        while self.rounds < target:
            self.wake()
            await self._round_done.wait()

    # ---- the loop -------------------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                    ) -> None:
        """Converge forever (never returns unless cancelled). Started once the first relist
        round has been dispatched, i.e. once recovered pods' containers were adopted."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.probes.serve)
            follow = getattr(self.runtime, "follow_events", None)
            if follow is not None:
                nursery.start_soon(self._follow_events, follow)
            started = False
            while True:
                self._wake_event = trio.Event()
                list_started = time.monotonic()
                # With the event stream live, a round for pod changes alone (a new pod, a
                # deletion) uses the last listing: every container change since would have come
                # as an event (which asks for a relist), our own starts are recorded by their
                # workers, and anything else a worker did asks for a relist too.
                relist = (self._relist_needed or not self.events_live
                          or list_started - self._last_relist >= self._relist_period()
                          or any(when <= list_started for when in self._deadlines.values()))
                stale: set[str] = set()
                if relist:
                    self._relist_needed = False
                    self._last_relist = list_started
                    # Containers started while the list is in flight may be missing from it
                    # (the runtime does not wait for starts in progress): their probes are kept.
                    tracked_before = self.probes.tracked()
                    try:
                        observed = await self.runtime.list_containers()
                    except Exception as exc:  # the engine is down: keep trying, pods stay as
                        log.warning("listing containers failed: %s", exc)  # they are
                        self._relist_needed = True
                        if not started:  # the rest of the agent (heartbeat, logs) runs anyway
                            started = True
                            task_status.started()
                        await trio.sleep(self.resync_interval)
                        continue
                    self.relists += 1
                    grouped: dict[str, list[ContainerInfo]] = {}
                    for c in sorted(observed, key=_by_id):
                        grouped.setdefault(c.pod_uid, []).append(c)
                    # Pods whose worker changed their containers while the list was in flight
                    # keep what that worker left; they are synced after a fresh listing.
                    stale = {uid for uid, t in self._acted_at.items() if t >= list_started}
                    self._acted_at = {uid: self._acted_at[uid] for uid in stale}
                    for uid in stale:
                        if uid in self.containers:
                            grouped[uid] = self.containers[uid]
                        else:
                            grouped.pop(uid, None)
                    running_ids = {c.id for c in observed if c.running}
                    self.probes.forget_all_but(
                        running_ids | (self.probes.tracked() - tracked_before))
                else:
                    # Nothing listed: no pod's containers changed since the last round (the
                    # workers keep self.containers as they act).
                    grouped = self.containers
                # The previous round's list tells which pods' containers changed since.
                last_seen, self.containers = self.containers, grouped
                now = time.monotonic()
                for uid, when in list(self._deadlines.items()):
                    if when <= now:  # a back-off ended (or a failed sync is due for a retry)
                        del self._deadlines[uid]
                        self._dirty.add(uid)
                full = self._all_dirty or now - self._last_full_round >= self._relist_period()
                if full:
                    self._all_dirty = False
                    self._last_full_round = now
                # Probe results cannot change while this loop runs (it never awaits): one look
                # for every pod (one per pod made a round over n pods O(n^2)).
                unhealthy = self.probes.unhealthy()
                if full or relist:
                    candidates = set(self.desired) | set(grouped)
                else:
                    # Without a listing no pod's containers changed, so only the dirty pods
                    # can need a sync: a round for one new pod need not look at the node's
                    # others (a round per pod over all of them, quadratic in pods per node).
                    candidates = {uid for uid in self._dirty
                                  if uid in self.desired or uid in grouped}
                for uid in candidates:
                    changed = grouped.get(uid) != last_seen.get(uid)
                    if uid in self._busy or uid in stale:
                        if changed:
                            self._dirty.add(uid)  # seen again once its worker is done
                        continue
                    if uid not in self.desired and not self.authoritative:
                        continue
                    if not (full or changed or uid in self._dirty):
                        continue  # nothing about this pod changed since it was last synced
                    self._dirty.discard(uid)
                    pod, containers = self.desired.get(uid), grouped.get(uid, [])
                    actions = self._plan_inline(uid, pod, containers, unhealthy)
                    if actions is None:
                        continue  # nothing to await: planned and reported in this round
                    self._busy.add(uid)
                    self.task_syncs += 1
                    nursery.start_soon(self._sync_pod, uid, pod, containers, actions)
                if not started:
                    started = True
                    task_status.started()
                if stale & self._dirty:
                    self._relist_needed = True  # list again for them (their workers are done)
                    self._kick()
                self.rounds += 1
                done, self._round_done = self._round_done, trio.Event()
                done.set()
                await self._sleep_until_woken()

    async def _sleep_until_woken(self) -> None:
        """Sleep until something happens: a pod change, a container event, a probe result, a
        finished action (all set _wake_event), the earliest back-off end, or the next relist
        (every second without an event stream; with one, only as the safety net for an event
        that never came)."""
        while not self._wake_event.is_set():
            self._rearm = trio.Event()
            wake_at = self._last_relist + self._relist_period()
            if self._deadlines:
                wake_at = min(wake_at, min(self._deadlines.values()))
            delay = wake_at - time.monotonic()  # (trio's clock has its own offset)
            if delay <= 0:
                return
            with trio.move_on_after(delay):
                await self._rearm.wait()

    def _kick(self) -> None:
        """Run a round (relist, then sync what is dirty or changed) now."""
        self._wake_event.set()
        self._rearm.set()

    def _relist_period(self) -> float:
        return self.relist_interval if self.events_live else self.resync_interval

    # ---- container events (evented PLEG) ----------------------------------------------------

    def _events_connected(self) -> None:
        self.events_live = True
        self.events_connects += 1
        self._relist_needed = True
        self._events_retry = EVENTS_RETRY_MIN
        self._kick()  # whatever happened while not subscribed: relist now

    def _container_event(self, container_id: str) -> None:
        self.container_events += 1
        self._relist_needed = True
        self._kick()  # the relist tells what changed, and for which pod

    async def _follow_events(self, follow: Callable[[Callable[[], None], Callable[[str], None]],
                                                     Awaitable[None]]) -> None:
        """Keep the runtime's event stream open; while it is down, relist every
        resync_interval (the generic PLEG) and reconnect with back-off."""
        while True:
            try:
                await follow(self._events_connected, self._container_event)
                log.warning("the container engine ended its event stream; relisting")
            except EventsUnsupported as exc:
                log.info("no container events (%s): relisting every %gs", exc,
                         self.resync_interval)
                self.events_live = False
                return
            except ContainerRuntimeError as exc:
                if self.events_live:
                    log.warning("container events lost: %s; relisting", exc)
                else:
                    log.debug("container events: %s", exc)
            self.events_live = False
            self._relist_needed = True
            self._kick()
            await trio.sleep(self._events_retry * random.uniform(0.8, 1.0))
            self._events_retry = min(EVENTS_RETRY_MAX, self._events_retry * 2)

    def _plan_inline(self, uid: str, pod: dict[str, Any] | None,
                     containers: list[ContainerInfo],
                     unhealthy: dict[str, int | None]) -> list[Any] | None:
        """Plan the pod's sync in the round itself. A plan with nothing to await (the pod is
        as it should be, or waits for a back-off: most syncs) is carried out here and None
        returned; else the actions, for a worker task of the pod's own (a slow stop or pull
        never holds up the round). A task per pod synced cost a hollow-node runner more than
        the sync itself."""
        self._deadlines.pop(uid, None)
        try:
            records = self._records.setdefault(uid, {})
            actions = plan_pod(pod, containers, records, unhealthy, self._clock(), self.backoff)
            waits = [a for a in actions if isinstance(a, Wait)]
            if len(waits) != len(actions):
                return actions
            self._note_waits(uid, actions)
            for action in waits:
                records.setdefault(action.container, ContainerRecord()).waiting = (
                    action.reason, action.message)
            if pod is not None:
                self._report(uid, pod, containers, records)
            self.inline_syncs += 1
        except Exception:
            log.exception("syncing pod %s failed", uid)
            self._wake_at(uid, SYNC_RETRY_S)
        return None

    def _note_waits(self, uid: str, actions: list[Any]) -> None:
        waits = [a.until for a in actions if isinstance(a, Wait)]
        if waits:  # synced again when the first back-off ends, whatever else happens
            self._wake_at(uid, min(waits) - self._clock())

    async def _sync_pod(self, uid: str, pod: dict[str, Any] | None,
                        containers: list[ContainerInfo], actions: list[Any]) -> None:
        """Carry out `actions` (planned by _plan_inline on these containers)."""
        acted = False  # containers changed: relist and sync this pod again
        started: list[ContainerInfo] = []
        try:
            records = self._records.setdefault(uid, {})
            self._note_waits(uid, actions)
            containers = list(containers)
            kills = [a for a in actions if isinstance(a, Kill)]
            if kills:
                # All at once: a pod's containers share one grace period, not one each.
                async with trio.open_nursery() as stops:
                    for kill in kills:
                        log.info("stopping container %s of pod %s (%s, grace %ss)",
                                 kill.container_id[:12], uid, kill.reason, kill.grace)
                        self.probes.forget(kill.container_id)
                        stops.start_soon(self.runtime.stop_container, kill.container_id,
                                         kill.grace)
                acted = True
            for action in actions:
                if isinstance(action, Start) and pod is not None:
                    info = await self._start(uid, pod, action, records, containers)
                    if info is not None:
                        containers.append(info)
                    if info is not None and info.running:
                        started.append(info)
                    else:  # failed (re-plan: its back-off) or already exited (crashed)
                        acted = True
                elif isinstance(action, Remove):
                    await self.runtime.remove_container(action.container_id)
                    containers = [c for c in containers if c.id != action.container_id]
                    acted = True
                elif isinstance(action, Wait):
                    records.setdefault(action.container, ContainerRecord()).waiting = (
                        action.reason, action.message)
                elif isinstance(action, Finalize):
                    await self._finalize(uid, pod)
                    return
            if pod is not None and self.desired.get(uid) is pod:
                self._report(uid, pod, containers, records)
            if started or acted:
                self._acted_at[uid] = time.monotonic()
            if started and not acted:
                # Only successful starts: what they returned is what a relist would show (the
                # runtime inspected each container once running), so neither a relist nor a
                # second sync of this pod is needed. Its exit comes as an event or relist.
                self.containers[uid] = sorted(containers, key=_by_id)
        except Exception:
            # One pod's failure must not stop the node; it is retried shortly.
            log.exception("syncing pod %s failed", uid)
            self._wake_at(uid, SYNC_RETRY_S)
        finally:
            self._busy.discard(uid)
            if acted:
                self._relist_needed = True
            if acted or uid in self._dirty:  # (dirty: changed while this worker ran)
                self._wake_pod(uid)

    def _wake_at(self, uid: str, delay: float) -> None:
        """Sync pod `uid` again in `delay` seconds (earlier if something else wakes it)."""
        when = time.monotonic() + max(0.0, delay)
        self._deadlines[uid] = min(when, self._deadlines.get(uid, when))
        self._rearm.set()  # the loop recomputes how long it may sleep (no relist)

    async def _start(self, uid: str, pod: dict[str, Any], action: Start,
                     records: dict[str, ContainerRecord],
                     containers: list[ContainerInfo]) -> ContainerInfo | None:
        cspec = next(c for c in containers_of(pod) if c.get("name") == action.container)
        rec = records.setdefault(action.container, ContainerRecord())
        image = str(cspec.get("image", ""))
        policy = pull_policy(cspec)
        present = await self.runtime.image_id(image)
        if policy == "Never" and present is None:
            message = f'Container image "{image}" is not present with pull policy of Never'
            self._failed(rec, "ErrImageNeverPull", message, "ErrImageNeverPull", message)
            return None
        if policy == "Always" or present is None:
            registry = image_registry(image)
            if self.pull_registries is not None and registry not in self.pull_registries:
                if present is None:
                    self._pull_failed(rec, image, f'failed to pull image "{image}": registry '
                                                  f'{registry} is not in this node\'s pull '
                                                  'registries')
                    return None
            else:
                if self.desired.get(uid) is pod:
                    # A pull may take minutes: say so (ContainerCreating) before waiting on it.
                    self._report(uid, pod, containers, records)
                try:
                    await self.runtime.pull_image(image)
                except ImagePullError as exc:
                    if present is None:
                        self._pull_failed(rec, image, str(exc))
                        return None
                    # Edge autonomy: a site cut off from its registry still restarts its pods
                    # from the image it has (the kubelet would fail with ErrImagePull here).
                    log.warning("pull of %s failed, using the local image: %s", image, exc)
        try:
            spec = container_spec(pod, cspec, node_name=self.node_name,
                                  node_address=self.node_address,
                                  restart_count=action.restart_count)
        except PodConfigError as exc:
            self._failed(rec, "CreateContainerConfigError", str(exc),
                         "CreateContainerConfigError", str(exc))
            return None
        try:
            info = await self.runtime.start_container(spec)
        except ContainerStartError as exc:
            log.warning("starting %s of pod %s failed: %s", action.container, pod_key(pod),
                        exc.message)
            md = pod.get("metadata") or {}
            self._failed(rec, exc.reason, exc.message, "CrashLoopBackOff",
                         f"back-off {self.backoff.next(rec.fail_backoff):g}s restarting failed "
                         f"container={action.container} pod={md.get('name')}_"
                         f"{md.get('namespace') or 'default'}({md.get('uid')})")
            return None
        log.debug("started %s of pod %s: %s", action.container, pod_key(pod), info.id[:12])
        rec.failed_at = None
        rec.fail_backoff = 0.0
        rec.waiting = None
        rec.backoff = action.next_backoff
        self.probes.track(self._probe_view(pod, info), cspec)
        return info

    def _probe_view(self, pod: dict[str, Any], c: ContainerInfo) -> ContainerInfo:
        """The container as its probes see it: a host-network pod is probed on the node's
        address (its podIP), the container having no address of its own."""
        if (pod.get("spec") or {}).get("hostNetwork") is True:
            return replace(c, ip=self.node_address)
        return c

    def _prior_probe_state(self, pod: dict[str, Any], c: ContainerInfo) -> ProbeState | None:
        """What the pod's status (from the master, or the cache) last said about container c."""
        cid = f"{self.runtime.scheme}://{c.id}"
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            if cs.get("containerID") == cid:
                ready = bool(cs.get("ready"))
                return ProbeState(ready=ready, started=bool(cs.get("started", ready)))
        return None

    def _pull_failed(self, rec: ContainerRecord, image: str, message: str) -> None:
        self._failed(rec, "ErrImagePull", message, "ImagePullBackOff",
                     f'Back-off pulling image "{image}"')

    def _failed(self, rec: ContainerRecord, reason: str, message: str, backoff_reason: str,
                backoff_message: str) -> None:
        """A start attempt failed before anything ran: show why, retry after a back-off."""
        rec.failed_at = self._clock()
        rec.fail_backoff = self.backoff.next(rec.fail_backoff)
        rec.fail_reason, rec.fail_message = backoff_reason, backoff_message
        rec.waiting = (reason, message)

    def _report(self, uid: str, pod: dict[str, Any], containers: list[ContainerInfo],
                records: dict[str, ContainerRecord]) -> None:
        for c in containers:
            if c.running:
                cspec = next((s for s in containers_of(pod) if s.get("name") == c.container_name),
                             None)
                if cspec is not None:
                    self.probes.track(self._probe_view(pod, c), cspec,
                                      self._prior_probe_state(pod, c))
        probes = {c.id: self.probes.state(c.id) for c in containers if c.running}
        last = self.statuses.get(uid)
        status = compute_pod_status(pod, containers, records, probes,
                                    node_address=self.node_address,
                                    scheme=self.runtime.scheme, now=self._clock(),
                                    old_status=last[0] if last else None)
        ports = host_ports(containers, pod)
        if self.statuses.get(uid) == (status, ports):
            return
        self.statuses[uid] = (status, ports)
        if self._sink is not None:
            self._sink(pod, status, ports)

    async def _finalize(self, uid: str, pod: dict[str, Any] | None) -> None:
        self._records.pop(uid, None)
        self.statuses.pop(uid, None)
        self.containers.pop(uid, None)
        if pod is None:
            return
        current = self.desired.get(uid)
        if current is not None and is_deleting(current):
            del self.desired[uid]
        log.info("pod %s stopped and removed", pod_key(pod))
        if self._on_finalized is not None:
            await self._on_finalized(pod)
