"""The scheduler's in-memory picture of the cluster.

Everything a filter or score plugin reads is precomputed here once per pod or per node, so a
plugin is a few dictionary lookups: CPU in millicores and memory in bytes as plain ints (Fraction
arithmetic in the hot loop would cost more than the whole filter), host ports as a set, pods of
one owner counted per node. The snapshot is updated incrementally from the informer's events
and by the scheduler itself when it *assumes* a binding before the store has confirmed it.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from controlplane.quantity import QuantityError, parse_quantity

# Kubernetes' label for the per-node topology domain; pod (anti-)affinity terms use it.
HOSTNAME_LABEL = "kubernetes.io/hostname"
# kube-scheduler scores a container without requests as if it asked for this much (non-zero
# defaults), so LeastAllocated still spreads request-less pods instead of piling them up.
DEFAULT_CPU_REQUEST_MILLI = 100
DEFAULT_MEMORY_REQUEST = 200 * 1024 * 1024
# Kubelet's default --max-pods, used when a node does not report allocatable pods.
DEFAULT_MAX_PODS = 110


# Distinct quantity strings remembered; a cluster uses a few dozen ("100m", "64Mi", ...), and
# parsing one costs more than a whole filter pass, so each is parsed once.
_QUANTITY_CACHE = 4096


@functools.lru_cache(maxsize=_QUANTITY_CACHE)
def _quantity_text(text: str) -> Fraction:
    try:
        return parse_quantity(text)
    except QuantityError:
        return Fraction(0)


def _quantity(value: Any) -> Fraction:
    return _quantity_text(str(value))


@functools.lru_cache(maxsize=_QUANTITY_CACHE)
def _cpu_milli_text(text: str) -> int:
    return math.ceil(_quantity_text(text) * 1000)


def cpu_milli(value: Any) -> int:
    return _cpu_milli_text(str(value))


@functools.lru_cache(maxsize=_QUANTITY_CACHE)
def _mem_bytes_text(text: str) -> int:
    return math.ceil(_quantity_text(text))


def mem_bytes(value: Any) -> int:
    return _mem_bytes_text(str(value))


def pod_key(pod: dict) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace') or 'default'}/{meta.get('name')}"


def _container_requests(containers: list[dict]) -> tuple[int, int]:
    cpu = mem = 0
    for c in containers:
        res = c.get("resources") or {}
        # Kubernetes defaults requests to limits when only limits are given.
        req = {**(res.get("limits") or {}), **(res.get("requests") or {})}
        if "cpu" in req:
            cpu += cpu_milli(req["cpu"])
        if "memory" in req:
            mem += mem_bytes(req["memory"])
    return cpu, mem


def pod_resource_requests(spec: dict) -> tuple[int, int]:
    """(cpu millicores, memory bytes) a pod reserves: max(sum of containers, any init container)."""
    cpu, mem = _container_requests(spec.get("containers") or [])
    for init in spec.get("initContainers") or []:
        icpu, imem = _container_requests([init])
        cpu, mem = max(cpu, icpu), max(mem, imem)
    return cpu, mem


def _weighted_terms(terms: list[dict] | None, inner: str) -> list[tuple[int, dict]]:
    return [(int(t.get("weight", 0)), t.get(inner) or {}) for t in terms or []]


@dataclass(slots=True)
class PodInfo:
    """What the plugins need to know about one pod, computed once."""

    key: str
    namespace: str
    uid: str
    labels: dict[str, str]
    node_name: str
    cpu: int
    memory: int
    host_ports: list[tuple[str, str, int]]
    tolerations: list[dict]
    node_selector: dict[str, str]
    required_node_terms: list[dict] | None
    preferred_node_terms: list[tuple[int, dict]]
    required_affinity: list[dict]
    required_anti_affinity: list[dict]
    preferred_affinity: list[tuple[int, dict]]
    preferred_anti_affinity: list[tuple[int, dict]]
    owner_uid: str | None
    obj: dict = field(repr=False)

    def equivalence_key(self) -> tuple | None:
        """Pods with equal keys are feasible on exactly the same nodes of a snapshot.

        None when feasibility depends on other pods in a way a new placement could *improve*
        (required pod affinity): such a pod is always evaluated on its own.
        """
        if self.required_affinity:
            return None
        return (
            self.namespace,
            tuple(sorted(self.labels.items())),
            self.cpu,
            self.memory,
            tuple(self.host_ports),
            repr(self.tolerations),
            tuple(sorted(self.node_selector.items())),
            repr(self.required_node_terms),
            repr(self.required_anti_affinity),
        )

    @classmethod
    def from_pod(cls, pod: dict) -> PodInfo:
        meta = pod.get("metadata") or {}
        spec = pod.get("spec") or {}
        cpu, mem = pod_resource_requests(spec)
        ports = []
        for c in spec.get("containers") or []:
            for p in c.get("ports") or []:
                if p.get("hostPort"):
                    ports.append(
                        (p.get("protocol") or "TCP", p.get("hostIP") or "0.0.0.0", int(p["hostPort"]))
                    )
        aff = spec.get("affinity") or {}
        node_aff = aff.get("nodeAffinity") or {}
        req_node = node_aff.get("requiredDuringSchedulingIgnoredDuringExecution")
        pod_aff = aff.get("podAffinity") or {}
        anti = aff.get("podAntiAffinity") or {}
        owner = next(
            (r.get("uid") for r in meta.get("ownerReferences") or [] if r.get("controller")), None
        )
        return cls(
            key=pod_key(pod),
            namespace=meta.get("namespace") or "default",
            uid=meta.get("uid") or "",
            labels=dict(meta.get("labels") or {}),
            node_name=spec.get("nodeName") or "",
            cpu=cpu,
            memory=mem,
            host_ports=ports,
            tolerations=list(spec.get("tolerations") or []),
            node_selector=dict(spec.get("nodeSelector") or {}),
            required_node_terms=(req_node or {}).get("nodeSelectorTerms") if req_node else None,
            preferred_node_terms=_weighted_terms(
                node_aff.get("preferredDuringSchedulingIgnoredDuringExecution"), "preference"
            ),
            required_affinity=list(pod_aff.get("requiredDuringSchedulingIgnoredDuringExecution") or []),
            required_anti_affinity=list(anti.get("requiredDuringSchedulingIgnoredDuringExecution") or []),
            preferred_affinity=_weighted_terms(
                pod_aff.get("preferredDuringSchedulingIgnoredDuringExecution"), "podAffinityTerm"
            ),
            preferred_anti_affinity=_weighted_terms(
                anti.get("preferredDuringSchedulingIgnoredDuringExecution"), "podAffinityTerm"
            ),
            owner_uid=owner,
            obj=pod,
        )


def node_is_ready(node: dict) -> bool:
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


@dataclass(slots=True)
class NodeInfo:
    """One node plus the running totals of the pods bound (or assumed bound) to it."""

    name: str
    labels: dict[str, str]
    taints: list[dict]
    unschedulable: bool
    ready: bool
    alloc_cpu: int
    alloc_memory: int
    alloc_pods: int
    obj: dict = field(repr=False)
    req_cpu: int = 0
    req_memory: int = 0
    # Requests with kube-scheduler's non-zero defaults, for scoring only.
    score_cpu: int = 0
    score_memory: int = 0
    pods: dict[str, PodInfo] = field(default_factory=dict)
    ports: Counter = field(default_factory=Counter)

    @classmethod
    def from_node(cls, node: dict) -> NodeInfo:
        meta = node.get("metadata") or {}
        spec = node.get("spec") or {}
        status = node.get("status") or {}
        alloc = status.get("allocatable") or status.get("capacity") or {}
        labels = dict(meta.get("labels") or {})
        labels.setdefault(HOSTNAME_LABEL, meta.get("name", ""))
        return cls(
            name=meta.get("name", ""),
            labels=labels,
            taints=list(spec.get("taints") or []),
            unschedulable=bool(spec.get("unschedulable")),
            ready=node_is_ready(node),
            alloc_cpu=cpu_milli(alloc.get("cpu", 0)),
            alloc_memory=mem_bytes(alloc.get("memory", 0)),
            alloc_pods=int(_quantity(alloc.get("pods", DEFAULT_MAX_PODS))),
            obj=node,
        )

    def add_pod(self, p: PodInfo) -> None:
        self.pods[p.key] = p
        self.req_cpu += p.cpu
        self.req_memory += p.memory
        self.score_cpu += p.cpu or DEFAULT_CPU_REQUEST_MILLI
        self.score_memory += p.memory or DEFAULT_MEMORY_REQUEST
        for port in p.host_ports:
            self.ports[port] += 1

    def remove_pod(self, key: str) -> PodInfo | None:
        p = self.pods.pop(key, None)
        if p is None:
            return None
        self.req_cpu -= p.cpu
        self.req_memory -= p.memory
        self.score_cpu -= p.cpu or DEFAULT_CPU_REQUEST_MILLI
        self.score_memory -= p.memory or DEFAULT_MEMORY_REQUEST
        for port in p.host_ports:
            self.ports[port] -= 1
            if self.ports[port] <= 0:
                del self.ports[port]
        return p


def _pod_holds_node(pod: dict) -> bool:
    # Finished pods no longer hold resources on their node (kube-scheduler skips them too).
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


class Snapshot:
    """Nodes and bound pods, updated incrementally; the only state the scheduler reads."""

    def __init__(self) -> None:
        self.nodes: dict[str, NodeInfo] = {}
        self.node_order: list[str] = []
        # Bound pods whose node is not (yet) known, so they are counted once the node appears:
        # node name -> pod key -> pod (a fresh leader replays 30,000 pods before the nodes; a scan
        # of every orphan per node was minutes of CPU at 1,000 nodes).
        self._orphans: dict[str, dict[str, PodInfo]] = {}
        self._pod_node: dict[str, str] = {}
        # owner uid -> node -> number of that owner's pods there (SelectorSpread).
        self.owner_counts: dict[str, Counter] = {}
        # Bound pods that carry required anti-affinity terms (checked against incoming pods).
        self.anti_affinity_pods: dict[str, PodInfo] = {}
        # The NodeInfos in node_order, for the scheduler's pass over the nodes of every pod
        # (rebuilt after a node is added, replaced or removed: a few times a second at most).
        self._ordered: list[NodeInfo] | None = None

    def ordered_nodes(self) -> list[NodeInfo]:
        """The nodes' infos in ``node_order`` (do not change the list)."""
        if self._ordered is None:
            nodes = self.nodes
            self._ordered = [nodes[name] for name in self.node_order]
        return self._ordered

    # -- nodes -------------------------------------------------------------------------------
    def upsert_node(self, node: dict) -> None:
        info = NodeInfo.from_node(node)
        old = self.nodes.get(info.name)
        if old is None:
            self.node_order.append(info.name)
            for p in self._orphans.pop(info.name, {}).values():
                info.add_pod(p)
        else:
            for p in old.pods.values():
                info.add_pod(p)
        self.nodes[info.name] = info
        self._ordered = None

    def remove_node(self, name: str) -> None:
        info = self.nodes.pop(name, None)
        if info is None:
            return
        self.node_order.remove(name)
        self._ordered = None
        if info.pods:
            self._orphans.setdefault(name, {}).update(info.pods)

    # -- pods --------------------------------------------------------------------------------
    def add_pod(self, pod: dict | PodInfo, node_name: str | None = None) -> None:
        """Count a bound (or assumed) pod on its node; replaces an earlier copy of the pod."""
        p = pod if isinstance(pod, PodInfo) else PodInfo.from_pod(pod)
        if node_name:
            p.node_name = node_name
        self.remove_pod(p.key)
        if not p.node_name or not _pod_holds_node(p.obj):
            return
        self._pod_node[p.key] = p.node_name
        info = self.nodes.get(p.node_name)
        if info is None:
            self._orphans.setdefault(p.node_name, {})[p.key] = p
        else:
            info.add_pod(p)
        if p.owner_uid:
            self.owner_counts.setdefault(p.owner_uid, Counter())[p.node_name] += 1
        if p.required_anti_affinity:
            self.anti_affinity_pods[p.key] = p

    def remove_pod(self, key: str) -> None:
        node = self._pod_node.pop(key, None)
        if node is None:
            return
        waiting = self._orphans.get(node)
        p = waiting.pop(key, None) if waiting is not None else None
        if waiting is not None and not waiting:
            del self._orphans[node]
        info = self.nodes.get(node)
        if info is not None:
            p = info.remove_pod(key) or p
        self.anti_affinity_pods.pop(key, None)
        if p is not None and p.owner_uid:
            counts = self.owner_counts.get(p.owner_uid)
            if counts is not None:
                counts[node] -= 1
                if counts[node] <= 0:
                    del counts[node]
                if not counts:
                    del self.owner_counts[p.owner_uid]

    def refresh_pod(self, key: str, pod: dict, built_from: dict) -> bool:
        """Take ``pod`` as the object of the counted pod ``key``, a newer copy that counts the
        same as ``built_from`` (e.g. the bound version of an assumed pod); False if ``key`` is
        not counted on a node or was counted from another version than ``built_from``."""
        info = self.nodes.get(self._pod_node.get(key, ""))
        p = info.pods.get(key) if info is not None else None
        if p is None or (p.obj.get("metadata") or {}).get("resourceVersion") != (
                built_from.get("metadata") or {}).get("resourceVersion"):
            return False
        p.obj = pod
        return True

    def node_of(self, key: str) -> str | None:
        return self._pod_node.get(key)

    def bound_pods(self) -> list[PodInfo]:
        out = [p for info in self.nodes.values() for p in info.pods.values()]
        return out
