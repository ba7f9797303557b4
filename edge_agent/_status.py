"""Pod status computation: a pure function of the pod, its observed containers, the agent's
records and the probe results. The phase rules are the kubelet's (getPhase): a container waiting
for its first start keeps the pod Pending; one waiting to be restarted counts as stopped.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from ._plan import ContainerRecord, pod_finished
from ._podspec import containers_of, restart_policy
from ._runtime import ContainerInfo


@dataclass(frozen=True, slots=True)
class ProbeState:
    ready: bool  # readiness (True when the container has no readiness probe and started)
    started: bool  # startup probe passed (True when there is none)


# The last second rfc3339 formatted and its text: a status holds the same second up to five
# times (startTime, conditions, startedAt), and pods started together share it.
_last_formatted: tuple[float, str] = (float("nan"), "")


def rfc3339(ts: float | None) -> str | None:
    global _last_formatted
    if ts is None:
        return None
    second = ts // 1  # (gmtime rounds down too)
    if _last_formatted[0] != second:
        _last_formatted = (second, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)))
    return _last_formatted[1]


def _terminated(c: ContainerInfo, scheme: str) -> dict[str, Any]:
    if c.oom_killed:
        reason = "OOMKilled"
    elif c.exit_code == 0:
        reason = "Completed"
    else:
        reason = "Error"
    out: dict[str, Any] = {
        "exitCode": c.exit_code if c.exit_code is not None else -1,
        "reason": reason,
        "startedAt": rfc3339(c.started_at),
        "finishedAt": rfc3339(c.finished_at),
        "containerID": f"{scheme}://{c.id}",
    }
    if c.error:
        out["message"] = c.error
    return out


def _condition(ctype: str, ok: bool, old: dict[str, dict[str, Any]], now: float,
               reason: str | None = None, message: str | None = None) -> dict[str, Any]:
    status = "True" if ok else "False"
    prev = old.get(ctype)
    transition = (prev.get("lastTransitionTime") if prev and prev.get("status") == status
                  else rfc3339(now))
    cond: dict[str, Any] = {"type": ctype, "status": status, "lastProbeTime": None,
                            "lastTransitionTime": transition}
    if not ok and reason:
        cond["reason"] = reason
        if message:
            cond["message"] = message
    return cond


def compute_pod_status(pod: dict[str, Any], containers: list[ContainerInfo],
                       records: dict[str, ContainerRecord], probes: dict[str, ProbeState],
                       *, node_address: str, scheme: str, now: float,
                       old_status: dict[str, Any] | None = None) -> dict[str, Any]:
    """The pod's `status` as the agent observes it. `probes` is keyed by container ID.

    `old_status` (default: the pod's own) supplies condition transition times and startTime,
    so an unchanged pod computes an identical status.
    """
    old = old_status if old_status is not None else (pod.get("status") or {})
    old_conditions = {c.get("type"): c for c in old.get("conditions") or []}
    by_name: dict[str, list[ContainerInfo]] = {}
    for c in sorted(containers, key=lambda c: (c.restart_count, c.created_at, c.id)):
        by_name.setdefault(c.container_name, []).append(c)

    statuses: list[dict[str, Any]] = []
    running = waiting = stopped = succeeded = failed = 0
    unready: list[str] = []
    pod_ip = ""
    for cspec in containers_of(pod):
        name = str(cspec.get("name"))
        mine = by_name.get(name, [])
        # As in plan_pod: the newest running container counts, else the newest; `previous` is
        # the newest other one that has exited (lastState).
        running_now = [c for c in mine if c.running]
        latest = running_now[-1] if running_now else (mine[-1] if mine else None)
        exited = [c for c in mine if c is not latest and c.state == "exited"]
        previous = exited[-1] if exited else None
        rec = records.get(name)
        st: dict[str, Any] = {"name": name, "image": cspec.get("image"), "imageID": "",
                              "ready": False, "restartCount": 0, "started": False,
                              "state": {}, "lastState": {}}
        if latest is not None:
            st["restartCount"] = latest.restart_count
            st["imageID"] = f"{scheme}://{latest.image_id}" if latest.image_id else ""
            st["containerID"] = f"{scheme}://{latest.id}"
        if latest is not None and latest.running:
            running += 1
            pstate = probes.get(latest.id, ProbeState(ready=False, started=False))
            st["state"] = {"running": {"startedAt": rfc3339(latest.started_at)}}
            st["ready"] = pstate.ready and pstate.started
            st["started"] = pstate.started
            if previous is not None and previous.state == "exited":
                st["lastState"] = {"terminated": _terminated(previous, scheme)}
            pod_ip = pod_ip or latest.ip
        elif latest is not None and latest.state == "exited" and (
                rec is None or rec.waiting is None):
            stopped += 1
            if latest.exit_code == 0:
                succeeded += 1
            else:
                failed += 1
            st["state"] = {"terminated": _terminated(latest, scheme)}
            if previous is not None and previous.state == "exited":
                st["lastState"] = {"terminated": _terminated(previous, scheme)}
        else:
            reason, message = (rec.waiting if rec is not None and rec.waiting
                               else ("ContainerCreating", ""))
            st["state"] = {"waiting": {"reason": reason, **({"message": message}
                                                            if message else {})}}
            if latest is not None and latest.state == "exited":
                stopped += 1  # waiting to be restarted: the kubelet counts it as stopped
                st["lastState"] = {"terminated": _terminated(latest, scheme)}
            else:
                waiting += 1
        if not st["ready"]:
            unready.append(name)
        statuses.append(st)

    policy = restart_policy(pod)
    if waiting > 0:
        phase = "Pending"
    elif running > 0:
        phase = "Running"
    elif stopped > 0:
        if policy == "Always":
            phase = "Running"
        elif stopped == succeeded:
            phase = "Succeeded"
        elif policy == "Never" or pod_finished(pod, containers):
            phase = "Failed"
        else:
            phase = "Running"
    else:
        phase = "Pending"

    all_ready = not unready and bool(statuses)
    if phase in ("Succeeded", "Failed"):
        ready_reason, ready_msg = "PodCompleted", None
    else:
        ready_reason = "ContainersNotReady"
        ready_msg = f"containers with unready status: [{' '.join(unready)}]"
    conditions = [
        _condition("Initialized", True, old_conditions, now),
        _condition("Ready", all_ready, old_conditions, now, ready_reason, ready_msg),
        _condition("ContainersReady", all_ready, old_conditions, now, ready_reason, ready_msg),
        _condition("PodScheduled", True, old_conditions, now),
    ]
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": conditions,
        "hostIP": node_address,
        "hostIPs": [{"ip": node_address}],
        "startTime": old.get("startTime") or rfc3339(now),
        "containerStatuses": statuses,
    }
    if (pod.get("spec") or {}).get("hostNetwork") is True:
        pod_ip = node_address  # the pod is the node, network-wise (as the kubelet reports)
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    return status


def host_ports(containers: list[ContainerInfo], pod: dict[str, Any] | None = None) -> str:
    """The annotation value: JSON {"<containerPort>/<PROTO>": hostPort} of running containers.
    A host-network pod's (`pod` given) containers listen on the node's ports themselves."""
    mapping: dict[str, int] = {}
    host_network = pod is not None and (pod.get("spec") or {}).get("hostNetwork") is True
    specs = {str(c.get("name")): c for c in containers_of(pod)} if host_network and pod else {}
    for c in containers:
        if not c.running:
            continue
        if host_network:
            for p in (specs.get(c.container_name) or {}).get("ports") or []:
                proto = str(p.get("protocol") or "TCP").upper()
                mapping[f"{p['containerPort']}/{proto}"] = int(p["containerPort"])
        else:
            mapping.update(c.host_ports)
    if not mapping:  # most pods publish nothing
        return "{}"
    return json.dumps(dict(sorted(mapping.items())), separators=(",", ":"))
