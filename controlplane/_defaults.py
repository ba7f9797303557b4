"""Defaulting: fill the fields Kubernetes fills, so `kubectl get -o yaml` shows what users expect
and controllers/agent can rely on them being present.

Each function mutates the object in place (the registry hands over a fresh copy) and never
raises on malformed input: validation runs afterwards and reports it with a field path.
Metadata defaulting (uid, creationTimestamp, resourceVersion, generation) is the registry's.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["DEFAULTERS", "default_object", "default_pod_spec", "image_pull_policy"]

# Kubernetes' defaults (pkg/apis/*/v1/defaults.go); each value is the one upstream uses.
DEFAULT_TERMINATION_GRACE_SECONDS = 30  # SetDefaults_PodSpec
DEFAULT_SCHEDULER = "default-scheduler"  # the name kube-scheduler answers to
TERMINATION_MESSAGE_PATH = "/dev/termination-log"  # SetDefaults_Container
PROBE_PERIOD_SECONDS = 10
PROBE_TIMEOUT_SECONDS = 1
PROBE_SUCCESS_THRESHOLD = 1
PROBE_FAILURE_THRESHOLD = 3
VOLUME_DEFAULT_MODE = 420  # 0644, the mode of projected configMap/secret files
DEPLOYMENT_REVISION_HISTORY = 10  # apps/v1 SetDefaults_Deployment
DEPLOYMENT_PROGRESS_DEADLINE = 600
DEPLOYMENT_MAX_SURGE = "25%"
DEPLOYMENT_MAX_UNAVAILABLE = "25%"


def _d(obj: object, key: str) -> dict | None:
    """obj[key] as a dict, created if absent; None if obj or the value is not an object."""
    if not isinstance(obj, dict):
        return None
    val = obj.setdefault(key, {})
    return val if isinstance(val, dict) else None


def _m(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def _items(obj: object, key: str) -> list[dict]:
    if not isinstance(obj, dict):
        return []
    val = obj.get(key)
    if not isinstance(val, list):
        return []
    return [v for v in val if isinstance(v, dict)]


def image_pull_policy(image: object) -> str:
    """Always for `:latest` or untagged images, IfNotPresent otherwise (incl. digests)."""
    if not isinstance(image, str):
        return "IfNotPresent"
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return "Always"
    return "Always" if last.rsplit(":", 1)[1] == "latest" else "IfNotPresent"


def _default_probe(probe: object) -> None:
    if not isinstance(probe, dict):
        return
    probe.setdefault("timeoutSeconds", PROBE_TIMEOUT_SECONDS)
    probe.setdefault("periodSeconds", PROBE_PERIOD_SECONDS)
    probe.setdefault("successThreshold", PROBE_SUCCESS_THRESHOLD)
    probe.setdefault("failureThreshold", PROBE_FAILURE_THRESHOLD)
    _default_handler(probe)


def _default_handler(handler: dict) -> None:
    http = handler.get("httpGet")
    if isinstance(http, dict):
        http.setdefault("path", "/")
        http.setdefault("scheme", "HTTP")


def _default_container(c: dict) -> None:
    c.setdefault("imagePullPolicy", image_pull_policy(c.get("image")))
    c.setdefault("terminationMessagePath", TERMINATION_MESSAGE_PATH)
    c.setdefault("terminationMessagePolicy", "File")
    c.setdefault("resources", {})
    res = c.get("resources")
    if isinstance(res, dict):
        # SetDefaults_Container: requests default to limits when only limits are given.
        limits, requests = res.get("limits"), res.get("requests")
        if isinstance(limits, dict) and limits:
            if requests is None:
                res["requests"] = dict(limits)
            elif isinstance(requests, dict):
                for k, v in limits.items():
                    requests.setdefault(k, v)
    for port in _items(c, "ports"):
        port.setdefault("protocol", "TCP")
    for env in _items(c, "env"):
        vf = env.get("valueFrom")
        if isinstance(vf, dict) and isinstance(vf.get("fieldRef"), dict):
            vf["fieldRef"].setdefault("apiVersion", "v1")
    for name in ("livenessProbe", "readinessProbe", "startupProbe"):
        _default_probe(c.get(name))
    lifecycle = c.get("lifecycle")
    if isinstance(lifecycle, dict):
        for hook in ("postStart", "preStop"):
            if isinstance(lifecycle.get(hook), dict):
                _default_handler(lifecycle[hook])


def default_pod_spec(spec: object) -> None:
    """SetDefaults_PodSpec + containers/volumes (shared by Pods and pod templates)."""
    if not isinstance(spec, dict):
        return
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("terminationGracePeriodSeconds", DEFAULT_TERMINATION_GRACE_SECONDS)
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", DEFAULT_SCHEDULER)
    spec.setdefault("enableServiceLinks", True)
    for c in _items(spec, "containers") + _items(spec, "initContainers"):
        _default_container(c)
    for v in _items(spec, "volumes"):
        for src in ("configMap", "secret"):
            if isinstance(v.get(src), dict):
                v[src].setdefault("defaultMode", VOLUME_DEFAULT_MODE)
        if isinstance(v.get("hostPath"), dict):
            v["hostPath"].setdefault("type", "")
    if spec.get("hostNetwork") is True:
        # Host-network pods see the host's ports: containerPort is the hostPort.
        for c in _items(spec, "containers") + _items(spec, "initContainers"):
            for port in _items(c, "ports"):
                if "hostPort" not in port and "containerPort" in port:
                    port["hostPort"] = port["containerPort"]
    for t in _items(spec, "tolerations"):
        if t.get("operator") in (None, ""):
            t["operator"] = "Equal"


def _qos_class(spec: dict) -> str:
    """Guaranteed, Burstable or BestEffort (Kubernetes' GetPodQOS, simplified to cpu/memory)."""
    containers = _items(spec, "containers") + _items(spec, "initContainers")
    any_set = False
    guaranteed = True
    for c in containers:
        res = _m(c.get("resources"))
        req = _m(res.get("requests"))
        lim = _m(res.get("limits"))
        for r in ("cpu", "memory"):
            if r in req or r in lim:
                any_set = True
            if r not in lim or (r in req and str(req[r]) != str(lim[r])):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def default_pod(obj: dict) -> None:
    spec = _d(obj, "spec")
    default_pod_spec(spec)
    if spec is not None:
        # Set by the Priority admission plugin in Kubernetes when no priority class is named.
        spec.setdefault("priority", 0)
        spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    status = _d(obj, "status")
    if status is not None:
        status.setdefault("phase", "Pending")
        if spec is not None:
            status.setdefault("qosClass", _qos_class(spec))


def _default_template(obj: dict) -> None:
    spec = obj.get("spec")
    if isinstance(spec, dict):
        tmpl = _d(spec, "template")
        if tmpl is not None:
            _d(tmpl, "metadata")
            default_pod_spec(_d(tmpl, "spec"))


def default_deployment(obj: dict) -> None:
    spec = _d(obj, "spec")
    if spec is None:
        return
    spec.setdefault("replicas", 1)
    strategy = _d(spec, "strategy")
    if strategy is not None:
        strategy.setdefault("type", "RollingUpdate")
        if strategy.get("type") == "RollingUpdate":
            ru = _d(strategy, "rollingUpdate")
            if ru is not None:
                ru.setdefault("maxUnavailable", DEPLOYMENT_MAX_UNAVAILABLE)
                ru.setdefault("maxSurge", DEPLOYMENT_MAX_SURGE)
    spec.setdefault("revisionHistoryLimit", DEPLOYMENT_REVISION_HISTORY)
    spec.setdefault("progressDeadlineSeconds", DEPLOYMENT_PROGRESS_DEADLINE)
    _default_template(obj)


def default_replicaset(obj: dict) -> None:
    spec = _d(obj, "spec")
    if spec is None:
        return
    spec.setdefault("replicas", 1)
    _default_template(obj)


def default_service(obj: dict) -> None:
    spec = _d(obj, "spec")
    if spec is None:
        return
    spec.setdefault("type", "ClusterIP")
    stype = spec.get("type")
    if stype != "ExternalName":
        spec.setdefault("sessionAffinity", "None")
        spec.setdefault("internalTrafficPolicy", "Cluster")
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        cip = spec.get("clusterIP")
        if "ipFamilies" not in spec:
            spec["ipFamilies"] = ["IPv6"] if isinstance(cip, str) and ":" in cip else ["IPv4"]
    if stype in ("NodePort", "LoadBalancer"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
    for port in _items(spec, "ports"):
        port.setdefault("protocol", "TCP")
        if "targetPort" not in port and "port" in port:
            port["targetPort"] = port["port"]
    status = _d(obj, "status")
    if status is not None:
        status.setdefault("loadBalancer", {})


def default_namespace(obj: dict) -> None:
    spec = _d(obj, "spec")
    if spec is not None:
        spec.setdefault("finalizers", ["kubernetes"])
    status = _d(obj, "status")
    if status is not None:
        status.setdefault("phase", "Active")
    meta = _d(obj, "metadata")
    if meta is not None and isinstance(meta.get("name"), str):
        # Since Kubernetes 1.21 every namespace carries its own name as an immutable label,
        # so namespace selectors can pick one namespace by name.
        labels = _d(meta, "labels")
        if labels is not None:
            labels["kubernetes.io/metadata.name"] = meta["name"]


def default_node(obj: dict) -> None:
    status = obj.get("status")
    if isinstance(status, dict):
        cap = status.get("capacity")
        if isinstance(cap, dict) and "allocatable" not in status:
            status["allocatable"] = dict(cap)


def default_endpoints(obj: dict) -> None:
    for subset in _items(obj, "subsets"):
        for port in _items(subset, "ports"):
            port.setdefault("protocol", "TCP")


def _noop(obj: dict) -> None:
    return None


DEFAULTERS: dict[str, Callable[[dict], None]] = {
    "pods": default_pod,
    "services": default_service,
    "deployments": default_deployment,
    "replicasets": default_replicaset,
    "namespaces": default_namespace,
    "nodes": default_node,
    "endpoints": default_endpoints,
    "configmaps": _noop,
    "events": _noop,
    "leases": _noop,
}


def default_object(plural: str, obj: dict) -> None:
    """Apply the kind's defaults in place."""
    if isinstance(obj, dict):
        DEFAULTERS.get(plural, _noop)(obj)
