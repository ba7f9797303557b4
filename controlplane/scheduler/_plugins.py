"""Filter and score plugins.

A filter answers "can this pod run on this node?" with ``None`` (yes) or a tuple of reasons in
kube-scheduler's wording, because those strings end up in the pod's ``PodScheduled`` condition
("0/5 nodes are available: 3 Insufficient cpu, ...") and operators grep for them.

A score plugin gives each feasible node a raw number; ``normalize`` maps the raw numbers of all
candidate nodes to 0..100, and the framework adds them up with the plugin's weight.

Work that depends only on the pod (parsing selectors, finding which topology domains hold
matching pods) happens once in ``prepare``, never per node: with a thousand nodes the per-node
part must stay a handful of lookups.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Protocol

from controlplane import objects
from controlplane.selectors import LabelSelector, SelectorError

from ._snapshot import (
    DEFAULT_CPU_REQUEST_MILLI,
    DEFAULT_MEMORY_REQUEST,
    HOSTNAME_LABEL,
    NodeInfo,
    PodInfo,
    Snapshot,
)

Reasons = tuple[str, ...] | None


class FilterPlugin(Protocol):
    name: str

    def prepare(self, pod: PodInfo, snap: Snapshot) -> Any:
        """Per-pod state handed back to ``filter``; ``None`` when the plugin has nothing to check."""

    def filter(self, pod: PodInfo, state: Any, node: NodeInfo) -> Reasons: ...


class ScorePlugin(Protocol):
    name: str
    weight: int

    def prepare(self, pod: PodInfo, snap: Snapshot) -> Any:
        """Per-pod state; ``None`` skips the plugin for this pod (it would score all nodes alike)."""

    def score(self, pod: PodInfo, state: Any, node: NodeInfo) -> float: ...

    def normalize(self, raw: list[float]) -> list[float]: ...


# -- shared matching helpers ----------------------------------------------------------------


def tolerates(tolerations: list[dict], taint: dict) -> bool:
    return objects.tolerates(tolerations, taint)


def _int_or_none(text: Any) -> int | None:
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def node_selector_requirement_matches(req: dict, labels: dict[str, str]) -> bool:
    """One NodeSelectorRequirement (In, NotIn, Exists, DoesNotExist, Gt, Lt) against labels."""
    key, op, values = req.get("key", ""), req.get("operator", ""), req.get("values") or []
    present = key in labels
    if op == "In":
        return present and labels[key] in values
    if op == "NotIn":
        return not present or labels[key] not in values
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt") and present and len(values) == 1:
        have, want = _int_or_none(labels[key]), _int_or_none(values[0])
        if have is None or want is None:
            return False
        return have > want if op == "Gt" else have < want
    return False


def node_selector_term_matches(term: dict, node: NodeInfo) -> bool:
    """A NodeSelectorTerm: all matchExpressions and matchFields must hold; an empty term matches nothing."""
    exprs = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not exprs and not fields:
        return False
    if not all(node_selector_requirement_matches(r, node.labels) for r in exprs):
        return False
    name_fields = {"metadata.name": node.name}
    return all(node_selector_requirement_matches(r, name_fields) for r in fields)


class _Term:
    """A PodAffinityTerm with its selector parsed and its namespaces resolved."""

    __slots__ = ("selector", "namespaces", "topology_key")

    def __init__(self, term: dict, own_namespace: str) -> None:
        try:
            self.selector: LabelSelector | None = LabelSelector.from_api(term.get("labelSelector") or {})
        except SelectorError:
            self.selector = None
        if term.get("labelSelector") is None:
            # A missing labelSelector selects no pods (Kubernetes: nil selector matches nothing).
            self.selector = None
        ns = term.get("namespaces") or []
        # namespaceSelector: {} means every namespace; a non-empty one would need Namespace
        # labels, which the snapshot does not track, so it falls back to the listed namespaces.
        all_ns = term.get("namespaceSelector") == {}
        self.namespaces: frozenset[str] | None = None if all_ns else frozenset(ns or [own_namespace])
        self.topology_key: str = term.get("topologyKey") or HOSTNAME_LABEL

    def matches(self, pod: PodInfo) -> bool:
        if self.selector is None:
            return False
        if self.namespaces is not None and pod.namespace not in self.namespaces:
            return False
        return self.selector.matches(pod.labels)


# -- filters --------------------------------------------------------------------------------

UNSCHEDULABLE_TAINT = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}


class NodeUnschedulable:
    """Cordoned nodes (spec.unschedulable) take no new pods unless the pod tolerates the cordon."""

    name = "NodeUnschedulable"
    _reason = ("node(s) were unschedulable",)

    def prepare(self, pod: PodInfo, snap: Snapshot) -> Any:
        return tolerates(pod.tolerations, UNSCHEDULABLE_TAINT)

    def filter(self, pod: PodInfo, state: Any, node: NodeInfo) -> Reasons:
        if node.unschedulable and not state:
            return self._reason
        return None


class NodeReady:
    """Only nodes whose Ready condition is True: the agent there is alive and can start the pod."""

    name = "NodeReady"
    _reason = ("node(s) were not ready",)

    def prepare(self, pod: PodInfo, snap: Snapshot) -> Any:
        return True

    def filter(self, pod: PodInfo, state: Any, node: NodeInfo) -> Reasons:
        return None if node.ready else self._reason


class NodeResourcesFit:
    """cpu, memory and pod count against allocatable minus what bound pods already requested."""

    name = "NodeResourcesFit"

    def prepare(self, pod: PodInfo, snap: Snapshot) -> Any:
        return True

    def filter(self, pod: PodInfo, state: Any, node: NodeInfo) -> Reasons:
        reasons: list[str] = []
        if len(node.pods) + 1 > node.alloc_pods:
            reasons.append("Too many pods")
        if pod.cpu and node.req_cpu + pod.cpu > node.alloc_cpu:
            reasons.append("Insufficient cpu")
        if pod.memory and node.req_memory + pod.memory > node.alloc_memory:
            reasons.append("Insufficient memory")
        return tuple(reasons) if reasons else None


def ports_conflict(a: tuple[str, str, int], b: tuple[str, str, int]) -> bool:
    """Same protocol and port, and the host IPs overlap (0.0.0.0 overlaps every address)."""
    return (
        a[0] == b[0]
        and a[2] == b[2]
        and (a[1] == b[1] or a[1] == "0.0.0.0" or b[1] == "0.0.0.0")
    )


class NodePorts:
    """A hostPort can be bound by one pod per node."""

    name = "NodePorts"
    _reason = ("node(s) didn't have free ports for the requested pod ports",)

    def prepare(self, pod: PodInfo, snap: Snapshot) -> Any:
        return pod.host_ports or None

    def filter(self, pod: PodInfo, state: Any, node: NodeInfo) -> Reasons:
        if not node.ports:
            return None
        for want in state:
            for used in node.ports:
                if ports_conflict(want, used):
                    return self._reason
        return None


class TaintToleration:
    """NoSchedule and NoExecute taints repel pods that do not tolerate them."""

    name = "TaintToleration"

    def prepare(self, pod: PodInfo, snap: Snapshot) -> Any:
        return True

    def filter(self, pod: PodInfo, state: Any, node: NodeInfo) -> Reasons:
        for taint in node.taints:
            if taint.get("effect") not in ("NoSchedule", "NoExecute"):
                continue
            if not tolerates(pod.tolerations, taint):
                return (
                    f"node(s) had untolerated taint {{{taint.get('key', '')}: {taint.get('value', '')}}}",
                )
        return None


class NodeAffinity:
    """spec.nodeSelector and required node affinity (terms ORed, expressions ANDed)."""

    name = "NodeAffinity"
    _reason = ("node(s) didn't match Pod's node affinity/selector",)

    def prepare(self, pod: PodInfo, snap: Snapshot) -> Any:
        if not pod.node_selector and pod.required_node_terms is None:
            return None
        return True

    def filter(self, pod: PodInfo, state: Any, node: NodeInfo) -> Reasons:
        labels = node.labels
        for k, v in pod.node_selector.items():
            if labels.get(k) != v:
                return self._reason
        terms = pod.required_node_terms
        if terms is not None and not any(node_selector_term_matches(t, node) for t in terms):
            return self._reason
        return None


class _PodAffinityState:
    __slots__ = ("affinity", "anti", "existing_anti")

    def __init__(self) -> None:
        # Per required affinity term: (topology key, domains holding a matching pod) — or None
        # when no pod matches anywhere and the pod matches its own terms (the first of a group).
        self.affinity: list[tuple[str, set[str]] | None] = []
        self.anti: list[tuple[str, set[str]]] = []
        # (topology key, domain) pairs forbidden by bound pods' anti-affinity toward this pod.
        self.existing_anti: set[tuple[str, str]] = set()


def _domains(term: _Term, snap: Snapshot) -> set[str]:
    out: set[str] = set()
    for info in snap.nodes.values():
        value = info.labels.get(term.topology_key)
        if value is None or value in out:
            continue
        if any(term.matches(p) for p in info.pods.values()):
            out.add(value)
    return out


class InterPodAffinity:
    """Required pod affinity / anti-affinity, both the incoming pod's and bound pods' terms."""

    name = "InterPodAffinity"

    def prepare(self, pod: PodInfo, snap: Snapshot) -> Any:
        if not (pod.required_affinity or pod.required_anti_affinity or snap.anti_affinity_pods):
            return None
        st = _PodAffinityState()
        terms = [_Term(t, pod.namespace) for t in pod.required_affinity]
        domains = [_domains(t, snap) for t in terms]
        if terms and not any(domains) and all(t.matches(pod) for t in terms):
            st.affinity = [None for _ in terms]
        else:
            st.affinity = [(t.topology_key, d) for t, d in zip(terms, domains, strict=True)]
        for raw in pod.required_anti_affinity:
            t = _Term(raw, pod.namespace)
            st.anti.append((t.topology_key, _domains(t, snap)))
        for other in snap.anti_affinity_pods.values():
            node = snap.nodes.get(other.node_name)
            if node is None:
                continue
            for raw in other.required_anti_affinity:
                t = _Term(raw, other.namespace)
                value = node.labels.get(t.topology_key)
                if value is not None and t.matches(pod):
                    st.existing_anti.add((t.topology_key, value))
        return st

    def filter(self, pod: PodInfo, state: Any, node: NodeInfo) -> Reasons:
        labels = node.labels
        for entry in state.affinity:
            if entry is None:
                continue
            key, domains = entry
            if labels.get(key) not in domains:
                return ("node(s) didn't match pod affinity rules",)
        for key, domains in state.anti:
            value = labels.get(key)
            if value is not None and value in domains:
                return ("node(s) didn't match pod anti-affinity rules",)
        for key, value in state.existing_anti:
            if labels.get(key) == value:
                return ("node(s) didn't satisfy existing pods anti-affinity rules",)
        return None


# -- scores ---------------------------------------------------------------------------------


def normalize_by_max(raw: list[float]) -> list[float]:
    top = max(raw, default=0)
    if top <= 0:
        return [0.0 for _ in raw]
    return [100.0 * r / top for r in raw]


def normalize_min_max(raw: list[float]) -> list[float]:
    lo, hi = min(raw, default=0), max(raw, default=0)
    if hi == lo:
        return [0.0 for _ in raw]
    return [100.0 * (r - lo) / (hi - lo) for r in raw]


class NodeAffinityScore:
    """Preferred node affinity: the sum of the weights of the matching preference terms."""

    name = "NodeAffinity"
    weight = 2

    def prepare(self, pod: PodInfo, snap: Snapshot) -> Any:
        return pod.preferred_node_terms or None

    def score(self, pod: PodInfo, state: Any, node: NodeInfo) -> float:
        return float(sum(w for w, term in state if node_selector_term_matches(term, node)))

    normalize = staticmethod(normalize_by_max)


class InterPodAffinityScore:
    """Preferred pod affinity (+weight) and anti-affinity (-weight) per topology domain."""

    name = "InterPodAffinity"
    weight = 2

    def prepare(self, pod: PodInfo, snap: Snapshot) -> Any:
        if not (pod.preferred_affinity or pod.preferred_anti_affinity):
            return None
        weights: Counter[tuple[str, str]] = Counter()
        signed = [(w, t) for w, t in pod.preferred_affinity] + [
            (-w, t) for w, t in pod.preferred_anti_affinity
        ]
        for w, raw in signed:
            term = _Term(raw, pod.namespace)
            for value in _domains(term, snap):
                weights[(term.topology_key, value)] += w
        return weights or None

    def score(self, pod: PodInfo, state: Any, node: NodeInfo) -> float:
        labels = node.labels
        return float(sum(w for (k, v), w in state.items() if labels.get(k) == v))

    normalize = staticmethod(normalize_min_max)


class SelectorSpread:
    """Spread the replicas of one owner (ReplicaSet, ...) across nodes: fewer siblings is better."""

    name = "SelectorSpread"
    weight = 2

    def prepare(self, pod: PodInfo, snap: Snapshot) -> Any:
        if not pod.owner_uid:
            return None
        return snap.owner_counts.get(pod.owner_uid) or Counter()

    def score(self, pod: PodInfo, state: Any, node: NodeInfo) -> float:
        return float(state.get(node.name, 0))

    def score_all(self, pod: PodInfo, state: Any, nodes: list[NodeInfo]) -> list[float]:
        """``score`` of every node in one pass (the framework's fast path)."""
        get = state.get
        return [float(get(node.name, 0)) for node in nodes]

    @staticmethod
    def normalize(raw: list[float]) -> list[float]:
        top = max(raw, default=0)
        if top <= 0:
            return [100.0 for _ in raw]
        return [100.0 * (top - r) / top for r in raw]

    def add_weighted(self, pod: PodInfo, state: Any, nodes: list[NodeInfo], totals: list[float]) -> list[float]:
        """``totals`` plus ``weight`` times the normalized score of each node (score_all and
        normalize themselves: the formula stays in one place), in one list: the framework's
        path for every pod."""
        weight = self.weight
        return [t + weight * s for t, s in zip(totals, self.normalize(self.score_all(pod, state, nodes)), strict=True)]


class LeastAllocated:
    """Prefer the node with the most free cpu and memory after placing the pod."""

    name = "LeastAllocated"
    weight = 1

    def prepare(self, pod: PodInfo, snap: Snapshot) -> Any:
        return (pod.cpu or DEFAULT_CPU_REQUEST_MILLI, pod.memory or DEFAULT_MEMORY_REQUEST)

    def score(self, pod: PodInfo, state: Any, node: NodeInfo) -> float:
        # One formula, in _add: the framework's batch path calls that directly, so the
        # single-node form pays the list, not the other way round.
        return self.score_all(pod, state, [node])[0]

    def score_all(self, pod: PodInfo, state: Any, nodes: list[NodeInfo]) -> list[float]:
        """``score`` of every node in one pass: 50 per resource (cpu, memory) times the
        fraction of the node's allocatable left free after the pod, never below 0; a resource
        the node does not report adds 0. (The formula is written once, in add_weighted: a
        score is never negative, so 0.0 + 1 * score is the score itself, bit for bit.)"""
        return self._add(state, nodes, [0.0] * len(nodes), 1)

    @staticmethod
    def normalize(raw: list[float]) -> list[float]:
        return raw

    def add_weighted(self, pod: PodInfo, state: Any, nodes: list[NodeInfo], totals: list[float]) -> list[float]:
        """``totals`` plus ``weight`` times each node's score (normalize keeps them as they
        are), added in the pass that computes them: the framework's path for every pod."""
        return self._add(state, nodes, totals, self.weight)

    @staticmethod
    def _add(state: Any, nodes: list[NodeInfo], totals: list[float], weight: int) -> list[float]:
        cpu, mem = state
        out = []
        append = out.append
        for t, node in zip(totals, nodes, strict=True):
            # (each attribute read once: this runs for ~50 nodes per pod)
            total = 0.0
            alloc = node.alloc_cpu
            if alloc > 0:
                free = (alloc - node.score_cpu - cpu) / alloc
                if free > 0.0:
                    total += free
            alloc = node.alloc_memory
            if alloc > 0:
                free = (alloc - node.score_memory - mem) / alloc
                if free > 0.0:
                    total += free
            append(t + weight * (50.0 * total))
        return out
