"""Server-side printing: meta.k8s.io/v1 Table bodies with kubectl's familiar columns.

`kubectl get` asks for `application/json;as=Table;v=v1;g=meta.k8s.io` and prints the cells it
gets back; `-o wide` shows the columns with priority 1 too. Like kube-apiserver, we compute
every column (the wide ones included) and let the client choose; `wide=False` drops them for
callers that want the short view directly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from .selectors import LabelSelector, SelectorError

__all__ = ["table_for", "human_duration", "pod_status_reason", "columns_for"]

Row = list[Any]
_NONE = "<none>"
# kubectl shows at most this many endpoints and then "+ N more..." (formatEndpoints).
_MAX_ENDPOINTS_SHOWN = 3


def _col(name: str, type_: str = "string", description: str = "", priority: int = 0, fmt: str = "") -> dict:
    return {"name": name, "type": type_, "format": fmt, "description": description, "priority": priority}


_NAME = _col("Name", fmt="name", description="Name must be unique within a namespace.")
_AGE = _col("Age", description="CreationTimestamp is a timestamp representing the server time when this "
            "object was created.")


def parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def human_duration(seconds: float) -> str:
    """kubectl's duration.HumanDuration: '45s', '5m3s', '3h12m', '4d2h', '2y10d'."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        sec = s % 60
        return f"{minutes}m" if sec == 0 else f"{minutes}m{sec}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if dy == 0 else f"{hours // 24 // 365}y{dy}d"
    return f"{hours // 24 // 365}y"


def _since(value: object, now: datetime) -> str:
    t = parse_time(value)
    if t is None:
        return "<unknown>"
    return human_duration((now - t).total_seconds())


def _age(obj: Mapping, now: datetime) -> str:
    return _since(_meta(obj).get("creationTimestamp"), now)


def _m(value: Any) -> Mapping:
    """value if it is an object, else an empty one (bad input never raises here)."""
    return value if isinstance(value, Mapping) else {}


def _meta(obj: Mapping) -> Mapping:
    return _m(obj.get("metadata"))


def _d(obj: Mapping, *path: str) -> Any:
    cur: Any = obj
    for p in path:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(p)
    return cur


def _list(v: Any) -> list:
    return v if isinstance(v, list) else []


def _selector_text(sel: Any) -> str:
    if not isinstance(sel, Mapping):
        return _NONE
    try:
        text = str(LabelSelector.from_api(sel))
    except SelectorError:
        return _NONE
    return text or _NONE


# --- pods ------------------------------------------------------------------------------------


def pod_status_reason(pod: Mapping) -> tuple[str, int, int, int, datetime | None]:
    """(STATUS, ready, total, restarts, last restart) exactly as kubectl's printPod derives them."""
    spec = _m(pod.get("spec"))
    status = _m(pod.get("status"))
    init_specs = _list(spec.get("initContainers"))
    total = len(_list(spec.get("containers")))
    ready = restarts = 0
    last_restart: datetime | None = None
    reason = status.get("reason") or status.get("phase") or ""
    for cond in _list(status.get("conditions")):
        if (isinstance(cond, Mapping) and cond.get("type") == "PodScheduled"
                and cond.get("reason") == "SchedulingGated"):
            reason = "SchedulingGated"

    def note_restart(cs: Mapping) -> None:
        nonlocal last_restart
        t = parse_time(_d(cs, "lastState", "terminated", "finishedAt"))
        if t is not None and (last_restart is None or t > last_restart):
            last_restart = t

    sidecars = {str(c.get("name")) for c in init_specs if isinstance(c, Mapping) and c.get("restartPolicy") == "Always"}
    sidecar_restarts = 0
    initializing = False
    for i, cs in enumerate(_list(status.get("initContainerStatuses"))):
        if not isinstance(cs, Mapping):
            continue
        restarts += int(cs.get("restartCount") or 0)
        note_restart(cs)
        if str(cs.get("name")) in sidecars:
            sidecar_restarts += int(cs.get("restartCount") or 0)
        term = _d(cs, "state", "terminated")
        waiting = _d(cs, "state", "waiting")
        if isinstance(term, Mapping) and term.get("exitCode") == 0:
            continue
        if str(cs.get("name")) in sidecars and cs.get("started"):
            if cs.get("ready"):
                ready += 1
            continue
        if isinstance(term, Mapping):
            if term.get("reason"):
                reason = "Init:" + term["reason"]
            elif term.get("signal"):
                reason = f"Init:Signal:{term['signal']}"
            else:
                reason = f"Init:ExitCode:{term.get('exitCode', 0)}"
        elif isinstance(waiting, Mapping) and waiting.get("reason") and waiting.get("reason") != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        initializing = True
        break
    initialized = any(isinstance(c, Mapping) and c.get("type") == "Initialized" and c.get("status") == "True"
                      for c in _list(status.get("conditions")))
    if not initializing or initialized:
        restarts = sidecar_restarts
        has_running = False
        for cs in reversed(_list(status.get("containerStatuses"))):
            if not isinstance(cs, Mapping):
                continue
            restarts += int(cs.get("restartCount") or 0)
            note_restart(cs)
            waiting = _d(cs, "state", "waiting")
            term = _d(cs, "state", "terminated")
            if isinstance(waiting, Mapping) and waiting.get("reason"):
                reason = waiting["reason"]
            elif isinstance(term, Mapping) and term.get("reason"):
                reason = term["reason"]
            elif isinstance(term, Mapping):
                reason = f"Signal:{term['signal']}" if term.get("signal") else f"ExitCode:{term.get('exitCode', 0)}"
            elif cs.get("ready") and isinstance(_d(cs, "state", "running"), Mapping):
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            has_ready = any(isinstance(c, Mapping) and c.get("type") == "Ready" and c.get("status") == "True"
                            for c in _list(status.get("conditions")))
            reason = "Running" if has_ready else "NotReady"
    if _meta(pod).get("deletionTimestamp"):
        if status.get("reason") == "NodeLost":
            reason = "Unknown"
        elif status.get("phase") not in ("Succeeded", "Failed"):
            reason = "Terminating"
    return reason, ready, total, restarts, last_restart


def _pod_row(pod: Mapping, now: datetime) -> Row:
    reason, ready, total, restarts, last = pod_status_reason(pod)
    restarts_text = str(restarts)
    if restarts and last is not None:
        restarts_text = f"{restarts} ({human_duration((now - last).total_seconds())} ago)"
    status = _m(pod.get("status"))
    gates = _list(_d(pod, "spec", "readinessGates"))
    gates_text = _NONE
    if gates:
        conds = {str(c.get("type")): c.get("status") for c in _list(status.get("conditions")) if isinstance(c, Mapping)}
        true = sum(1 for g in gates if isinstance(g, Mapping) and conds.get(str(g.get("conditionType"))) == "True")
        gates_text = f"{true}/{len(gates)}"
    return [_meta(pod).get("name", ""), f"{ready}/{total}", reason, restarts_text, _age(pod, now),
            status.get("podIP") or _NONE, _d(pod, "spec", "nodeName") or _NONE,
            status.get("nominatedNodeName") or _NONE, gates_text]


_POD_COLUMNS = [
    _NAME,
    _col("Ready", description="The aggregate readiness state of this pod for accepting traffic."),
    _col("Status", description="The aggregate status of the containers in this pod."),
    _col("Restarts", description="The number of times the containers in this pod have been restarted and when "
         "the last container in this pod has restarted."),
    _AGE,
    _col("IP", priority=1, description="IP address allocated to the pod. Routable at least within the cluster."),
    _col("Node", priority=1, description="NodeName indicates in which node this pod is scheduled."),
    _col("Nominated Node", priority=1, description="nominatedNodeName is set only when this pod preempts other "
         "pods on the node."),
    _col("Readiness Gates", priority=1, description="If specified, all readiness gates will be evaluated for pod "
         "readiness."),
]

# --- workloads -------------------------------------------------------------------------------


def _containers_images(obj: Mapping) -> tuple[str, str]:
    cs = [c for c in _list(_d(obj, "spec", "template", "spec", "containers")) if isinstance(c, Mapping)]
    return ",".join(str(c.get("name", "")) for c in cs), ",".join(str(c.get("image", "")) for c in cs)


def _int(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def _deployment_row(d: Mapping, now: datetime) -> Row:
    names, images = _containers_images(d)
    desired = _int(_d(d, "spec", "replicas"))
    return [_meta(d).get("name", ""), f"{_int(_d(d, 'status', 'readyReplicas'))}/{desired}",
            _int(_d(d, "status", "updatedReplicas")), _int(_d(d, "status", "availableReplicas")), _age(d, now),
            names, images, _selector_text(_d(d, "spec", "selector"))]


_WORKLOAD_WIDE = [
    _col("Containers", priority=1, description="Names of each container in the template."),
    _col("Images", priority=1, description="Images referenced by each container in the template."),
    _col("Selector", priority=1, description="Label selector for pods."),
]
_DEPLOYMENT_COLUMNS = [
    _NAME,
    _col("Ready", description="Number of the pod with ready state"),
    _col("Up-to-date", "integer", "Total number of non-terminated pods targeted by this deployment that have the "
         "desired template spec."),
    _col("Available", "integer", "Total number of available pods (ready for at least minReadySeconds) targeted by "
         "this deployment."),
    _AGE,
    *_WORKLOAD_WIDE,
]


def _replicaset_row(rs: Mapping, now: datetime) -> Row:
    names, images = _containers_images(rs)
    return [_meta(rs).get("name", ""), _int(_d(rs, "spec", "replicas")), _int(_d(rs, "status", "replicas")),
            _int(_d(rs, "status", "readyReplicas")), _age(rs, now), names, images,
            _selector_text(_d(rs, "spec", "selector"))]


_REPLICASET_COLUMNS = [
    _NAME,
    _col("Desired", "integer", "Replicas is the number of desired replicas."),
    _col("Current", "integer", "Replicas is the most recently observed number of replicas."),
    _col("Ready", "integer", "The number of ready replicas for this replica set."),
    _AGE,
    *_WORKLOAD_WIDE,
]

# --- services and endpoints ------------------------------------------------------------------


def _service_external_ip(svc: Mapping) -> str:
    spec = _m(svc.get("spec"))
    stype = spec.get("type") or "ClusterIP"
    external = [str(ip) for ip in _list(spec.get("externalIPs"))]
    if stype in ("ClusterIP", "NodePort"):
        return ",".join(external) if external else _NONE
    if stype == "LoadBalancer":
        ingress = [i.get("ip") or i.get("hostname") for i in _list(_d(svc, "status", "loadBalancer", "ingress"))
                   if isinstance(i, Mapping)]
        ips = [str(i) for i in ingress if i] + external
        return ",".join(ips) if ips else "<pending>"
    if stype == "ExternalName":
        return str(spec.get("externalName") or _NONE)
    return "<unknown>"


def _service_ports(svc: Mapping) -> str:
    parts = []
    for p in _list(_d(svc, "spec", "ports")):
        if not isinstance(p, Mapping):
            continue
        proto = p.get("protocol") or "TCP"
        if p.get("nodePort"):
            parts.append(f"{p.get('port')}:{p.get('nodePort')}/{proto}")
        else:
            parts.append(f"{p.get('port')}/{proto}")
    return ",".join(parts) if parts else _NONE


def _service_row(svc: Mapping, now: datetime) -> Row:
    sel = _d(svc, "spec", "selector")
    sel_text = ",".join(f"{k}={v}" for k, v in sorted(sel.items())) if isinstance(sel, Mapping) and sel else _NONE
    return [_meta(svc).get("name", ""), _d(svc, "spec", "type") or "ClusterIP",
            _d(svc, "spec", "clusterIP") or _NONE, _service_external_ip(svc), _service_ports(svc), _age(svc, now),
            sel_text]


_SERVICE_COLUMNS = [
    _NAME,
    _col("Type", description="type determines how the Service is exposed."),
    _col("Cluster-IP", description="clusterIP is the IP address of the service."),
    _col("External-IP", description="externalIPs is a list of IP addresses for which nodes in the cluster will "
         "also accept traffic for this service."),
    _col("Port(s)", description="The list of ports that are exposed by this service."),
    _AGE,
    _col("Selector", priority=1, description="Route service traffic to pods with label keys and values matching "
         "this selector."),
]


def _endpoints_text(ep: Mapping) -> str:
    items: list[str] = []
    total = 0
    for subset in _list(ep.get("subsets")):
        if not isinstance(subset, Mapping):
            continue
        addrs = [a.get("ip") for a in _list(subset.get("addresses")) if isinstance(a, Mapping)]
        ports = [p.get("port") for p in _list(subset.get("ports")) if isinstance(p, Mapping)]
        pairs = [f"{a}:{p}" for p in ports for a in addrs] if ports else [str(a) for a in addrs]
        total += len(pairs)
        items.extend(pairs)
    if not items:
        return _NONE
    shown = ",".join(items[:_MAX_ENDPOINTS_SHOWN])
    if total > _MAX_ENDPOINTS_SHOWN:
        shown += f" + {total - _MAX_ENDPOINTS_SHOWN} more..."
    return shown


_ENDPOINTS_COLUMNS = [
    _NAME,
    _col("Endpoints", description="Endpoints of the service: the addresses and ports of its ready pods."),
    _AGE,
]

# --- cluster objects -------------------------------------------------------------------------


def _node_status(node: Mapping) -> str:
    status = []
    for c in _list(_d(node, "status", "conditions")):
        if isinstance(c, Mapping) and c.get("type") == "Ready":
            status.append("Ready" if c.get("status") == "True" else "NotReady")
    if not status:
        status.append("Unknown")
    if _d(node, "spec", "unschedulable") is True:
        status.append("SchedulingDisabled")
    return ",".join(status)


def _node_roles(node: Mapping) -> str:
    roles = set()
    for k, v in _m(_meta(node).get("labels")).items():
        if k.startswith("node-role.kubernetes.io/"):
            role = k[len("node-role.kubernetes.io/"):]
            if role:
                roles.add(role)
        elif k == "kubernetes.io/role" and v:
            roles.add(v)
    return ",".join(sorted(roles)) if roles else _NONE


def _node_address(node: Mapping, kind: str) -> str:
    for a in _list(_d(node, "status", "addresses")):
        if isinstance(a, Mapping) and a.get("type") == kind:
            return str(a.get("address"))
    return _NONE


def _node_row(node: Mapping, now: datetime) -> Row:
    info = _m(_d(node, "status", "nodeInfo"))
    return [_meta(node).get("name", ""), _node_status(node), _node_roles(node), _age(node, now),
            info.get("kubeletVersion", ""), _node_address(node, "InternalIP"), _node_address(node, "ExternalIP"),
            info.get("osImage") or "<unknown>", info.get("kernelVersion") or "<unknown>",
            info.get("containerRuntimeVersion") or "<unknown>"]


_NODE_COLUMNS = [
    _NAME,
    _col("Status", description="The status of the node"),
    _col("Roles", description="The roles of the node"),
    _AGE,
    _col("Version", description="Kubelet Version reported by the node."),
    _col("Internal-IP", priority=1, description="List of addresses reachable to the node."),
    _col("External-IP", priority=1, description="List of addresses reachable to the node."),
    _col("OS-Image", priority=1, description="OS Image reported by the node from /etc/os-release."),
    _col("Kernel-Version", priority=1, description="Kernel Version reported by the node from 'uname -r'."),
    _col("Container-Runtime", priority=1, description="ContainerRuntime Version reported by the node."),
]


def _namespace_row(ns: Mapping, now: datetime) -> Row:
    return [_meta(ns).get("name", ""), _d(ns, "status", "phase") or "", _age(ns, now)]


_NAMESPACE_COLUMNS = [_NAME, _col("Status", description="The status of the namespace"), _AGE]


def _configmap_row(cm: Mapping, now: datetime) -> Row:
    data = _m(cm.get("data"))
    binary = _m(cm.get("binaryData"))
    return [_meta(cm).get("name", ""), len(data) + len(binary), _age(cm, now)]


_CONFIGMAP_COLUMNS = [_NAME, _col("Data", "integer", "Number of keys in the ConfigMap."), _AGE]


def _lease_row(lease: Mapping, now: datetime) -> Row:
    return [_meta(lease).get("name", ""), _d(lease, "spec", "holderIdentity") or _NONE, _age(lease, now)]


_LEASE_COLUMNS = [_NAME, _col("Holder", description="holderIdentity contains the identity of the holder of a "
                              "current lease."), _AGE]


def _event_row(ev: Mapping, now: datetime) -> Row:
    first = _since(ev.get("firstTimestamp"), now) if ev.get("firstTimestamp") else _since(ev.get("eventTime"), now)
    last = _since(ev.get("lastTimestamp"), now) if ev.get("lastTimestamp") else first
    count = _int(ev.get("count"))
    series = ev.get("series")
    if isinstance(series, Mapping):
        last = _since(series.get("lastObservedTime"), now)
        count = _int(series.get("count"))
    elif count == 0:
        count = 1
    io = _m(ev.get("involvedObject"))
    kind = str(io.get("kind") or "").lower()
    target = f"{kind}/{io['name']}" if io.get("name") else kind
    source = _m(ev.get("source"))
    src = source.get("component") or ev.get("reportingComponent") or ""
    host = source.get("host") or ev.get("reportingInstance") or ""
    src_text = f"{src}, {host}" if src and host else (src or host)
    return [last, ev.get("type") or "", ev.get("reason") or "", target, io.get("fieldPath") or "", src_text,
            str(ev.get("message") or "").strip(), first, count, _meta(ev).get("name", "")]


_EVENT_COLUMNS = [
    _col("Last Seen", description="Time when this Event was last seen"),
    _col("Type", description="Type of this event (Normal, Warning), new types could be added in the future."),
    _col("Reason", description="This should be a short, machine understandable string that gives the reason "
         "for this event being generated."),
    _col("Object", description="The object that this event is about."),
    _col("Subobject", priority=1, description="The subobject (e.g. a container) this event is about."),
    _col("Source", priority=1, description="The component reporting this event."),
    _col("Message", description="A human-readable description of the status of this operation."),
    _col("First Seen", priority=1, description="The time at which the event was first recorded."),
    _col("Count", "integer", priority=1, description="The number of times this event has occurred."),
    _col("Name", priority=1, fmt="name", description="Name must be unique within a namespace."),
]


def _endpoints_row(ep: Mapping, now: datetime) -> Row:
    return [_meta(ep).get("name", ""), _endpoints_text(ep), _age(ep, now)]


_PRINTERS: dict[str, tuple[list[dict], Callable[[Mapping, datetime], Row]]] = {
    "pods": (_POD_COLUMNS, _pod_row),
    "deployments": (_DEPLOYMENT_COLUMNS, _deployment_row),
    "replicasets": (_REPLICASET_COLUMNS, _replicaset_row),
    "services": (_SERVICE_COLUMNS, _service_row),
    "endpoints": (_ENDPOINTS_COLUMNS, _endpoints_row),
    "nodes": (_NODE_COLUMNS, _node_row),
    "namespaces": (_NAMESPACE_COLUMNS, _namespace_row),
    "configmaps": (_CONFIGMAP_COLUMNS, _configmap_row),
    "leases": (_LEASE_COLUMNS, _lease_row),
    "events": (_EVENT_COLUMNS, _event_row),
}


def _default_row(obj: Mapping, now: datetime) -> Row:
    return [_meta(obj).get("name", ""), _age(obj, now)]


def columns_for(plural: str, wide: bool = True) -> list[dict]:
    columns = _PRINTERS.get(plural, ([_NAME, _AGE], _default_row))[0]
    return [dict(c) for c in columns if wide or c["priority"] == 0]


def _partial_metadata(obj: Mapping, api_version: str, kind: str) -> dict:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": dict(_meta(obj))}


def table_for(rtype: Any, objs: Iterable[Mapping], wide: bool = True, now: datetime | None = None,
              include_object: str = "Metadata") -> dict:
    """A meta.k8s.io/v1 Table for objs of rtype (a ResourceType or plural name).

    wide=True (what the API server should send) includes the priority-1 columns kubectl shows
    with `-o wide`. include_object is the `?includeObject=` value: Metadata (kubectl's default;
    kubectl reads the namespace for `-A` from it), Object, or None. `now` makes AGE
    deterministic in tests; default is the current time."""
    plural = rtype if isinstance(rtype, str) else getattr(rtype, "plural", "")
    api_version = "" if isinstance(rtype, str) else getattr(rtype, "api_version", "")
    kind = "" if isinstance(rtype, str) else getattr(rtype, "kind", "")
    now = now or datetime.now(UTC)
    all_columns, printer = _PRINTERS.get(plural, ([_NAME, _AGE], _default_row))
    keep = [i for i, c in enumerate(all_columns) if wide or c["priority"] == 0]
    rows = []
    for obj in objs:
        cells = printer(obj, now)
        row: dict = {"cells": [cells[i] for i in keep]}
        if include_object == "Object":
            row["object"] = dict(obj)
        elif include_object != "None":
            row["object"] = _partial_metadata(obj, api_version, kind)
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
        "columnDefinitions": [dict(all_columns[i]) for i in keep],
        "rows": rows,
    }
