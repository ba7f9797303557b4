"""Reading a Pod dict (JSON-shaped, as the API serves it) into what the agent acts on.

Pods arrive defaulted by the API server, but the cache and tests may hold sparser dicts, so the
Kubernetes defaults are applied here too (restartPolicy Always, grace 30 s, probe timings,
imagePullPolicy by tag).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from controlplane.quantity import QuantityError, parse_quantity

from ._runtime import ContainerSpec, PortSpec

# Kubernetes' default terminationGracePeriodSeconds.
DEFAULT_GRACE_SECONDS = 30
# Kubernetes' defaults for probe timing (core/v1 Probe).
PROBE_DEFAULTS = {"initialDelaySeconds": 0, "timeoutSeconds": 1, "periodSeconds": 10,
                  "successThreshold": 1, "failureThreshold": 3}
# Annotation carrying {"<containerPort>/<PROTO>": hostPort} for the endpoints controller.
HOST_PORTS_ANNOTATION = "edgeplane.io/host-ports"


class PodConfigError(ValueError):
    """The pod asks for something the agent cannot run (reported as CreateContainerConfigError)."""


def pod_key(pod: dict[str, Any]) -> str:
    md = pod.get("metadata") or {}
    return f"{md.get('namespace') or 'default'}/{md.get('name', '')}"


def pod_uid(pod: dict[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("uid", ""))


def containers_of(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return list((pod.get("spec") or {}).get("containers") or [])


def restart_policy(pod: dict[str, Any]) -> str:
    return str((pod.get("spec") or {}).get("restartPolicy") or "Always")


def is_deleting(pod: dict[str, Any]) -> bool:
    return bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def grace_seconds(pod: dict[str, Any]) -> int:
    """The grace period to stop this pod with: the deletion's own, else the spec's."""
    md = pod.get("metadata") or {}
    if md.get("deletionGracePeriodSeconds") is not None:
        return max(0, int(md["deletionGracePeriodSeconds"]))
    value = (pod.get("spec") or {}).get("terminationGracePeriodSeconds")
    return DEFAULT_GRACE_SECONDS if value is None else max(0, int(value))


def pull_policy(container: dict[str, Any]) -> str:
    policy = container.get("imagePullPolicy")
    if policy:
        return str(policy)
    image = str(container.get("image", ""))
    last = image.rsplit("/", 1)[-1]
    # Kubernetes' defaulting: untagged or ':latest' images are pulled Always.
    if "@" in image:
        return "IfNotPresent"
    if ":" not in last or last.endswith(":latest"):
        return "Always"
    return "IfNotPresent"


def image_registry(image: str) -> str:
    """The registry host a reference pulls from (Docker's rules: docker.io unless named)."""
    first, sep, _ = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


@dataclass(frozen=True, slots=True)
class Probe:
    kind: str  # "httpGet" | "tcpSocket" | "exec" | "grpc"
    handler: dict[str, Any]
    initial_delay: float
    timeout: float
    period: float
    success_threshold: int
    failure_threshold: int
    grace_seconds: int | None  # probe-level terminationGracePeriodSeconds


def probe_of(container: dict[str, Any], which: str) -> Probe | None:
    """`which` is "livenessProbe" | "readinessProbe" | "startupProbe"."""
    raw = container.get(which)
    if not raw:
        return None
    kind = next((k for k in ("httpGet", "tcpSocket", "exec", "grpc") if raw.get(k)), None)
    if kind is None:
        return None
    vals = {k: raw.get(k) if raw.get(k) is not None else d for k, d in PROBE_DEFAULTS.items()}
    return Probe(
        kind=kind, handler=dict(raw[kind]),
        initial_delay=float(vals["initialDelaySeconds"]), timeout=float(vals["timeoutSeconds"]),
        period=float(vals["periodSeconds"]), success_threshold=int(vals["successThreshold"]),
        failure_threshold=int(vals["failureThreshold"]),
        grace_seconds=raw.get("terminationGracePeriodSeconds"),
    )


def _field_ref(pod: dict[str, Any], path: str, node_name: str, node_address: str) -> str:
    md = pod.get("metadata") or {}
    values = {
        "metadata.name": md.get("name", ""),
        "metadata.namespace": md.get("namespace") or "default",
        "metadata.uid": md.get("uid", ""),
        "spec.nodeName": node_name,
        "spec.serviceAccountName": (pod.get("spec") or {}).get("serviceAccountName", ""),
        "status.hostIP": node_address,
    }
    if path.startswith("metadata.labels['") and path.endswith("']"):
        return str((md.get("labels") or {}).get(path[17:-2], ""))
    if path.startswith("metadata.annotations['") and path.endswith("']"):
        return str((md.get("annotations") or {}).get(path[22:-2], ""))
    if path not in values:
        raise PodConfigError(f"unsupported fieldRef {path!r}")
    return str(values[path])


def _env(pod: dict[str, Any], container: dict[str, Any], node_name: str,
         node_address: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in container.get("env") or []:
        name = item.get("name")
        if not name:
            raise PodConfigError("env entry without a name")
        if "valueFrom" in item and item["valueFrom"]:
            ref = item["valueFrom"].get("fieldRef")
            if not ref:
                raise PodConfigError(f"env {name}: only valueFrom.fieldRef is supported")
            env[name] = _field_ref(pod, str(ref.get("fieldPath", "")), node_name, node_address)
        else:
            value = str(item.get("value", ""))
            # $(VAR) expansion against earlier entries, as the kubelet does.
            for k, v in env.items():
                value = value.replace(f"$({k})", v)
            env[name] = value
    return env


# Distinct quantity texts remembered: a node's pods repeat a handful ("10m", "16Mi").
QUANTITY_CACHE = 256
_quantities: dict[str, Fraction] = {}


def _quantity(text: object) -> Fraction:
    """parse_quantity, remembered for texts: its exact Fraction arithmetic was a few % of a
    hollow-node runner's CPU, every container start parsing the same texts."""
    if type(text) is not str:
        return parse_quantity(text)
    value = _quantities.get(text)
    if value is None:
        value = parse_quantity(text)  # (an error is raised, never remembered)
        if len(_quantities) >= QUANTITY_CACHE:
            _quantities.clear()
        _quantities[text] = value
    return value


def _resources(container: dict[str, Any]) -> tuple[int | None, int | None, int | None]:
    res = container.get("resources") or {}
    limits = res.get("limits") or {}
    requests = res.get("requests") or {}
    try:
        nano = int(_quantity(limits["cpu"]) * 10**9) if "cpu" in limits else None
        mem = int(_quantity(limits["memory"])) if "memory" in limits else None
        # cpu shares from the request, as the kubelet maps it (1 core = 1024 shares, min 2).
        shares = (max(2, int(_quantity(requests["cpu"]) * 1024))
                  if "cpu" in requests else None)
    except QuantityError as exc:
        raise PodConfigError(f"invalid resource quantity: {exc}") from exc
    if mem is not None and mem < 6 * 1024 * 1024:
        # Docker refuses memory limits below 6 MiB; say so instead of a start failure.
        raise PodConfigError("memory limit must be at least 6Mi for the Docker runtime")
    return nano, mem, shares


def container_spec(pod: dict[str, Any], container: dict[str, Any], *, node_name: str,
                   node_address: str, restart_count: int) -> ContainerSpec:
    """The ContainerSpec for one container of the pod. Raises PodConfigError."""
    md = pod.get("metadata") or {}
    image = container.get("image")
    if not image:
        raise PodConfigError(f"container {container.get('name')!r} has no image")
    host_network = (pod.get("spec") or {}).get("hostNetwork") is True
    ports: list[PortSpec] = []
    for p in container.get("ports") or []:
        try:
            cport = int(p["containerPort"])
        except (KeyError, TypeError, ValueError) as exc:
            raise PodConfigError("ports[].containerPort must be an integer") from exc
        proto = str(p.get("protocol") or "TCP").upper()
        hport = p.get("hostPort")
        if host_network:
            if hport and int(hport) != cport:
                raise PodConfigError("ports[].hostPort must match containerPort when hostNetwork "
                                     "is true")
            hport = cport  # the container listens on the node's own port
        ports.append(PortSpec(cport, proto, str(p.get("hostIP") or node_address),
                              int(hport) if hport else None))
    nano, mem, shares = _resources(container)
    command = container.get("command")
    args = container.get("args")
    return ContainerSpec(
        node_name=node_name,
        pod_namespace=md.get("namespace") or "default",
        pod_name=md.get("name", ""),
        pod_uid=str(md.get("uid", "")),
        container_name=str(container.get("name", "")),
        image=str(image),
        command=[str(c) for c in command] if command else None,
        args=[str(a) for a in args] if args is not None else None,
        env=_env(pod, container, node_name, node_address),
        working_dir=container.get("workingDir") or None,
        # A host-network pod has the node's hostname, as in Kubernetes.
        hostname=("" if host_network
                  else str((pod.get("spec") or {}).get("hostname") or md.get("name", ""))),
        ports=tuple(ports),
        restart_count=restart_count,
        grace_seconds=grace_seconds(pod),
        nano_cpus=nano,
        mem_limit=mem,
        cpu_shares=shares,
        tty=bool(container.get("tty")),
        stdin=bool(container.get("stdin")),
        host_network=host_network,
    )
