"""The pod sync decision: a pure function from (desired pod, observed containers, agent memory)
to a list of actions. No I/O, no clock: `now` is an argument, so tests drive it step by step.

Restart back-off follows the kubelet: the first restart is immediate, then the container waits
`base`, `2*base`, ... up to `cap` after each exit (CrashLoopBackOff); a container that stayed up
for 2*cap starts over at the first step. Image pulls back off the same way (ImagePullBackOff).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ._podspec import containers_of, grace_seconds, is_deleting, restart_policy
from ._runtime import ContainerInfo

# Kubelet's crash-loop back-off: 10 s doubling up to 5 minutes.
DEFAULT_BACKOFF_BASE = 10.0
DEFAULT_BACKOFF_CAP = 300.0


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    base: float = DEFAULT_BACKOFF_BASE
    cap: float = DEFAULT_BACKOFF_CAP

    def next(self, current: float) -> float:
        return self.base if current <= 0 else min(self.cap, current * 2)


@dataclass(slots=True)
class ContainerRecord:
    """What the agent remembers about one container of a pod between syncs (not in Docker)."""

    backoff: float = 0.0  # crash back-off to apply after the next exit (0: restart at once)
    # A start attempt that failed before a container ran (pull, config, create/start error)
    # is retried after `fail_backoff`, shown meanwhile as (`fail_reason`, `fail_message`).
    fail_backoff: float = 0.0
    failed_at: float | None = None
    fail_reason: str = "ImagePullBackOff"
    fail_message: str = ""
    # (reason, message) to show while no container of this name is running.
    waiting: tuple[str, str] | None = None


# ---- actions -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Start:
    """Ensure the image per policy, then create and start the container."""
    container: str
    restart_count: int
    next_backoff: float  # crash back-off to record once this start happens


@dataclass(frozen=True, slots=True)
class Kill:
    """Stop a running container gracefully (SIGTERM, then SIGKILL after `grace`)."""
    container_id: str
    grace: int
    reason: str


@dataclass(frozen=True, slots=True)
class Remove:
    container_id: str


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing to do until back-off expires; shown as the container's waiting reason."""
    container: str
    reason: str
    message: str
    until: float  # when the back-off ends (the `now` clock): the pod must be synced again then


@dataclass(frozen=True, slots=True)
class Finalize:
    """The pod is being deleted (or is gone) and every container is removed."""


Action = Start | Kill | Remove | Wait | Finalize


@dataclass(slots=True)
class PodPlan:
    actions: list[Action] = field(default_factory=list)

    def add(self, action: Action) -> None:
        self.actions.append(action)


def _by_age(containers: list[ContainerInfo]) -> list[ContainerInfo]:
    return sorted(containers, key=lambda c: (c.restart_count, c.created_at, c.id))


def _wants_restart(policy: str, exit_code: int | None) -> bool:
    if policy == "Always":
        return True
    if policy == "OnFailure":
        return exit_code != 0
    return False


def _teardown(containers: list[ContainerInfo], grace: int, reason: str) -> list[Action]:
    """Stop what runs; once nothing runs, remove everything and finalize."""
    running = [c for c in containers if c.running]
    if running:
        return [Kill(c.id, grace, reason) for c in running]
    return [*(Remove(c.id) for c in containers), Finalize()]


def plan_pod(pod: dict[str, Any] | None, containers: list[ContainerInfo],
             records: dict[str, ContainerRecord], unhealthy: dict[str, int | None],
             now: float, backoff: BackoffPolicy) -> list[Action]:
    """Decide what to do for one pod.

    `pod` is None when the pod is no longer desired (deleted while away, or never ours);
    `containers` are this pod's containers as observed; `records` the agent's memory per
    container name; `unhealthy` maps container IDs whose liveness (or startup) probe failed
    to the probe's own grace period (or None).
    """
    if pod is None:
        grace = max((c.grace_seconds for c in containers), default=0)
        return _teardown(containers, grace, "orphaned")
    if is_deleting(pod):
        return _teardown(containers, grace_seconds(pod), "deleted")

    plan: list[Action] = []
    policy = restart_policy(pod)
    md = pod.get("metadata") or {}
    pod_ref = f"{md.get('name')}_{md.get('namespace') or 'default'}({md.get('uid')})"
    spec_containers = {str(c.get("name")): c for c in containers_of(pod)}
    grouped: dict[str, list[ContainerInfo]] = {}
    for c in containers:
        grouped.setdefault(c.container_name, []).append(c)

    # Containers whose name left the spec (never for a valid pod, but the cache may be old).
    for name, group in grouped.items():
        if name not in spec_containers:
            plan.extend(Kill(c.id, grace_seconds(pod), "not in spec") if c.running
                        else Remove(c.id) for c in group)

    for name, cspec in spec_containers.items():
        mine = _by_age(grouped.get(name, []))
        rec = records.get(name) or ContainerRecord()
        running = [c for c in mine if c.running]
        # The container that counts: the newest running one if any (a second running one is a
        # duplicate from an interrupted restart), else the newest. One exited container before
        # it is kept (lastState, logs --previous); older ones are removed.
        latest = running[-1] if running else (mine[-1] if mine else None)
        plan.extend(Kill(c.id, grace_seconds(pod), "duplicate") for c in running[:-1])
        stopped = [c for c in mine if not c.running and c is not latest]
        plan.extend(Remove(c.id) for c in stopped[:-1])

        if latest is not None and latest.running:
            if latest.id in unhealthy:
                probe_grace = unhealthy[latest.id]
                plan.append(Kill(latest.id, grace_seconds(pod) if probe_grace is None
                                 else int(probe_grace), "liveness probe failed"))
            elif latest.image != cspec.get("image"):
                plan.append(Kill(latest.id, grace_seconds(pod), "image changed"))
            continue

        if latest is not None and latest.state == "created":
            # Created but never started (the agent stopped half-way): replace it.
            plan.append(Remove(latest.id))
            continue

        restart_count = 0
        next_backoff = rec.backoff
        if latest is not None:  # exited
            if not _wants_restart(policy, latest.exit_code):
                continue
            finished = latest.finished_at if latest.finished_at is not None else now
            current = rec.backoff
            if now - finished >= 2 * backoff.cap:
                current = 0.0  # it ran (or waited) long enough: forget earlier crashes
            if current > 0 and now - finished < current:
                plan.append(Wait(name, "CrashLoopBackOff",
                                 f"back-off {current:g}s restarting failed container={name} "
                                 f"pod={pod_ref}", finished + current))
                continue
            restart_count = latest.restart_count + 1
            next_backoff = backoff.next(current)
        if rec.failed_at is not None and now - rec.failed_at < rec.fail_backoff:
            plan.append(Wait(name, rec.fail_reason, rec.fail_message,
                             rec.failed_at + rec.fail_backoff))
            continue
        plan.append(Start(name, restart_count, next_backoff))
    return plan


def pod_finished(pod: dict[str, Any], containers: list[ContainerInfo]) -> bool:
    """True when no container will run again (restartPolicy Never/OnFailure, all done)."""
    policy = restart_policy(pod)
    if policy == "Always":
        return False
    latest: dict[str, ContainerInfo] = {}
    for c in _by_age(containers):
        latest[c.container_name] = c
    for cspec in containers_of(pod):
        last = latest.get(str(cspec.get("name")))
        if last is None or last.state != "exited" or _wants_restart(policy, last.exit_code):
            return False
    return True
