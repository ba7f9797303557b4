"""Small readings of Pod and owner metadata shared by the controllers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


def name_of(obj: dict) -> str:
    return meta(obj).get("name", "")


def namespace_of(obj: dict) -> str:
    return meta(obj).get("namespace") or ""


def uid_of(obj: dict) -> str:
    return meta(obj).get("uid", "")


def key_of(obj: dict) -> str:
    ns = namespace_of(obj)
    return f"{ns}/{name_of(obj)}" if ns else name_of(obj)


def split_key(key: str) -> tuple[str, str]:
    ns, _, name = key.rpartition("/")
    return ns, name


def controller_ref(obj: dict) -> dict | None:
    for ref in meta(obj).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def is_terminating(obj: dict) -> bool:
    return bool(meta(obj).get("deletionTimestamp"))


def pod_phase(pod: dict) -> str:
    return (pod.get("status") or {}).get("phase") or "Pending"


def pod_is_active(pod: dict) -> bool:
    """Counts toward a ReplicaSet's replicas: not finished and not being deleted."""
    return pod_phase(pod) not in ("Succeeded", "Failed") and not is_terminating(pod)


def pod_condition(pod: dict, ctype: str) -> dict | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == ctype:
            return cond
    return None


def pod_is_ready(pod: dict) -> bool:
    cond = pod_condition(pod, "Ready")
    return cond is not None and cond.get("status") == "True"


def pod_is_available(pod: dict, min_ready_seconds: int, now: datetime | None = None) -> bool:
    """Ready for at least minReadySeconds (Kubernetes' podutil.IsPodAvailable)."""
    if not pod_is_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    since = parse_time((pod_condition(pod, "Ready") or {}).get("lastTransitionTime"))
    if since is None:
        return False
    now = now or datetime.now(UTC)
    return (now - since).total_seconds() >= min_ready_seconds


def set_condition(conditions: list[dict], cond: dict[str, Any], now: str) -> list[dict]:
    """Replace the condition of the same type; lastTransitionTime moves only when status changes."""
    out = []
    found = False
    for c in conditions:
        if c.get("type") == cond["type"]:
            found = True
            merged = {**c, **cond}
            if c.get("status") != cond.get("status"):
                merged["lastTransitionTime"] = now
            else:
                merged.setdefault("lastTransitionTime", now)
            out.append(merged)
        else:
            out.append(c)
    if not found:
        out.append({**cond, "lastTransitionTime": now})
    return out
