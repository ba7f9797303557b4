"""Object helpers used by the scheduler, controllers and agent."""

from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from controlplane.objects import (
    controller_of,
    is_owned_by,
    match_node_selector_terms,
    node_allocatable,
    owner_reference,
    pod_is_ready,
    pod_is_terminal,
    pod_requests,
    pod_template_hash,
    set_condition,
    tolerates,
    tolerates_all,
)
from controlplane.selectors import LabelSelector


def _c(name, cpu=None, mem=None, lim_cpu=None, **extra):
    res = {}
    if cpu or mem:
        res["requests"] = {k: v for k, v in (("cpu", cpu), ("memory", mem)) if v}
    if lim_cpu:
        res["limits"] = {"cpu": lim_cpu}
    return {"name": name, "image": "x", "resources": res, **extra}


def test_pod_requests_sum_of_containers():
    pod = {"spec": {"containers": [_c("a", "500m", "128Mi"), _c("b", "0.25", "1G")]}}
    assert pod_requests(pod) == {"cpu": Fraction(3, 4), "memory": 128 * 2**20 + 10**9, "pods": 1}


def test_pod_requests_init_container_peak_wins():
    # Kubernetes: effective request = max(sum(app containers), max(init containers)).
    pod = {"spec": {"initContainers": [_c("init", "2", "64Mi")],
                    "containers": [_c("a", "500m", "128Mi"), _c("b", "500m", "128Mi")]}}
    assert pod_requests(pod) == {"cpu": 2, "memory": 256 * 2**20, "pods": 1}


def test_pod_requests_sidecar_init_adds():
    pod = {"spec": {"initContainers": [_c("side", "1", restartPolicy="Always"), _c("init", "1")],
                    "containers": [_c("a", "1")]}}
    # sidecar (1) runs beside app (1) -> 2; the plain init container runs beside the sidecar -> 2
    assert pod_requests(pod)["cpu"] == 2


def test_pod_requests_defaults_requests_from_limits_and_zero():
    assert pod_requests({"spec": {"containers": [_c("a", lim_cpu="2")]}})["cpu"] == 2
    assert pod_requests({"spec": {"containers": [{"name": "a"}]}}) == {"cpu": 0, "memory": 0, "pods": 1}


def test_node_allocatable():
    node = {"status": {"capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                       "allocatable": {"cpu": "3500m", "memory": "7Gi", "pods": "100"}}}
    assert node_allocatable(node) == {"cpu": Fraction(7, 2), "memory": 7 * 2**30, "pods": 100}
    assert node_allocatable({"status": {"capacity": {"cpu": "2"}}})["cpu"] == 2
    assert node_allocatable({})["pods"] == 110


def test_ready_and_terminal():
    pod = {"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}
    assert pod_is_ready(pod) and not pod_is_terminal(pod)
    assert not pod_is_ready({"status": {"conditions": [{"type": "Ready", "status": "False"}]}})
    assert not pod_is_ready({})
    assert pod_is_terminal({"status": {"phase": "Succeeded"}})
    assert pod_is_terminal({"status": {"phase": "Failed"}})


def test_owner_references():
    rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web-abc", "uid": "u1"}}
    ref = owner_reference(rs)
    assert ref == {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-abc", "uid": "u1",
                   "controller": True, "blockOwnerDeletion": True}
    pod = {"metadata": {"ownerReferences": [ref]}}
    assert is_owned_by(pod, rs)
    assert controller_of(pod) == ref
    assert not is_owned_by(pod, {"metadata": {"uid": "other"}})
    assert not is_owned_by({"metadata": {}}, rs)


def test_template_hash_stable_and_label_safe():
    t1 = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}}
    t2 = {"spec": {"containers": [{"image": "nginx:1", "name": "c"}]}, "metadata": {"labels": {"app": "web"}}}
    t3 = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}
    h = pod_template_hash(t1)
    assert h == pod_template_hash(t2)  # key order does not matter
    assert h != pod_template_hash(t3)
    assert h != pod_template_hash(t1, collision_count=1)
    # stamping the hash label onto the template does not change the hash
    t1_stamped = {**t1, "metadata": {"labels": {"app": "web", "pod-template-hash": h}}}
    assert pod_template_hash(t1_stamped) == h
    assert LabelSelector.parse(f"pod-template-hash={h}").matches({"pod-template-hash": h})


@given(st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=4))
def test_template_hash_is_valid_label_value(labels):
    from controlplane._kinds_syntax import label_value

    h = pod_template_hash({"metadata": {"labels": labels}, "spec": {}})
    assert label_value(h) == [] and len(h) == 10


def test_set_condition_transition_time_only_on_change():
    conds = set_condition([], "Ready", "False", "Starting", "", now="t1")
    assert conds == [{"type": "Ready", "status": "False", "lastTransitionTime": "t1", "reason": "Starting",
                      "message": ""}]
    same = set_condition(conds, "Ready", "False", "StillStarting", "m", now="t2")
    assert same[0]["lastTransitionTime"] == "t1" and same[0]["reason"] == "StillStarting"
    flipped = set_condition(same, "Ready", "True", "Up", "", now="t3")
    assert flipped[0]["lastTransitionTime"] == "t3"
    assert conds[0]["status"] == "False"  # the input list is not mutated
    both = set_condition(flipped, "PodScheduled", "True", now="t4")
    assert [c["type"] for c in both] == ["Ready", "PodScheduled"]


def test_tolerations():
    taint = {"key": "dedicated", "value": "edge", "effect": "NoSchedule"}
    assert tolerates({"key": "dedicated", "operator": "Equal", "value": "edge", "effect": "NoSchedule"}, taint)
    assert tolerates({"key": "dedicated", "value": "edge"}, taint)  # empty effect matches all
    assert tolerates({"key": "dedicated", "operator": "Exists"}, taint)
    assert tolerates({"operator": "Exists"}, taint)  # empty key + Exists tolerates everything
    assert not tolerates({"key": "dedicated", "value": "other"}, taint)
    assert not tolerates({"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}, taint)
    assert not tolerates({"key": "other", "operator": "Exists"}, taint)
    assert tolerates([{"key": "x", "operator": "Exists"}, {"key": "dedicated", "operator": "Exists"}], taint)
    assert tolerates_all([], [{"key": "a", "effect": "PreferNoSchedule"}]) is None
    assert tolerates_all([], [taint]) == taint


def test_node_selector_terms():
    node = {"metadata": {"name": "edge-1", "labels": {"zone": "a", "cores": "8"}}}

    def term(*exprs, fields=()):
        return {"matchExpressions": list(exprs), "matchFields": list(fields)}

    assert match_node_selector_terms(node, [term({"key": "zone", "operator": "In", "values": ["a", "b"]})])
    assert not match_node_selector_terms(node, [term({"key": "zone", "operator": "NotIn", "values": ["a"]})])
    assert match_node_selector_terms(node, [term({"key": "gpu", "operator": "DoesNotExist"})])
    assert match_node_selector_terms(node, [term({"key": "cores", "operator": "Gt", "values": ["4"]})])
    assert not match_node_selector_terms(node, [term({"key": "cores", "operator": "Lt", "values": ["4"]})])
    assert match_node_selector_terms(node, [term(fields=[{"key": "metadata.name", "operator": "In",
                                                          "values": ["edge-1"]}])])
    # terms are ORed; an empty term matches nothing
    assert match_node_selector_terms(node, [term({"key": "zone", "operator": "In", "values": ["z"]}),
                                            term({"key": "zone", "operator": "Exists"})])
    assert not match_node_selector_terms(node, [term()])
    assert not match_node_selector_terms(node, [])
