"""Object helpers shared by the scheduler, the controllers and the edge agent.

Pure functions on JSON-shaped API objects: resource arithmetic, readiness, ownership,
conditions, taints/tolerations and node selector terms, with Kubernetes' semantics.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Mapping
from fractions import Fraction

from .quantity import QuantityError, parse_quantity

__all__ = [
    "pod_requests",
    "pod_limits",
    "node_allocatable",
    "node_is_ready",
    "pod_is_ready",
    "pod_is_terminal",
    "pod_is_active",
    "is_owned_by",
    "controller_of",
    "owner_reference",
    "pod_template_hash",
    "template_hash",
    "set_condition",
    "get_condition",
    "tolerates",
    "tolerates_all",
    "match_node_selector_terms",
    "match_node_selector_term",
    "api_version_of",
]


def _quantity(value: object) -> Fraction:
    try:
        return parse_quantity(value)
    except QuantityError:
        return Fraction(0)  # validation rejects these on write; never crash a controller


def _container_amounts(c: Mapping, section: str) -> dict[str, Fraction]:
    res = c.get("resources") or {}
    values = res.get(section) or {}
    if section == "requests" and not values:
        # A container that sets only limits requests its limits (SetDefaults_Container).
        values = res.get("limits") or {}
    elif section == "requests":
        values = {**(res.get("limits") or {}), **values}
    return {k: _quantity(v) for k, v in values.items()}


def _pod_amounts(pod: Mapping, section: str) -> dict[str, Fraction]:
    spec = pod.get("spec") or {}
    total: dict[str, Fraction] = {}
    for c in spec.get("containers") or []:
        for k, v in _container_amounts(c, section).items():
            total[k] = total.get(k, Fraction(0)) + v
    # Sidecar init containers (restartPolicy Always) keep running: they add to the sum and
    # to every later init container's peak (Kubernetes' PodRequests).
    sidecars: dict[str, Fraction] = {}
    init_peak: dict[str, Fraction] = {}
    for c in spec.get("initContainers") or []:
        amounts = _container_amounts(c, section)
        if c.get("restartPolicy") == "Always":
            for k, v in amounts.items():
                sidecars[k] = sidecars.get(k, Fraction(0)) + v
                total[k] = total.get(k, Fraction(0)) + v
            amounts = dict(sidecars)
        else:
            amounts = {k: v + sidecars.get(k, Fraction(0)) for k, v in amounts.items()}
        for k, v in amounts.items():
            init_peak[k] = max(init_peak.get(k, Fraction(0)), v)
    for k, v in init_peak.items():
        total[k] = max(total.get(k, Fraction(0)), v)
    for k, v in ((spec.get("overhead") or {}).items()):
        total[k] = total.get(k, Fraction(0)) + _quantity(v)
    return total


def pod_requests(pod: Mapping) -> dict[str, Fraction]:
    """What a pod asks the scheduler for: cpu in cores, memory in bytes, pods = 1, plus any
    other named resources. Effective request = max(sum of app containers, largest init
    container), as Kubernetes computes it. Missing cpu/memory count as 0."""
    total = _pod_amounts(pod, "requests")
    total.setdefault("cpu", Fraction(0))
    total.setdefault("memory", Fraction(0))
    total["pods"] = Fraction(1)
    return total


def pod_limits(pod: Mapping) -> dict[str, Fraction]:
    """Sum of limits, same shape as pod_requests (without the pods entry)."""
    return _pod_amounts(pod, "limits")


def node_allocatable(node: Mapping) -> dict[str, Fraction]:
    """status.allocatable (falling back to capacity) as exact numbers; pods defaults to 110,
    the kubelet's default max-pods."""
    status = node.get("status") or {}
    values = status.get("allocatable") or status.get("capacity") or {}
    out = {k: _quantity(v) for k, v in values.items()}
    out.setdefault("cpu", Fraction(0))
    out.setdefault("memory", Fraction(0))
    out.setdefault("pods", Fraction(DEFAULT_MAX_PODS))
    return out


DEFAULT_MAX_PODS = 110  # kubelet --max-pods default


def get_condition(conditions: Iterable[Mapping] | None, ctype: str) -> Mapping | None:
    for c in conditions or []:
        if c.get("type") == ctype:
            return c
    return None


def pod_is_ready(pod: Mapping) -> bool:
    """Ready condition True (what Service endpoints and Deployment availability use)."""
    cond = get_condition((pod.get("status") or {}).get("conditions"), "Ready")
    return cond is not None and cond.get("status") == "True"


def node_is_ready(node: Mapping) -> bool:
    cond = get_condition((node.get("status") or {}).get("conditions"), "Ready")
    return cond is not None and cond.get("status") == "True"


def pod_is_terminal(pod: Mapping) -> bool:
    """Succeeded or Failed: the pod will never run again."""
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def pod_is_active(pod: Mapping) -> bool:
    """Counts toward a ReplicaSet's replicas: not terminal and not being deleted."""
    return not pod_is_terminal(pod) and not (pod.get("metadata") or {}).get("deletionTimestamp")


def api_version_of(obj: Mapping) -> str:
    return obj.get("apiVersion") or "v1"


def is_owned_by(obj: Mapping, owner: Mapping, *, controller_only: bool = False) -> bool:
    """Whether obj lists owner (by uid) in its ownerReferences."""
    uid = (owner.get("metadata") or {}).get("uid")
    if not uid:
        return False
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("uid") == uid and (not controller_only or ref.get("controller")):
            return True
    return False


def controller_of(obj: Mapping) -> Mapping | None:
    """The ownerReference with controller: true, if any."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def owner_reference(owner: Mapping, controller: bool = True, block_owner_deletion: bool = True) -> dict:
    """An ownerReference pointing at owner (what a controller puts on what it creates)."""
    meta = owner.get("metadata") or {}
    ref = {
        "apiVersion": api_version_of(owner),
        "kind": owner.get("kind", ""),
        "name": meta.get("name", ""),
        "uid": meta.get("uid", ""),
    }
    if controller:
        ref["controller"] = True
    if block_owner_deletion:
        ref["blockOwnerDeletion"] = True
    return ref


# Safe alphabet for the hash: consonants and digits, as Kubernetes' rand.SafeEncodeString,
# so hashes never spell words and are always valid label values.
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
# Kubernetes' pod-template-hash is 8-10 characters; 10 keeps collisions unlikely per namespace.
_HASH_LEN = 10


def pod_template_hash(template: Mapping, collision_count: int | None = None) -> str:
    """A stable, label-safe hash of a pod template (canonical JSON -> FNV-1a 64 -> safe text).

    The `pod-template-hash` label value a Deployment controller names ReplicaSets by; equal
    templates give equal hashes, on every master and across restarts. The label of that name
    is removed before hashing, so stamping the hash onto the template does not change it."""
    tmpl = copy.deepcopy(dict(template))
    labels = (tmpl.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop("pod-template-hash", None)
    data = json.dumps(tmpl, sort_keys=True, separators=(",", ":"), default=str).encode()
    if collision_count:
        data += str(collision_count).encode()
    h = 0xCBF29CE484222325  # FNV-1a 64 offset basis
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF  # FNV-1a 64 prime
    # Mix in sha256 too: FNV alone is weak on long, similar inputs (e.g. only image differs).
    h ^= int.from_bytes(hashlib.sha256(data).digest()[:8], "big")
    out = []
    for _ in range(_HASH_LEN):
        h, r = divmod(h, len(_SAFE_ALPHABET))
        out.append(_SAFE_ALPHABET[r])
    return "".join(out)


template_hash = pod_template_hash  # the name used in the contracts document


def set_condition(conditions: Iterable[Mapping] | None, type: str, status: str, reason: str = "",
                  message: str = "", now: str = "", *, probe_time: bool = False) -> list[dict]:
    """A new conditions list with `type` set. lastTransitionTime changes only when the status
    does (API conventions); reason/message are updated in place. Other entries are kept."""
    out: list[dict] = []
    found = False
    for c in conditions or []:
        c = dict(c)
        if c.get("type") == type:
            found = True
            if c.get("status") != status:
                c["lastTransitionTime"] = now
            c["status"] = status
            c["reason"] = reason
            c["message"] = message
            if probe_time:
                c["lastProbeTime"] = now
        out.append(c)
    if not found:
        new = {"type": type, "status": status, "lastTransitionTime": now, "reason": reason, "message": message}
        if probe_time:
            new["lastProbeTime"] = now
        out.append(new)
    return out


def tolerates(toleration: Mapping | Iterable[Mapping], taint: Mapping) -> bool:
    """Whether a toleration (or any of a list of tolerations) tolerates the taint
    (Kubernetes' Toleration.ToleratesTaint)."""
    if not isinstance(toleration, Mapping):
        return any(tolerates(t, taint) for t in toleration)
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    if key and key != taint.get("key"):
        return False
    op = toleration.get("operator") or "Equal"
    if op == "Exists":
        return True
    if op == "Equal":
        if not key:
            return False  # an empty key is only meaningful with Exists
        return (toleration.get("value") or "") == (taint.get("value") or "")
    return False


def tolerates_all(tolerations: Iterable[Mapping] | None, taints: Iterable[Mapping] | None,
                  effects: tuple[str, ...] = ("NoSchedule", "NoExecute")) -> Mapping | None:
    """The first taint with one of `effects` that no toleration tolerates, or None."""
    tols = list(tolerations or [])
    for taint in taints or []:
        if taint.get("effect") in effects and not tolerates(tols, taint):
            return taint
    return None


def _match_requirement(value: str | None, op: str, values: list) -> bool:
    if op == "In":
        return value is not None and value in values
    if op == "NotIn":
        return value is None or value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt"):
        if value is None or len(values) != 1:
            return False
        try:
            have, want = int(value), int(values[0])
        except ValueError:
            return False
        return have > want if op == "Gt" else have < want
    return False


def match_node_selector_term(node: Mapping, term: Mapping) -> bool:
    """All matchExpressions (labels) and matchFields (metadata.name) hold. An empty term
    matches nothing, as in Kubernetes."""
    exprs = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not exprs and not fields:
        return False
    meta = node.get("metadata") or {}
    labels = meta.get("labels") or {}
    for r in exprs:
        if not _match_requirement(labels.get(r.get("key")), r.get("operator"), r.get("values") or []):
            return False
    for r in fields:
        value = meta.get("name") if r.get("key") == "metadata.name" else None
        if not _match_requirement(value, r.get("operator"), r.get("values") or []):
            return False
    return True


def match_node_selector_terms(node: Mapping, terms: Iterable[Mapping] | None) -> bool:
    """Terms are ORed (nodeAffinity.requiredDuringScheduling...nodeSelectorTerms)."""
    return any(match_node_selector_term(node, t) for t in terms or [])
