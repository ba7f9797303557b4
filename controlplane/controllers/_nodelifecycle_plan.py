"""Node health decisions, pure: every time is a number on the caller's monotonic clock.

A node is healthy while its Lease keeps changing. We never compare the Lease's renewTime with our
own clock (the agent's clock may be skewed); we only note *when we saw it change*. A leader that
has just taken over has seen nothing change yet, so it starts every node's grace period at its
first observation: a failover never evicts a healthy node.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from controlplane.objects import tolerates

from ._pods import meta, set_condition

UNREACHABLE_TAINT_KEY = "node.kubernetes.io/unreachable"


@dataclass(slots=True)
class NodeLifecycleConfig:
    # Lease silence after which a node is declared unreachable (agents renew every ~2 s).
    grace_period: float = 8.0
    # Eviction delay for pods that carry no toleration for the unreachable taint (Kubernetes'
    # DefaultTolerationSeconds admission adds 300 s; edge sites want replacements fast).
    default_toleration_seconds: float = 4.0
    # Evictions per second and burst: a flapping link cannot delete a whole site's pods at once.
    eviction_qps: float = 10.0
    eviction_burst: int = 20


class LeaseObserver:
    """When this process last saw each node's Lease change."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[object, float]] = {}

    def observe(self, node: str, renew_marker: object, now: float) -> None:
        prev = self._seen.get(node)
        if prev is None or prev[0] != renew_marker:
            self._seen[node] = (renew_marker, now)

    def first_sight(self, node: str, now: float) -> None:
        """A node with no Lease yet gets a grace period from now."""
        self._seen.setdefault(node, (None, now))

    def forget(self, node: str) -> None:
        self._seen.pop(node, None)

    def silent_for(self, node: str, now: float) -> float:
        prev = self._seen.get(node)
        if prev is None:
            self._seen[node] = (None, now)
            return 0.0
        return now - prev[1]

    def unreachable(self, node: str, now: float, grace: float) -> bool:
        return self.silent_for(node, now) > grace


def has_unreachable_taint(node: dict) -> bool:
    return any(t.get("key") == UNREACHABLE_TAINT_KEY for t in (node.get("spec") or {}).get("taints") or [])


def ready_status(node: dict) -> str | None:
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status")
    return None


def mark_unreachable(node: dict, now_text: str) -> tuple[dict | None, dict | None]:
    """(node with the unreachable taint or None, node status with Ready=Unknown or None)."""
    spec_change = None
    if not has_unreachable_taint(node):
        spec_change = copy.deepcopy(node)
        taints = spec_change.setdefault("spec", {}).setdefault("taints", [])
        taints.append({"key": UNREACHABLE_TAINT_KEY, "effect": "NoExecute", "timeAdded": now_text})
    status_change = None
    if ready_status(node) != "Unknown":
        status_change = copy.deepcopy(node)
        st = status_change.setdefault("status", {})
        st["conditions"] = set_condition(
            list(st.get("conditions") or []),
            {
                "type": "Ready",
                "status": "Unknown",
                "reason": "NodeStatusUnknown",
                "message": "Kubelet stopped posting node status.",
                "lastHeartbeatTime": now_text,
            },
            now_text,
        )
    return spec_change, status_change


def clear_unreachable(node: dict) -> dict | None:
    """The node without the unreachable taint, or None when it has none."""
    if not has_unreachable_taint(node):
        return None
    out = copy.deepcopy(node)
    out["spec"]["taints"] = [t for t in out["spec"]["taints"] if t.get("key") != UNREACHABLE_TAINT_KEY]
    return out


def eviction_delay(pod: dict, default_seconds: float) -> float | None:
    """Seconds a pod may stay on an unreachable node; None means it tolerates it forever."""
    taint = {"key": UNREACHABLE_TAINT_KEY, "effect": "NoExecute"}
    for tol in (pod.get("spec") or {}).get("tolerations") or []:
        if not tolerates(tol, taint):
            continue
        secs = tol.get("tolerationSeconds")
        return None if secs is None else max(0.0, float(secs))
    return default_seconds


def evictions_allowed(total_nodes: int, unreachable_nodes: int) -> bool:
    """No eviction when more than half the nodes are unreachable: the masters are likely the ones cut off."""
    return unreachable_nodes * 2 <= total_nodes


def pod_not_ready(pod: dict, now_text: str) -> dict | None:
    """The pod with Ready=False (so Endpoints drop it), or None when it is not Ready already."""
    st = pod.get("status") or {}
    ready = next((c for c in st.get("conditions") or [] if c.get("type") == "Ready"), None)
    if ready is None or ready.get("status") == "False":
        return None
    out = copy.deepcopy(pod)
    out["status"]["conditions"] = set_condition(
        list(st.get("conditions") or []),
        {"type": "Ready", "status": "False", "reason": "NodeUnreachable", "message": "node is unreachable"},
        now_text,
    )
    return out


class TokenBucket:
    """Rate limiter on an injected monotonic clock."""

    def __init__(self, qps: float, burst: int, now: float) -> None:
        self.qps, self.burst = qps, burst
        self.tokens = float(burst)
        self.stamp = now

    def take(self, now: float) -> bool:
        self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.qps)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


def node_name_of_lease(lease: dict) -> str:
    return meta(lease).get("name", "")
