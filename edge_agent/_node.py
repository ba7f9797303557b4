"""The Node object this agent registers: capacity read from the machine, addresses, labels,
node info, and the Lease it renews in kube-node-lease (Kubernetes' node heartbeat)."""

from __future__ import annotations

import logging
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._api import ApiSession

log = logging.getLogger("edge_agent.lease")

# Reported as the node's kubelet version suffix.
AGENT_VERSION = "0.1.0"
# Kubernetes' default maximum pods per node.
DEFAULT_MAX_PODS = 110
# Namespace holding node Leases (Kubernetes' layout).
LEASE_NAMESPACE = "kube-node-lease"

# A renewal is reported late (log warning, `NodeLease.late_renewals`) once the Lease has been
# silent this much longer than the renew interval, as a fraction of the Lease duration: a
# quarter leaves three quarters of the way to a node controller whose grace equals the duration.
LEASE_LATE_FRACTION = 0.25
# Tries of one renewal when another writer got in between (409) or the Lease vanished (404).
LEASE_WRITE_TRIES = 3

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm",
         "i686": "386", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


def machine_memory_bytes() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return platform.system()


def micro_time(ts: float | None = None) -> str:
    """Kubernetes MicroTime (RFC 3339 with microseconds), as Lease.spec.renewTime uses."""
    ts = time.time() if ts is None else ts
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1e6):06d}Z"


def rfc3339(ts: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if ts is None else ts))


def node_object(name: str, address: str, *, labels: dict[str, str] | None = None,
                cpu: str | None = None, memory: str | None = None,
                max_pods: int = DEFAULT_MAX_PODS, runtime_version: str = "docker://unknown",
                log_port: int = 0) -> dict[str, Any]:
    """The Node to register. cpu/memory default to this machine's (os.cpu_count, MemTotal)."""
    arch = _ARCH.get(platform.machine(), platform.machine())
    capacity = {
        "cpu": cpu or str(os.cpu_count() or 1),
        "memory": memory or f"{machine_memory_bytes() // 1024}Ki",
        "pods": str(max_pods),
    }
    all_labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": arch,
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": arch,
        **(labels or {}),
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": all_labels},
        "spec": {},
        "status": node_status(address, name, capacity=capacity, arch=arch,
                              runtime_version=runtime_version, log_port=log_port),
    }


def node_status(address: str, name: str, *, capacity: dict[str, str], arch: str,
                runtime_version: str, log_port: int) -> dict[str, Any]:
    now = rfc3339()
    return {
        "capacity": dict(capacity),
        # No system reservations on an edge box: the agent itself stays within a few tens of MB.
        "allocatable": dict(capacity),
        "addresses": [{"type": "InternalIP", "address": address},
                      {"type": "Hostname", "address": name}],
        "conditions": [ready_condition(now, now)],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": log_port}},
        "nodeInfo": {
            "machineID": _read("/etc/machine-id"),
            "systemUUID": _read("/sys/class/dmi/id/product_uuid"),
            "bootID": _read("/proc/sys/kernel/random/boot_id"),
            "kernelVersion": platform.release(),
            "osImage": _os_image(),
            "containerRuntimeVersion": runtime_version,
            "kubeletVersion": f"v1.30.0-edgeplane.{AGENT_VERSION}",
            "kubeProxyVersion": f"v1.30.0-edgeplane.{AGENT_VERSION}",
            "operatingSystem": "linux",
            "architecture": arch,
        },
    }


def ready_condition(heartbeat: str, transition: str) -> dict[str, Any]:
    return {"type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "edge agent is posting ready status",
            "lastHeartbeatTime": heartbeat, "lastTransitionTime": transition}


def lease_object(name: str, duration_seconds: int, *, node_uid: str | None = None,
                 resource_version: str | None = None) -> dict[str, Any]:
    md: dict[str, Any] = {"name": name, "namespace": LEASE_NAMESPACE}
    if node_uid:
        md["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": name,
                                  "uid": node_uid}]
    if resource_version:
        md["resourceVersion"] = resource_version
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": md,
        "spec": {"holderIdentity": name, "leaseDurationSeconds": duration_seconds,
                 "renewTime": micro_time()},
    }


class NodeLease:
    """This node's Lease in kube-node-lease, the heartbeat the node controller watches.

    `renew` creates the Lease or moves its renewTime forward under optimistic concurrency (the
    resourceVersion of our last write; a conflict re-reads). Every successful renewal is timed
    against the previous one: a gap longer than the renew interval plus `LEASE_LATE_FRACTION`
    of the Lease duration is logged as a warning and counted, because a node that heartbeats
    late is one step from being declared lost and having its pods replaced. `on_renewed(took,
    gap)` (seconds: this write's duration, and the time since the previous renewal, None for
    the first) lets a process running many nodes aggregate.
    """

    def __init__(self, name: str, duration_seconds: int, renew_interval: float, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.duration_seconds = duration_seconds
        self.renew_interval = renew_interval
        self.node_uid: str | None = None  # the Node's uid once registered (owner reference)
        self.resource_version: str | None = None
        self.last_renewed: float | None = None
        self.late_renewals = 0
        self.on_renewed: Callable[[float, float | None], None] | None = None
        self._clock = clock

    @property
    def late_after(self) -> float:
        """Silence (seconds since the last renewal) past which a renewal counts as late."""
        return self.renew_interval + LEASE_LATE_FRACTION * self.duration_seconds

    def silent_for(self) -> float:
        return 0.0 if self.last_renewed is None else self._clock() - self.last_renewed

    async def renew(self, session: ApiSession) -> None:
        """Write a fresh renewTime (creating the Lease if missing). Raises what the session
        raises (ApiUnavailable, ApiError) when the write cannot be made."""
        from ._api import ApiError

        started = self._clock()
        for _ in range(LEASE_WRITE_TRIES):
            try:
                if self.resource_version is None:
                    current = await session.get_lease(self.name)
                    if current is None:
                        created = await session.create_lease(lease_object(
                            self.name, self.duration_seconds, node_uid=self.node_uid))
                        self._renewed(created, started)
                        return
                    self.resource_version = (current.get("metadata") or {}).get(
                        "resourceVersion")
                updated = await session.update_lease(lease_object(
                    self.name, self.duration_seconds, node_uid=self.node_uid,
                    resource_version=self.resource_version))
            except ApiError as exc:
                if exc.code in (404, 409):
                    self.resource_version = None  # someone else wrote it, or it was deleted
                    continue
                raise
            self._renewed(updated, started)
            return
        raise ApiError(409, "Conflict", f"lease {self.name} kept changing under us")

    def _renewed(self, lease: dict[str, Any], started: float) -> None:
        self.resource_version = (lease.get("metadata") or {}).get("resourceVersion")
        now = self._clock()
        gap = None if self.last_renewed is None else now - self.last_renewed
        if gap is not None and gap > self.late_after:
            self.late_renewals += 1
            log.warning("lease of node %s renewed %.1fs after the previous renewal (due "
                        "every %.1fs, late beyond %.1fs; this write took %.2fs)", self.name,
                        gap, self.renew_interval, self.late_after, now - started)
        self.last_renewed = now
        if self.on_renewed is not None:
            self.on_renewed(now - started, gap)
