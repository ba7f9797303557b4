"""Deployment reconciliation as pure functions: (Deployment, its ReplicaSets) -> plan.

Follows Kubernetes' deployment controller: the new ReplicaSet is the one whose pod template
equals the Deployment's (ignoring the pod-template-hash label); rolling updates scale it up within
maxSurge and the old ones down within maxUnavailable; Recreate scales old ones to zero first.
A change of spec.replicas (a scaling event: an active ReplicaSet's desired-replicas annotation
differs from it) or any sync of a paused Deployment only scales, and mid-rollout it spreads the
change over the active ReplicaSets in proportion to their sizes (Kubernetes' sync.go `scale`).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

from controlplane.objects import pod_template_hash as template_hash

from ._pods import meta, name_of, parse_time, set_condition, uid_of

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
DESIRED_REPLICAS_ANNOTATION = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS_ANNOTATION = "deployment.kubernetes.io/max-replicas"
HASH_LABEL = "pod-template-hash"
# Kubernetes' default revisionHistoryLimit: old ReplicaSets kept for `rollout undo`.
DEFAULT_REVISION_HISTORY_LIMIT = 10
# Kubernetes' default progressDeadlineSeconds: a rollout without progress this long has failed.
DEFAULT_PROGRESS_DEADLINE = 600


def _normalized(template: dict) -> dict:
    """The template as Kubernetes compares it: null metadata fields are absent.

    kubectl's `rollout undo` sends the old template with ``metadata.creationTimestamp: null``
    (a Go zero value); Kubernetes' semantic equality treats that as unset, and so must we, or
    the rollback would create a third ReplicaSet instead of reviving the old one.
    """
    t = copy.deepcopy(template or {})
    tmeta = t.get("metadata")
    if isinstance(tmeta, dict):
        for key in [k for k, v in tmeta.items() if v is None or v == {}]:
            del tmeta[key]
    return t


def _strip_hash(template: dict) -> dict:
    t = _normalized(template)
    labels = (t.get("metadata") or {}).get("labels")
    if labels and HASH_LABEL in labels:
        del labels[HASH_LABEL]
    return t


def templates_equal(a: dict, b: dict) -> bool:
    return _strip_hash(a) == _strip_hash(b)


def revision_of(rs: dict) -> int:
    try:
        return int((meta(rs).get("annotations") or {}).get(REVISION_ANNOTATION, "0"))
    except ValueError:
        return 0


def _replicas(obj: dict) -> int:
    return int((obj.get("spec") or {}).get("replicas", 1))


def _status(obj: dict, name: str) -> int:
    return int((obj.get("status") or {}).get(name, 0) or 0)


def _resolve(value: object, total: int, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        try:
            pct = int(value[:-1])
        except ValueError:
            return 0
        exact = pct * total / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    try:
        return value if isinstance(value, int) else int(str(value))
    except (TypeError, ValueError):
        return 0


def surge_and_unavailable(deployment: dict) -> tuple[int, int]:
    """maxSurge (rounded up) and maxUnavailable (rounded down); both zero means unavailable 1."""
    spec = deployment.get("spec") or {}
    ru = (spec.get("strategy") or {}).get("rollingUpdate") or {}
    replicas = _replicas(deployment)
    surge = _resolve(ru.get("maxSurge", "25%"), replicas, True)
    unavailable = _resolve(ru.get("maxUnavailable", "25%"), replicas, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def max_surge(deployment: dict) -> int:
    """Kubernetes' MaxSurge: the rolling update's maxSurge; 0 for Recreate (nothing surges)."""
    if ((deployment.get("spec") or {}).get("strategy") or {}).get("type") == "Recreate":
        return 0
    return surge_and_unavailable(deployment)[0]


def _annotation_int(rs: dict, name: str) -> int | None:
    value = (meta(rs).get("annotations") or {}).get(name)
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def replica_annotations(deployment: dict) -> dict[str, str]:
    """What a ReplicaSet records of the Deployment size it was last scaled for (Kubernetes'
    SetReplicasAnnotations): proportional scaling reads them as "the size before"."""
    want = _replicas(deployment)
    return {DESIRED_REPLICAS_ANNOTATION: str(want), MAX_REPLICAS_ANNOTATION: str(want + max_surge(deployment))}


def _active(rss: list[dict]) -> list[dict]:
    return [rs for rs in rss if _replicas(rs) > 0]


def is_scaling_event(deployment: dict, new_rs: dict | None, olds: list[dict]) -> bool:
    """spec.replicas changed since the active ReplicaSets were last scaled (Kubernetes'
    isScalingEvent); ReplicaSets without the annotation say nothing."""
    want = _replicas(deployment)
    for rs in _active(([new_rs] if new_rs is not None else []) + olds):
        desired = _annotation_int(rs, DESIRED_REPLICAS_ANNOTATION)
        if desired is not None and desired != want:
            return True
    return False


def _round_half_up(numerator: int, denominator: int) -> int:
    # Go's math.Round of a non-negative quotient, in integers (no float error at the .5 edge)
    return (2 * numerator + denominator) // (2 * denominator)


def replicaset_fraction(rs: dict, deployment: dict) -> int:
    """How many replicas ``rs`` gains (or loses, negative) so that it keeps its share of the
    Deployment: its size times new max size over the max size it was scaled for (the
    max-replicas annotation; without it, the Deployment's status.replicas). Kubernetes'
    getReplicaSetFraction."""
    want = _replicas(deployment)
    if want == 0:
        return -_replicas(rs)
    max_now = want + max_surge(deployment)
    before = _annotation_int(rs, MAX_REPLICAS_ANNOTATION)
    if before is None or before <= 0:
        before = _status(deployment, "replicas")
        if before <= 0:
            return 0  # no base to take a share of: the leftover step sizes it
    return _round_half_up(_replicas(rs) * max_now, before) - _replicas(rs)


def replicaset_proportion(rs: dict, deployment: dict, to_add: int, added: int) -> int:
    """Kubernetes' GetReplicaSetProportion: the ReplicaSet's fraction, never past what is left
    of ``to_add`` once ``added`` went to larger ReplicaSets; an empty one gets nothing."""
    if _replicas(rs) == 0 or to_add == 0 or to_add == added:
        return 0
    fraction = replicaset_fraction(rs, deployment)
    allowed = to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)


def _by_size(rss: list[dict], newer_first: bool) -> list[dict]:
    # Largest first; between equal sizes the newer first when scaling up (the new template
    # grows first), the older first when scaling down (Kubernetes' ReplicaSetsBySizeNewer/Older).
    by_age = sorted(rss, key=lambda rs: (meta(rs).get("creationTimestamp") or "", name_of(rs)), reverse=newer_first)
    return sorted(by_age, key=lambda rs: -_replicas(rs))


def _is_saturated(deployment: dict, new_rs: dict | None) -> bool:
    want = _replicas(deployment)
    return (new_rs is not None and _replicas(new_rs) == want
            and _annotation_int(new_rs, DESIRED_REPLICAS_ANNOTATION) == want
            and _status(new_rs, "availableReplicas") == want)


def scale_replicasets(deployment: dict, new_rs: dict | None, olds: list[dict]) -> tuple[dict[str, int], set[str]]:
    """Kubernetes' deployment `scale`: new sizes by ReplicaSet name, and the names whose replica
    annotations must follow the Deployment.

    One active ReplicaSet (or none: the newest) takes spec.replicas; a saturated new one leaves
    the old ones nothing; otherwise (rolling update) the difference between spec.replicas +
    maxSurge and the active ReplicaSets' total is spread over them in proportion to their size,
    largest first, the rounding leftover to the largest, so that scaling mid-rollout neither
    hastens nor reverts the rollout.
    """
    want = _replicas(deployment)
    everything = ([new_rs] if new_rs is not None else []) + olds
    active = _active(everything)
    if len(active) <= 1:
        target = active[0] if active else new_rs
        if target is None and olds:
            target = max(olds, key=lambda rs: (meta(rs).get("creationTimestamp") or "", name_of(rs)))
        if target is None or _replicas(target) == want:
            return {}, set()
        return {name_of(target): want}, {name_of(target)}
    if _is_saturated(deployment, new_rs):
        return {name_of(rs): 0 for rs in active if rs is not new_rs}, {name_of(rs) for rs in active if rs is not new_rs}
    if ((deployment.get("spec") or {}).get("strategy") or {}).get("type") == "Recreate":
        return {}, set()
    allowed = want + max_surge(deployment) if want > 0 else 0
    to_add = allowed - sum(_replicas(rs) for rs in active)
    ordered = _by_size(active, newer_first=to_add > 0)
    sizes: dict[str, int] = {}
    added = 0
    for rs in ordered:
        proportion = replicaset_proportion(rs, deployment, to_add, added)
        sizes[name_of(rs)] = _replicas(rs) + proportion
        added += proportion
    if to_add:
        largest = name_of(ordered[0])
        sizes[largest] = max(0, sizes[largest] + to_add - added)
    return sizes, {name_of(rs) for rs in active}


@dataclass(slots=True)
class DeploymentPlan:
    """Named buckets of changes; ``scale`` maps ReplicaSet name -> new spec.replicas."""

    create: dict | None = None
    scale: dict[str, int] = field(default_factory=dict)
    # ReplicaSets whose desired/max-replicas annotations must be set to replica_annotations(d)
    # although their size stays (a proportional scale touches every active one).
    annotate: set[str] = field(default_factory=set)
    set_revision: dict[str, int] = field(default_factory=dict)
    delete: list[str] = field(default_factory=list)
    deployment_revision: str | None = None
    status: dict = field(default_factory=dict)
    # Seconds after which to sync again although nothing changed (the progress deadline).
    recheck_after: float | None = None


def owned_replicasets(deployment: dict, replicasets: list[dict]) -> list[dict]:
    uid = uid_of(deployment)
    out = []
    for rs in replicasets:
        for ref in meta(rs).get("ownerReferences") or []:
            if ref.get("controller") and ref.get("uid") == uid:
                out.append(rs)
    return out


def find_new_rs(deployment: dict, rss: list[dict]) -> dict | None:
    template = (deployment.get("spec") or {}).get("template") or {}
    matches = [rs for rs in rss if templates_equal((rs.get("spec") or {}).get("template") or {}, template)]
    # Oldest first, like Kubernetes, in case two ever match.
    matches.sort(key=lambda rs: (meta(rs).get("creationTimestamp") or "", name_of(rs)))
    return matches[0] if matches else None


def new_replicaset(deployment: dict, replicas: int, revision: int, max_surge: int) -> dict:
    dmeta = meta(deployment)
    spec = deployment.get("spec") or {}
    template = _normalized(spec.get("template") or {})
    h = template_hash(template, int((deployment.get("status") or {}).get("collisionCount", 0)))
    tmeta = template.setdefault("metadata", {})
    tmeta["labels"] = {**(tmeta.get("labels") or {}), HASH_LABEL: h}
    selector = copy.deepcopy(spec.get("selector") or {})
    selector["matchLabels"] = {**(selector.get("matchLabels") or {}), HASH_LABEL: h}
    want = _replicas(deployment)
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": f"{dmeta.get('name')}-{h}",
            "namespace": dmeta.get("namespace") or "default",
            "labels": dict(tmeta["labels"]),
            "annotations": {
                REVISION_ANNOTATION: str(revision),
                DESIRED_REPLICAS_ANNOTATION: str(want),
                MAX_REPLICAS_ANNOTATION: str(want + max_surge),
            },
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": dmeta.get("name"),
                    "uid": dmeta.get("uid"),
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "replicas": replicas,
            "minReadySeconds": int(spec.get("minReadySeconds", 0)),
            "selector": selector,
            "template": template,
        },
    }


def rolling_new_replicas(want: int, new_current: int, all_total: int, max_surge: int) -> int:
    """How many replicas the new ReplicaSet may have now (Kubernetes' NewRSNewReplicas)."""
    if new_current >= want:
        return want
    max_total = want + max_surge
    if all_total >= max_total:
        return new_current
    return min(new_current + (max_total - all_total), want)


def rolling_old_scale_down(
    olds: list[dict], new_rs_replicas: int, new_rs_available: int, want: int, max_unavailable: int
) -> dict[str, int]:
    """New spec.replicas for old ReplicaSets, never dropping availability below want - maxUnavailable.

    Unavailable old replicas go first (they cost no availability), then the oldest ReplicaSets.
    """
    old_total = sum(_replicas(rs) for rs in olds)
    if old_total == 0:
        return {}
    all_total = old_total + new_rs_replicas
    min_available = want - max_unavailable
    new_unavailable = new_rs_replicas - new_rs_available
    budget = all_total - min_available - new_unavailable
    if budget <= 0:
        return {}
    targets = {name_of(rs): _replicas(rs) for rs in olds}
    ordered = sorted(olds, key=lambda rs: (meta(rs).get("creationTimestamp") or "", name_of(rs)))
    # 1. unhealthy old replicas
    for rs in ordered:
        if budget <= 0:
            break
        unhealthy = targets[name_of(rs)] - _status(rs, "availableReplicas")
        if unhealthy <= 0:
            continue
        cut = min(budget, unhealthy)
        targets[name_of(rs)] -= cut
        budget -= cut
    # 2. healthy ones, while total availability stays at or above min_available
    available = new_rs_available + sum(min(targets[name_of(rs)], _status(rs, "availableReplicas")) for rs in olds)
    can_remove = available - min_available
    for rs in ordered:
        if can_remove <= 0:
            break
        cut = min(can_remove, targets[name_of(rs)])
        targets[name_of(rs)] -= cut
        can_remove -= cut
    return {name_of(rs): targets[name_of(rs)] for rs in olds if targets[name_of(rs)] != _replicas(rs)}


def plan_deployment(deployment: dict, replicasets: list[dict], now: str) -> DeploymentPlan:
    """Everything one sync of ``deployment`` should change, from its owned ReplicaSets."""
    spec = deployment.get("spec") or {}
    want = _replicas(deployment)
    rss = owned_replicasets(deployment, replicasets)
    new_rs = find_new_rs(deployment, rss)
    olds = [rs for rs in rss if rs is not new_rs]
    surge, unavailable = surge_and_unavailable(deployment)
    plan = DeploymentPlan()
    max_old_rev = max((revision_of(rs) for rs in olds), default=0)
    paused = bool(spec.get("paused"))
    recreate = (spec.get("strategy") or {}).get("type") == "Recreate"

    if new_rs is not None and revision_of(new_rs) <= max_old_rev:
        # A rollback made an old template current again: it becomes the newest revision.
        plan.set_revision[name_of(new_rs)] = max_old_rev + 1
    revision = (
        max_old_rev + 1 if new_rs is None else max(revision_of(new_rs), plan.set_revision.get(name_of(new_rs), 0))
    )

    if paused or (not recreate and is_scaling_event(deployment, new_rs, olds)):
        # Only scale (a paused Deployment never rolls; a scaling event is handled on its own
        # and the rollout goes on at the next sync, from the new sizes).
        sizes, touched = scale_replicasets(deployment, new_rs, olds)
        by_name = {name_of(rs): rs for rs in rss}
        plan.scale = {n: size for n, size in sizes.items() if size != _replicas(by_name[n])}
        wanted = replica_annotations(deployment)
        plan.annotate = {
            n for n in touched - set(plan.scale)
            if any((meta(by_name[n]).get("annotations") or {}).get(k) != v for k, v in wanted.items())
        }
    elif recreate:
        for rs in olds:
            if _replicas(rs) != 0:
                plan.scale[name_of(rs)] = 0
        old_pods_left = sum(_status(rs, "replicas") for rs in olds)
        if old_pods_left == 0 and not plan.scale:
            if new_rs is None:
                plan.create = new_replicaset(deployment, want, revision, 0)
            elif _replicas(new_rs) != want:
                plan.scale[name_of(new_rs)] = want
        elif new_rs is None:
            plan.create = new_replicaset(deployment, 0, revision, 0)
    else:
        all_total = sum(_replicas(rs) for rs in rss)
        if new_rs is None:
            n = rolling_new_replicas(want, 0, all_total, surge) if olds else want
            plan.create = new_replicaset(deployment, n, revision, surge)
            new_replicas, new_available = n, 0
        else:
            new_replicas = rolling_new_replicas(want, _replicas(new_rs), all_total, surge)
            if new_replicas != _replicas(new_rs):
                plan.scale[name_of(new_rs)] = new_replicas
            new_available = _status(new_rs, "availableReplicas")
        # Scale down against the new ReplicaSet's size before this sync's scale-up lands: its
        # new pods are not available yet, so they must not buy any old pod's removal.
        current_new = 0 if new_rs is None else _replicas(new_rs)
        plan.scale.update(
            rolling_old_scale_down(olds, current_new, min(new_available, current_new), want, unavailable)
        )

    plan.delete = _history_to_delete(deployment, olds, plan)
    plan.deployment_revision = str(revision)
    plan.status = deployment_status(deployment, new_rs, olds, plan, now, unavailable)
    return plan


def _history_to_delete(deployment: dict, olds: list[dict], plan: DeploymentPlan) -> list[str]:
    limit = (deployment.get("spec") or {}).get("revisionHistoryLimit", DEFAULT_REVISION_HISTORY_LIMIT)
    idle = [
        rs
        for rs in olds
        if plan.scale.get(name_of(rs), _replicas(rs)) == 0
        and _status(rs, "replicas") == 0
        and not meta(rs).get("deletionTimestamp")
    ]
    excess = len(idle) - int(limit)
    if excess <= 0:
        return []
    idle.sort(key=revision_of)
    return [name_of(rs) for rs in idle[:excess]]


def _seconds_between(earlier: str | None, later: str) -> float:
    a, b = parse_time(earlier), parse_time(later)
    if a is None or b is None:
        return 0.0
    return (b - a).total_seconds()


def _kept_update_time(conditions: list[dict], cond: dict, now: str) -> str:
    # An unchanged condition keeps its timestamp: otherwise every sync would rewrite the status,
    # and the write would trigger the next sync.
    for c in conditions:
        if c.get("type") == cond["type"] and c.get("status") == cond["status"] and c.get("reason") == cond["reason"]:
            return c.get("lastUpdateTime") or now
    return now


def deployment_status(
    deployment: dict, new_rs: dict | None, olds: list[dict], plan: DeploymentPlan, now: str, max_unavailable: int
) -> dict:
    """status as `kubectl rollout status` reads it: counts plus Available and Progressing."""
    want = _replicas(deployment)
    all_rs = ([new_rs] if new_rs is not None else []) + olds
    replicas = sum(_status(rs, "replicas") for rs in all_rs)
    updated = _status(new_rs, "replicas") if new_rs is not None else 0
    ready = sum(_status(rs, "readyReplicas") for rs in all_rs)
    available = sum(_status(rs, "availableReplicas") for rs in all_rs)
    old = dict(deployment.get("status") or {})
    conditions = list(old.get("conditions") or [])
    if available >= want - max_unavailable:
        avail = {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                 "message": "Deployment has minimum availability."}
    else:
        avail = {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable",
                 "message": "Deployment does not have minimum availability."}
    conditions = set_condition(conditions, {**avail, "lastUpdateTime": _kept_update_time(conditions, avail, now)}, now)
    new_name = name_of(new_rs) if new_rs is not None else (name_of(plan.create) if plan.create else "")
    complete = (
        new_rs is not None
        and updated == want
        and replicas == want
        and available == want
        and not plan.create
        and not plan.scale
    )
    progressed = bool(plan.create or plan.scale) or (
        updated != old.get("updatedReplicas") or available != old.get("availableReplicas")
    )
    previous = next((c for c in conditions if c.get("type") == "Progressing"), None)
    deadline = int((deployment.get("spec") or {}).get("progressDeadlineSeconds", DEFAULT_PROGRESS_DEADLINE))
    if complete:
        prog = {"status": "True", "reason": "NewReplicaSetAvailable",
                "message": f'ReplicaSet "{new_name}" has successfully progressed.'}
    elif plan.create is not None:
        prog = {"status": "True", "reason": "NewReplicaSetCreated", "message": f'Created new replica set "{new_name}"'}
    elif not progressed and previous is not None and _seconds_between(previous.get("lastUpdateTime"), now) > deadline:
        # kubectl rollout status gives up on this reason (Kubernetes' progressDeadlineSeconds).
        prog = {"status": "False", "reason": "ProgressDeadlineExceeded",
                "message": f'ReplicaSet "{new_name}" has timed out progressing.'}
    else:
        prog = {"status": "True", "reason": "ReplicaSetUpdated", "message": f'ReplicaSet "{new_name}" is progressing.'}
    prog = {"type": "Progressing", **prog}
    if progressed and prog["reason"] == "ReplicaSetUpdated":
        update_time = now  # progress moves the deadline
    elif previous is not None and prog["reason"] == "ProgressDeadlineExceeded" and previous.get("reason") != prog["reason"]:
        update_time = now
    else:
        update_time = _kept_update_time(conditions, prog, now)
    conditions = set_condition(conditions, {**prog, "lastUpdateTime": update_time}, now)
    if not complete and prog["reason"] != "ProgressDeadlineExceeded":
        plan.recheck_after = max(1.0, deadline - _seconds_between(update_time, now) + 1.0)
    status = {
        "observedGeneration": meta(deployment).get("generation", 0),
        "replicas": replicas,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": available,
        "unavailableReplicas": max(0, want - available),
        "conditions": conditions,
    }
    if "collisionCount" in old:
        status["collisionCount"] = old["collisionCount"]
    return status
