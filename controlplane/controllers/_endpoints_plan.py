"""Endpoints for a Service as a pure function of the Service and the pods of its namespace.

There is no overlay network: a pod is reached at its node's address (``status.hostIP``) on the
host port its container port is published on. That host port is ``hostPort`` in the pod spec when
the user set one; otherwise the agent picked one and reported it in the annotation
``edgeplane.io/host-ports`` as JSON ``{"<containerPort>/<protocol>": hostPort}``.
"""

from __future__ import annotations

import json

from controlplane.selectors import LabelSelector

from ._pods import is_terminating, meta, pod_is_ready

HOST_PORTS_ANNOTATION = "edgeplane.io/host-ports"


def reported_host_ports(pod: dict) -> dict[str, int]:
    raw = (meta(pod).get("annotations") or {}).get(HOST_PORTS_ANNOTATION)
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    out = {}
    for k, v in data.items():
        if isinstance(v, int) and not isinstance(v, bool):
            out[str(k)] = v
    return out


def _container_port(pod: dict, target: object, protocol: str) -> dict | None:
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if (p.get("protocol") or "TCP") != protocol:
                continue
            if isinstance(target, str) and not target.isdigit():
                if p.get("name") == target:
                    return p
            elif int(p.get("containerPort", -1)) == int(str(target)):
                return p
    return None


def host_port_for(pod: dict, target: object, protocol: str) -> int | None:
    """The node port a service targetPort reaches on this pod, or None if none is published."""
    cport = _container_port(pod, target, protocol)
    if cport is not None and cport.get("hostPort"):
        return int(cport["hostPort"])
    number = int(cport["containerPort"]) if cport is not None else None
    if number is None:
        if isinstance(target, str) and not target.isdigit():
            return None
        try:
            number = int(str(target))
        except ValueError:
            return None
    return reported_host_ports(pod).get(f"{number}/{protocol}")


def build_subsets(service: dict, pods: list[dict]) -> list[dict]:
    """Endpoints subsets: pods grouped by the host ports they expose, ready and not-ready apart."""
    spec = service.get("spec") or {}
    selector = LabelSelector.from_labels(spec.get("selector") or {})
    svc_ports = spec.get("ports") or []
    groups: dict[tuple, dict[str, list[dict]]] = {}
    for pod in pods:
        if is_terminating(pod) or not selector.matches(meta(pod).get("labels") or {}):
            continue
        host_ip = (pod.get("status") or {}).get("hostIP")
        if not host_ip:
            continue
        ports = []
        for sp in svc_ports:
            proto = sp.get("protocol") or "TCP"
            target = sp.get("targetPort", sp.get("port"))
            hp = host_port_for(pod, target, proto)
            if hp is None:
                continue
            entry = {"port": hp, "protocol": proto}
            if sp.get("name"):
                entry["name"] = sp["name"]
            ports.append(entry)
        if svc_ports and not ports:
            continue
        pm = meta(pod)
        addr = {
            "ip": host_ip,
            "nodeName": (pod.get("spec") or {}).get("nodeName", ""),
            "targetRef": {"kind": "Pod", "namespace": pm.get("namespace"), "name": pm.get("name"), "uid": pm.get("uid")},
        }
        key = tuple(sorted((p.get("name", ""), p["port"], p["protocol"]) for p in ports))
        bucket = groups.setdefault(key, {"ports": ports, "addresses": [], "notReadyAddresses": []})
        bucket["addresses" if pod_is_ready(pod) else "notReadyAddresses"].append(addr)
    subsets = []
    for key in sorted(groups):
        g = groups[key]
        subset: dict = {}
        for field in ("addresses", "notReadyAddresses"):
            if g[field]:
                subset[field] = sorted(g[field], key=lambda a: (a["ip"], a["targetRef"]["name"]))
        if g["ports"]:
            subset["ports"] = sorted(g["ports"], key=lambda p: (p.get("name", ""), p["port"]))
        subsets.append(subset)
    return subsets


def desired_endpoints(service: dict, pods: list[dict]) -> dict:
    sm = meta(service)
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": sm.get("name"), "namespace": sm.get("namespace") or "default"}
        | ({"labels": dict(sm["labels"])} if sm.get("labels") else {}),
        "subsets": build_subsets(service, pods),
    }


def endpoints_differ(current: dict, desired: dict) -> bool:
    return (current.get("subsets") or []) != desired["subsets"] or (
        (meta(current).get("labels") or {}) != (desired["metadata"].get("labels") or {})
    )
