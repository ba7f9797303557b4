"""Safety properties of the scheduler, checked against an independent from-scratch reference.

"Never bind a pod to a node that cannot hold it" (Nomad's scheduler tests state the same), and
"a pod reported unschedulable really fits nowhere" (on clusters small enough to search fully).
"""

from __future__ import annotations

from _sched_factories import make_node, make_pod
from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.scheduler import PodInfo, Scheduler, Snapshot

TAINT = {"key": "dedicated", "value": "db", "effect": "NoSchedule"}
TOLERATION = {"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}

nodes_st = st.lists(
    st.fixed_dictionaries({
        "cpu": st.integers(0, 4000),
        "mem": st.integers(0, 4096),
        "pods": st.integers(0, 6),
        "zone": st.sampled_from(["a", "b"]),
        "tainted": st.booleans(),
        "ready": st.integers(0, 9).map(lambda x: x > 0),
        "cordoned": st.integers(0, 9).map(lambda x: x == 0),
    }),
    min_size=1, max_size=8,
)
pods_st = st.lists(
    st.fixed_dictionaries({
        "cpu": st.integers(0, 2000),
        "mem": st.integers(0, 2048),
        "port": st.sampled_from([None, None, 8080, 9090]),
        "zone": st.sampled_from([None, None, "a", "b"]),
        "tolerates": st.booleans(),
    }),
    min_size=1, max_size=25,
)


def build(nodes):
    snap = Snapshot()
    for i, n in enumerate(nodes):
        snap.upsert_node(make_node(
            f"n{i}", cpu=f"{n['cpu']}m", memory=f"{n['mem']}Mi", pods=str(n["pods"]), labels={"zone": n["zone"]},
            taints=[TAINT] if n["tainted"] else [], ready=n["ready"], unschedulable=n["cordoned"],
        ))
    return snap


def pod_dict(i, p):
    return make_pod(
        f"p{i}", cpu=f"{p['cpu']}m" if p["cpu"] else None, memory=f"{p['mem']}Mi" if p["mem"] else None,
        host_port=p["port"], node_selector={"zone": p["zone"]} if p["zone"] else None,
        tolerations=[TOLERATION] if p["tolerates"] else None,
    )


def fits(node: dict, placed: list[dict], pod: dict) -> bool:
    """Reference check written from the spec, independent of the plugins' bookkeeping."""
    if not node["ready"] or node["cordoned"]:
        return False
    if node["tainted"] and not pod["tolerates"]:
        return False
    if pod["zone"] and pod["zone"] != node["zone"]:
        return False
    if len(placed) + 1 > node["pods"]:
        return False
    if pod["cpu"] and sum(p["cpu"] for p in placed) + pod["cpu"] > node["cpu"]:
        return False
    if pod["mem"] and sum(p["mem"] for p in placed) + pod["mem"] > node["mem"]:
        return False
    return not (pod["port"] and any(p["port"] == pod["port"] for p in placed))


@settings(max_examples=150, deadline=None)
@given(nodes=nodes_st, pods=pods_st, seed=st.integers(0, 1000))
def test_property_never_binds_where_the_pod_does_not_fit(nodes, pods, seed):
    snap = build(nodes)
    sched = Scheduler(seed=seed)
    placed: dict[int, list[dict]] = {i: [] for i in range(len(nodes))}
    for i, p in enumerate(pods):
        info = PodInfo.from_pod(pod_dict(i, p))
        result = sched.schedule(info, snap)
        if result.node is None:
            # Small clusters are searched fully: unschedulable means no node fits.
            assert not any(fits(nodes[j], placed[j], p) for j in range(len(nodes)))
            assert sum(result.fit_error.reasons.values()) >= len(nodes)
            continue
        j = int(result.node[1:])
        assert fits(nodes[j], placed[j], p), (result.node, p, placed[j])
        placed[j].append(p)
        sched.assume(snap, info, result.node)
