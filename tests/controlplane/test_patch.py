"""JSON merge patch (RFC 7386), JSON patch (RFC 6902) and Kubernetes strategic merge patch.

Strategic examples follow the Kubernetes docs task "Update API Objects in Place Using kubectl
patch" and the strategic-merge-patch design document."""

import copy

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controlplane.kinds import by_plural
from controlplane.patch import (
    PatchError,
    apply_json_patch,
    apply_merge_patch,
    apply_strategic_merge_patch,
    create_merge_patch,
)

# --- RFC 7386 appendix A test cases ----------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "patch", "result"),
    [
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        (["a", "b"], ["c", "d"], ["c", "d"]),
        ({"a": "b"}, ["c"], ["c"]),
        ({"a": "foo"}, None, None),
        ({"a": "foo"}, "bar", "bar"),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_rfc7386_examples(target, patch, result):
    before = copy.deepcopy(target)
    assert apply_merge_patch(target, patch) == result
    assert target == before  # input untouched


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3),
    max_leaves=12,
)


def _no_nulls(v):
    if isinstance(v, dict):
        return {k: _no_nulls(x) for k, x in v.items() if x is not None}
    return v


@given(st.dictionaries(st.text(max_size=3), _json, max_size=4), st.dictionaries(st.text(max_size=3), _json, max_size=4))
def test_merge_patch_of_diff_reproduces_target(original, modified):
    modified = _no_nulls(modified)
    patch = create_merge_patch(original, modified)
    assert apply_merge_patch(original, patch) == modified


# --- RFC 6902 ----------------------------------------------------------------------------


def test_json_patch_operations():
    doc = {"metadata": {"labels": {"a": "1"}}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]}}
    out = apply_json_patch(doc, [
        {"op": "add", "path": "/metadata/labels/b", "value": "2"},
        {"op": "replace", "path": "/metadata/labels/a", "value": "x"},
        {"op": "add", "path": "/spec/containers/-", "value": {"name": "c"}},
        {"op": "add", "path": "/spec/containers/0", "value": {"name": "z"}},
        {"op": "remove", "path": "/spec/containers/1"},
        {"op": "copy", "from": "/metadata/labels", "path": "/metadata/annotations"},
        {"op": "move", "from": "/metadata/labels/b", "path": "/metadata/labels/c"},
        {"op": "test", "path": "/spec/containers/2/name", "value": "c"},
        {"op": "add", "path": "/metadata/annotations/a~1b", "value": "slash"},
    ])
    assert out == {"metadata": {"labels": {"a": "x", "c": "2"}, "annotations": {"a": "x", "b": "2", "a/b": "slash"}},
                   "spec": {"containers": [{"name": "z"}, {"name": "b"}, {"name": "c"}]}}
    assert doc["metadata"]["labels"] == {"a": "1"}


@pytest.mark.parametrize(
    ("ops", "msg"),
    [
        ([{"op": "test", "path": "/a", "value": 2}], "testing value /a failed"),
        ([{"op": "test", "path": "/a", "value": True}], "testing value /a failed"),  # 1 is not true
        ([{"op": "remove", "path": "/missing"}], "nonexistent"),
        ([{"op": "replace", "path": "/missing", "value": 1}], "missing path"),
        ([{"op": "add", "path": "/l/5", "value": 1}], "out of bounds"),
        ([{"op": "add", "path": "/l/01", "value": 1}], "invalid array index"),
        ([{"op": "add", "path": "a", "value": 1}], "must start with"),
        ([{"op": "frobnicate", "path": "/a"}], "unsupported op"),
        ([{"op": "add", "path": "/b"}], 'missing "value"'),
        ([{"op": "move", "path": "/b"}], 'missing "from"'),
        ([{"op": "move", "from": "/x", "path": "/x/y"}], "own child"),
        ({"op": "add"}, "must be a list"),
        (["add"], "not an object"),
    ],
)
def test_json_patch_errors(ops, msg):
    with pytest.raises(PatchError, match=msg):
        apply_json_patch({"a": 1, "l": [1], "x": {}}, ops)


def test_json_patch_is_all_or_nothing():
    doc = {"a": 1}
    with pytest.raises(PatchError):
        apply_json_patch(doc, [{"op": "replace", "path": "/a", "value": 2}, {"op": "test", "path": "/a", "value": 1}])
    assert doc == {"a": 1}


# --- strategic merge patch ------------------------------------------------------------------

DEPLOY = by_plural("deployments")
PODS = by_plural("pods")


def patch_demo():
    # The Deployment of the Kubernetes docs' kubectl patch task.
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "patch-demo"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "nginx"}},
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                     "template": {"metadata": {"labels": {"app": "nginx"}},
                                  "spec": {"containers": [{"name": "patch-demo-ctr", "image": "nginx"}],
                                           "tolerations": [{"effect": "NoSchedule", "key": "dedicated",
                                                            "value": "test-team"}]}}}}


def test_docs_strategic_adds_container_merge_replaces():
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "patch-demo-ctr-2", "image": "redis"}]}}}}
    smp = apply_strategic_merge_patch(patch_demo(), patch, DEPLOY)
    assert [c["name"] for c in smp["spec"]["template"]["spec"]["containers"]] == ["patch-demo-ctr", "patch-demo-ctr-2"]
    merged = apply_merge_patch(patch_demo(), patch)
    assert [c["name"] for c in merged["spec"]["template"]["spec"]["containers"]] == ["patch-demo-ctr-2"]


def test_docs_tolerations_are_replaced():
    patch = {"spec": {"template": {"spec": {"tolerations": [{"effect": "NoSchedule", "key": "disktype",
                                                             "value": "ssd"}]}}}}
    out = apply_strategic_merge_patch(patch_demo(), patch, DEPLOY)
    assert out["spec"]["template"]["spec"]["tolerations"] == [{"effect": "NoSchedule", "key": "disktype",
                                                                "value": "ssd"}]


def test_docs_retain_keys_strategy():
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}
    out = apply_strategic_merge_patch(patch_demo(), patch, DEPLOY)
    assert out["spec"]["strategy"] == {"type": "Recreate"}
    # without $retainKeys the old rollingUpdate would survive (and validation would reject it)
    plain = apply_strategic_merge_patch(patch_demo(), {"spec": {"strategy": {"type": "Recreate"}}}, DEPLOY)
    assert "rollingUpdate" in plain["spec"]["strategy"]


def test_merge_into_existing_container_by_name():
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "patch-demo-ctr", "image": "nginx:1.25",
                                                            "env": [{"name": "A", "value": "1"}]}]}}}}
    out = apply_strategic_merge_patch(patch_demo(), patch, DEPLOY)
    assert out["spec"]["template"]["spec"]["containers"] == [{"name": "patch-demo-ctr", "image": "nginx:1.25",
                                                              "env": [{"name": "A", "value": "1"}]}]


def pod():
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"app": "web", "tier": "fe"},
                                                            "finalizers": ["a.example.com/x"]},
            "spec": {"containers": [
                {"name": "web", "image": "nginx:1", "ports": [{"containerPort": 80, "protocol": "TCP"},
                                                              {"containerPort": 443, "protocol": "TCP"}],
                 "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                 "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                {"name": "side", "image": "busybox"}],
                "volumes": [{"name": "data", "emptyDir": {}}]},
            "status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}]}}


def test_delete_directive_and_null():
    patch = {"metadata": {"labels": {"tier": None}},
             "spec": {"containers": [{"name": "side", "$patch": "delete"},
                                     {"name": "web", "env": [{"name": "A", "$patch": "delete"}],
                                      "ports": [{"containerPort": 443, "$patch": "delete"}]}]}}
    out = apply_strategic_merge_patch(pod(), patch, PODS)
    assert out["metadata"]["labels"] == {"app": "web"}
    [web] = out["spec"]["containers"]
    assert web["env"] == [{"name": "B", "value": "2"}]
    assert web["ports"] == [{"containerPort": 80, "protocol": "TCP"}]


def test_replace_directive_on_map_and_list():
    out = apply_strategic_merge_patch(pod(), {"metadata": {"labels": {"$patch": "replace", "only": "me"}}}, PODS)
    assert out["metadata"]["labels"] == {"only": "me"}
    patch = {"spec": {"containers": [{"name": "new", "image": "x"}, {"$patch": "replace"}]}}
    out = apply_strategic_merge_patch(pod(), patch, PODS)
    assert out["spec"]["containers"] == [{"name": "new", "image": "x"}]


def test_set_element_order_and_primitive_lists():
    patch = {"$setElementOrder/finalizers": ["b.example.com/y", "a.example.com/x"],
             "finalizers": ["b.example.com/y"]}
    out = apply_strategic_merge_patch(pod(), {"metadata": patch}, PODS)
    assert out["metadata"]["finalizers"] == ["b.example.com/y", "a.example.com/x"]
    out = apply_strategic_merge_patch(out, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a.example.com/x"]}},
                                      PODS)
    assert out["metadata"]["finalizers"] == ["b.example.com/y"]
    patch = {"spec": {"$setElementOrder/containers": [{"name": "side"}, {"name": "web"}],
                      "containers": [{"name": "side", "image": "busybox:2"}]}}
    out = apply_strategic_merge_patch(pod(), patch, PODS)
    assert [(c["name"], c["image"]) for c in out["spec"]["containers"]] == [("side", "busybox:2"), ("web", "nginx:1")]


def test_conditions_merge_by_type_and_status_patch():
    patch = {"status": {"conditions": [{"type": "Ready", "status": "True"}], "phase": "Running"}}
    out = apply_strategic_merge_patch(pod(), patch, PODS)
    assert out["status"]["conditions"] == [{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}]
    assert out["status"]["phase"] == "Running"


def test_service_ports_merge_by_port_and_owner_refs_by_uid():
    svc = {"metadata": {"ownerReferences": [{"uid": "1", "name": "a"}]},
           "spec": {"ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}]}}
    out = apply_strategic_merge_patch(svc, {"metadata": {"ownerReferences": [{"uid": "2", "name": "b"}]},
                                            "spec": {"ports": [{"port": 80, "targetPort": 8080}]}},
                                      by_plural("services"))
    assert out["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": 8080}, {"name": "https", "port": 443}]
    assert [r["uid"] for r in out["metadata"]["ownerReferences"]] == ["1", "2"]


def test_node_addresses_merge_by_type_taints_replace():
    node = {"spec": {"taints": [{"key": "a", "effect": "NoSchedule"}]},
            "status": {"addresses": [{"type": "InternalIP", "address": "127.0.1.1"}, {"type": "Hostname", "address": "n"}]}}
    out = apply_strategic_merge_patch(node, {"spec": {"taints": [{"key": "b", "effect": "NoExecute"}]},
                                             "status": {"addresses": [{"type": "InternalIP", "address": "127.0.1.2"}]}},
                                      by_plural("nodes"))
    assert out["spec"]["taints"] == [{"key": "b", "effect": "NoExecute"}]
    assert out["status"]["addresses"] == [{"type": "InternalIP", "address": "127.0.1.2"},
                                          {"type": "Hostname", "address": "n"}]


def test_strategic_errors():
    with pytest.raises(PatchError, match="does not contain declared merge key: name"):
        apply_strategic_merge_patch(pod(), {"spec": {"containers": [{"image": "x"}]}}, PODS)
    with pytest.raises(PatchError, match="unknown patch type"):
        apply_strategic_merge_patch(pod(), {"metadata": {"$patch": "explode"}}, PODS)
    with pytest.raises(PatchError):
        apply_strategic_merge_patch(pod(), ["not", "a", "map"], PODS)


def test_strategic_without_directives_matches_merge_patch_for_maps():
    target = {"metadata": {"labels": {"a": "1"}, "annotations": {"x": "y"}}, "data": {"k": "v"}}
    patch = {"metadata": {"labels": {"a": None, "b": "2"}}, "data": {"k2": "v2"}}
    assert apply_strategic_merge_patch(target, patch, by_plural("configmaps")) == apply_merge_patch(target, patch)


def test_deep_patch_is_refused_not_recursion_error():
    deep: dict = {}
    cur = deep
    for _ in range(1000):
        cur["a"] = {}
        cur = cur["a"]
    with pytest.raises(PatchError, match="too deep"):
        apply_strategic_merge_patch({}, deep, PODS)
    with pytest.raises(PatchError, match="too deep"):
        apply_merge_patch({}, deep)


_names = st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), unique=True, max_size=5)


@given(_names, _names, st.integers(min_value=0, max_value=9))
def test_containers_merge_by_name_property(existing, patched, version):
    """Merging by key keeps every existing container, appends new ones in patch order, and
    sets exactly the patched fields (strategic merge patch design doc)."""
    target = {"spec": {"containers": [{"name": n, "image": f"{n}:0", "tty": True} for n in existing]}}
    patch = {"spec": {"containers": [{"name": n, "image": f"{n}:{version}"} for n in patched]}}
    out = apply_strategic_merge_patch(target, patch, PODS)
    names = [c["name"] for c in out["spec"]["containers"]]
    assert names == existing + [n for n in patched if n not in existing]
    for c in out["spec"]["containers"]:
        assert c["image"] == (f"{c['name']}:{version}" if c["name"] in patched else f"{c['name']}:0")
        assert c.get("tty") is (True if c["name"] in existing else None)


# --- share=True: the registry's one-decode status path ----------------------------------------


def _rfc7386(target, patch):
    """RFC 7386 section 2's MergePatch pseudo-code, as written there."""
    if isinstance(patch, dict):
        result = dict(target) if isinstance(target, dict) else {}
        for name, value in patch.items():
            if value is None:
                result.pop(name, None)
            else:
                result[name] = _rfc7386(result.get(name), value)
        return result
    return patch


def _ids(value, out=None):
    """id() of every dict and list inside value."""
    out = set() if out is None else out
    if isinstance(value, dict | list):
        out.add(id(value))
        for v in value.values() if isinstance(value, dict) else value:
            _ids(v, out)
    return out


@given(_json, _json)
def test_merge_patch_shared_or_not_gives_the_rfc_result_and_changes_no_input(target, patch):
    before_target, before_patch = copy.deepcopy(target), copy.deepcopy(patch)
    plain = apply_merge_patch(target, patch)
    shared = apply_merge_patch(target, patch, share=True)
    assert plain == shared == _rfc7386(before_target, before_patch)
    assert target == before_target and patch == before_patch
    # the plain result shares nothing with the target; neither result shares with the patch
    assert not _ids(plain) & _ids(target)
    assert not _ids(plain) & _ids(patch) and not _ids(shared) & _ids(patch)


def test_shared_merge_patch_result_shares_only_what_the_patch_leaves_alone():
    pod = {"metadata": {"name": "p", "uid": "u"}, "spec": {"containers": [{"name": "c"}]},
           "status": {"phase": "Pending", "conditions": [{"type": "Ready"}]}}
    out = apply_merge_patch(pod, {"metadata": {"uid": "u"}, "status": {"phase": "Running"}}, share=True)
    assert out["spec"] is pod["spec"]  # untouched: shared
    assert out["status"]["conditions"] is pod["status"]["conditions"]
    assert out["metadata"] is not pod["metadata"] and out["status"] is not pod["status"]
    assert pod["status"]["phase"] == "Pending"


_STRATEGIC_CASES = [
    {"spec": {"containers": [{"name": "b", "image": "y"}, {"name": "c", "image": "z"}]}},
    {"spec": {"containers": [{"name": "a", "$patch": "delete"}]}},
    {"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
              "containers": [{"name": "a", "image": "new"}]}},
    {"spec": {"tolerations": [{"key": "t"}]}, "metadata": {"labels": {"x": None, "y": "2"}}},
    {"metadata": {"finalizers": ["f2"], "$deleteFromPrimitiveList/finalizers": ["f1"]}},
    {"status": {"conditions": [{"type": "Ready", "status": "True"}], "phase": "Running"}},
    {"spec": {"$patch": "replace", "containers": [{"name": "only"}]}},
    {"metadata": {"$patch": "delete"}},
    {"$patch": "replace", "kind": "Pod"},
    {"spec": {"$retainKeys": ["containers"], "containers": [{"name": "a", "image": "i"}]}},
]


@pytest.mark.parametrize("patch", _STRATEGIC_CASES)
def test_strategic_patch_shared_or_not_is_the_same_and_changes_no_input(patch):
    pod = {"metadata": {"name": "p", "labels": {"x": "1"}, "finalizers": ["f1"]},
           "spec": {"containers": [{"name": "a", "image": "i"}, {"name": "b", "image": "j"}],
                    "tolerations": [{"key": "old"}], "nodeName": "n"},
           "status": {"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"},
                                                        {"type": "PodScheduled", "status": "True"}]}}
    before_pod, before_patch = copy.deepcopy(pod), copy.deepcopy(patch)
    pods = by_plural("pods")
    plain = apply_strategic_merge_patch(pod, patch, pods)
    shared = apply_strategic_merge_patch(pod, patch, pods, share=True)
    assert plain == shared
    assert pod == before_pod and patch == before_patch
    assert not _ids(plain) & _ids(pod)
    assert not _ids(plain) & _ids(patch) and not _ids(shared) & _ids(patch)


def test_strategic_patch_of_an_aliased_subtree_changes_only_the_patched_place():
    # An in-process caller's object may hold one dict in two places (shared parts of cached
    # objects): a patch of one place must not show up in the other.
    labels = {"a": "1"}
    obj = {"metadata": {"labels": labels}, "spec": {"selector": {"matchLabels": labels}}}
    for share in (False, True):
        out = apply_strategic_merge_patch(obj, {"metadata": {"labels": {"b": "2"}}}, "Deployment", share=share)
        assert out["metadata"]["labels"] == {"a": "1", "b": "2"}
        assert out["spec"]["selector"]["matchLabels"] == {"a": "1"}
        assert labels == {"a": "1"}
