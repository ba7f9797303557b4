"""The scheduling pipeline: feasibility filters, then ranking, assembled in one place."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

from ._plugins import (
    FilterPlugin,
    InterPodAffinity,
    InterPodAffinityScore,
    LeastAllocated,
    NodeAffinity,
    NodeAffinityScore,
    NodePorts,
    NodeReady,
    NodeResourcesFit,
    NodeUnschedulable,
    ScorePlugin,
    SelectorSpread,
    TaintToleration,
)
from ._snapshot import NodeInfo, PodInfo, Snapshot

# Filters whose verdict on a node the framework can tell from a few fields at once (see
# Scheduler.schedule): cordon, readiness, room, host ports, taints.
_BASIC_FILTERS = (NodeUnschedulable, NodeReady, NodeResourcesFit, NodePorts, TaintToleration)
# Below this many nodes every node is examined (kube-scheduler's minFeasibleNodesToFind is 100;
# a Python filter pass costs ~20x a Go one, so we stop earlier on big clusters — see
# ``feasible_nodes_to_find``).
MIN_FEASIBLE_NODES_TO_FIND = 50
# Share of the nodes to find feasible on big clusters, as kube-scheduler's
# percentageOfNodesToScore; 5 % is its floor, and the start node rotates from pod to pod, so over
# many pods every node is considered.
DEFAULT_PERCENTAGE_OF_NODES_TO_SCORE = 5


@dataclass(slots=True)
class FitError:
    """No node can hold the pod; ``reasons`` counts nodes per rejection reason."""

    num_nodes: int
    reasons: Counter = field(default_factory=Counter)

    def message(self) -> str:
        """kube-scheduler's FitError text: reasons as "<count> <reason>", sorted as strings."""
        msg = f"0/{self.num_nodes} nodes are available"
        parts = sorted(f"{count} {reason}" for reason, count in self.reasons.items())
        if parts:
            return f"{msg}: {', '.join(parts)}."
        return msg + "."


@dataclass(slots=True)
class ScheduleResult:
    node: str | None
    fit_error: FitError | None = None
    # Number of nodes examined (feasible or not) for this pod.
    evaluated: int = 0


class Scheduler:
    """Chooses a node for one pod against a :class:`Snapshot`; pure, no I/O.

    ``assume`` records the choice in the snapshot right away, so the next pod in the same batch
    already sees the node's reduced capacity, before the binding is committed.
    """

    def __init__(
        self,
        *,
        percentage_of_nodes_to_score: int = DEFAULT_PERCENTAGE_OF_NODES_TO_SCORE,
        seed: int | None = None,
    ) -> None:
        # Filters run cheapest first, so most infeasible nodes are rejected after a bool or an int
        # comparison: the two single-flag checks, then integer arithmetic on resources, then the
        # host-port set (empty for most pods), the taint list (usually empty), label matching,
        # and last the pod affinity check, whose per-node part is cheap but whose per-pod
        # preparation walks the bound pods (and is skipped when no term is involved).
        self.filters: list[FilterPlugin] = [
            NodeUnschedulable(),
            NodeReady(),
            NodeResourcesFit(),
            NodePorts(),
            TaintToleration(),
            NodeAffinity(),
            InterPodAffinity(),
        ]
        # Scores with kube-scheduler's default weights: user preferences (node affinity, pod
        # affinity) and spreading count twice as much as the resource balance.
        self.scores: list[ScorePlugin] = [
            NodeAffinityScore(),
            InterPodAffinityScore(),
            SelectorSpread(),
            LeastAllocated(),
        ]
        self.percentage = percentage_of_nodes_to_score
        self._next_start = 0
        self._rng = random.Random(seed)

    def feasible_nodes_to_find(self, num_nodes: int) -> int:
        if num_nodes <= MIN_FEASIBLE_NODES_TO_FIND or self.percentage >= 100:
            return num_nodes
        return max(MIN_FEASIBLE_NODES_TO_FIND, num_nodes * self.percentage // 100)

    def schedule(self, pod: PodInfo, snap: Snapshot) -> ScheduleResult:
        order = snap.node_order
        n = len(order)
        if n == 0:
            return ScheduleResult(None, FitError(0))
        filter_states = []
        for plugin in self.filters:
            state = plugin.prepare(pod, snap)
            if state is not None:
                filter_states.append((plugin, state))
        want = self.feasible_nodes_to_find(n)
        feasible: list[NodeInfo] = []
        reasons: Counter = Counter()
        ordered = snap.ordered_nodes()
        start = self._next_start % n
        # The checks of the basic filters inlined: a node that passes them passes every basic
        # filter present, and only the others (node affinity, pod affinity) run as calls; a
        # node that fails them goes through every filter, which names the reasons. (Five calls
        # per node were most of a scheduling pass at 1,000 nodes.)
        every = [(plugin.filter, state) for plugin, state in filter_states]
        # A plain nodeSelector (no affinity terms) is checked inline too.
        selector = pod.node_selector.items() if pod.required_node_terms is None else None
        rest = [(plugin.filter, state) for plugin, state in filter_states
                if not isinstance(plugin, _BASIC_FILTERS) and not (selector is not None and isinstance(plugin, NodeAffinity))]
        cpu, memory, ports = pod.cpu, pod.memory, bool(pod.host_ports)
        # The loop runs for ~50 nodes per pod (feasible_nodes_to_find) on every pod: it keeps
        # to local names, and a node that passes the inlined checks with no other filter left
        # is taken without entering the filter loop.
        evaluated = n
        for i in range(n):
            info = ordered[(start + i) % n]
            checks = every
            if (
                info.ready and not info.unschedulable and not info.taints
                and len(info.pods) < info.alloc_pods
                and info.req_cpu + cpu <= info.alloc_cpu and info.req_memory + memory <= info.alloc_memory
                and not (ports and info.ports)
            ):
                checks = rest
                if selector:
                    labels = info.labels
                    for k, v in selector:
                        if labels.get(k) != v:
                            checks = every
                            break
            if checks:
                failed = False
                for check, state in checks:
                    why = check(pod, state, info)
                    if why:
                        for r in why:
                            reasons[r] += 1
                        failed = True
                        break
                if failed:
                    continue
            feasible.append(info)
            want -= 1
            if not want:
                evaluated = i + 1
                break
        self._next_start = start + evaluated
        if not feasible:
            return ScheduleResult(None, FitError(n, reasons), evaluated)
        if len(feasible) == 1:
            return ScheduleResult(feasible[0].name, None, evaluated)
        return ScheduleResult(self._pick(pod, snap, feasible), None, evaluated)

    def _pick(self, pod: PodInfo, snap: Snapshot, feasible: list[NodeInfo]) -> str:
        totals = [0.0] * len(feasible)
        for plugin in self.scores:
            state = plugin.prepare(pod, snap)
            if state is None:
                continue
            add_weighted = getattr(plugin, "add_weighted", None)
            if add_weighted is not None:
                # score, normalize and add in one pass over the nodes (the default plugins)
                totals = add_weighted(pod, state, feasible, totals)
                continue
            score_all = getattr(plugin, "score_all", None)
            if score_all is not None:
                raw = score_all(pod, state, feasible)
            else:
                raw = [plugin.score(pod, state, info) for info in feasible]
            weight = plugin.weight
            # (the same additions in the same order as a loop over the nodes, in one pass)
            totals = [t + weight * s for t, s in zip(totals, plugin.normalize(raw), strict=True)]
        # Ties go to a random node among the best (kube-scheduler does the same), so equal nodes
        # share the load instead of the first in the list taking everything.
        floor = max(totals) - 1e-9
        top = [i for i, t in enumerate(totals) if t >= floor]
        return feasible[self._rng.choice(top)].name

    @staticmethod
    def assume(snap: Snapshot, pod: PodInfo, node: str) -> None:
        snap.add_pod(pod, node)

    @staticmethod
    def forget(snap: Snapshot, pod: PodInfo) -> None:
        snap.remove_pod(pod.key)
