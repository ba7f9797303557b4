"""controlplane._sharing: cached objects share equal parts, keep their values, and the table
does not fill with one-off parts."""

from __future__ import annotations

import copy

from controlplane import _sharing
from controlplane._sharing import share


def _pod(name: str, uid: str, node: str, started: str) -> dict:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": uid,
                     "labels": {"app": "web", "pod-template-hash": "abc"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-abc",
                                          "uid": "rs-uid", "controller": True}]},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "nginx:1", "ports": [{"containerPort": 80}]}],
                 "securityContext": {}},
        "status": {"phase": "Running", "podIP": f"10.0.0.{len(name)}",
                   "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": started}],
                   "containerStatuses": [{"name": "c", "containerID": f"hollow://{uid}",
                                          "state": {"running": {"startedAt": started}}}]},
    }


def test_equal_parts_are_shared_and_values_kept():
    a, b = _pod("a", "u1", "n1", "T1"), _pod("b", "u2", "n2", "T1")
    want_a, want_b = copy.deepcopy(a), copy.deepcopy(b)
    sa, sb = share(a), share(b)
    assert sa == want_a and sb == want_b
    assert sa["metadata"]["labels"] is sb["metadata"]["labels"]
    assert sa["metadata"]["ownerReferences"] is sb["metadata"]["ownerReferences"]
    assert sa["spec"]["containers"] is sb["spec"]["containers"]
    assert sa["status"]["conditions"] is sb["status"]["conditions"]
    # the sections stay each object's own; parts holding per-object values are not shared
    assert sa["metadata"] is not sb["metadata"] and sa["status"] is not sb["status"]
    assert sa["status"]["containerStatuses"] is not sb["status"]["containerStatuses"]
    # ... but their equal children are
    assert sa["status"]["containerStatuses"][0]["state"] is sb["status"]["containerStatuses"][0]["state"]


def test_types_that_print_alike_stay_apart():
    a = share({"kind": "X", "metadata": {"name": "a"}, "spec": {"v": [1], "w": {"x": True}}})
    b = share({"kind": "X", "metadata": {"name": "b"}, "spec": {"v": [1.0], "w": {"x": 1}}})
    assert type(b["spec"]["v"][0]) is float and b["spec"]["w"]["x"] is not True
    assert a["spec"]["w"]["x"] is True
    huge = share({"kind": "X", "metadata": {"name": "c"}, "spec": {"n": [2**70]}})
    assert huge["spec"]["n"] == [2**70]


def test_the_table_is_bounded(monkeypatch):
    monkeypatch.setattr(_sharing, "TABLE_LIMIT", 100)
    monkeypatch.setattr(_sharing, "_table", {})
    for i in range(1000):
        share(_pod(f"p{i}", f"u{i}", f"n{i}", f"T{i}"))
    assert len(_sharing._table) <= 100


def test_an_update_takes_unchanged_parts_from_the_version_it_replaces():
    before = share(_pod("a", "u1", "n1", "T1"))
    update = _pod("a", "u1", "n1", "T2")
    update["spec"]["priority"] = 0
    update["metadata"]["labels"]["tier"] = "1"
    want = copy.deepcopy(update)
    after = share(update, before)
    assert after == want
    # the spec's containers did not change: the very same part; changed parts are not taken
    assert after["spec"]["containers"] is before["spec"]["containers"]
    assert after["metadata"]["labels"] is not before["metadata"]["labels"]
    assert after["status"]["conditions"][0]["lastTransitionTime"] == "T2"
    # == holds between True, 1 and 1.0, JSON does not: such a part is not taken over
    flag = share({"kind": "X", "metadata": {"name": "f"}, "spec": {"w": {"x": True}, "v": [1]}})
    again = share({"kind": "X", "metadata": {"name": "f"}, "spec": {"w": {"x": 1}, "v": [1.0]}}, flag)
    assert again["spec"]["w"]["x"] is not True and type(again["spec"]["v"][0]) is float
