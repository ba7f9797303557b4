"""Strict field validation's walk (openapi.unknown_fields) against a plain reference walk: the
API server walks every agent PATCH body with it, so it keeps positions as a tuple chain and
spells a path only for an unknown field; the answers must be the reference's, in its order."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane import _openapi_schema as s
from controlplane.openapi import unknown_fields


def _reference(value: Any, t: str, path: str, out: list[str]) -> None:
    """The walk as first written: a path string per field."""
    item = s.list_item(t)
    if item is not None:
        if isinstance(value, list):
            for i, v in enumerate(value):
                _reference(v, item, f"{path}[{i}]", out)
        return
    mv = s.map_value(t)
    if mv is not None:
        if isinstance(value, Mapping) and mv in s.DEFS:
            for k, v in value.items():
                _reference(v, mv, f"{path}.{k}" if path else str(k), out)
        return
    if t not in s.DEFS or not isinstance(value, Mapping):
        return
    fields = s.fields_of(t)
    for k, v in value.items():
        sub = f"{path}.{k}" if path else str(k)
        f = fields.get(k)
        if f is None:
            out.append(sub)
            continue
        _reference(v, f.type, sub, out)


_POD = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "p", "labels": {"a": "b"}, "annotations": {"x": "y"},
                 "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "r", "uid": "u"}]},
    "spec": {"nodeName": "n", "containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}],
                                              "resources": {"requests": {"cpu": "10m"}}}],
             "tolerations": [{"key": "k"}]},
    "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
               "containerStatuses": [{"name": "c", "state": {"running": {"startedAt": "t"}}}],
               "hostIPs": [{"ip": "127.0.0.1"}]},
}

_names = st.sampled_from(["bogus", "x", "image", "name", "0", "spec", "status"])


def _with_extras(draw: Any, value: Any, depth: int = 0) -> Any:
    """value with unknown (or known) keys added at random places, and some values swapped
    for lists, maps or scalars of the wrong shape."""
    if isinstance(value, dict):
        out = {k: _with_extras(draw, v, depth + 1) for k, v in value.items()}
        for _ in range(draw(st.integers(0, 2))):
            out[draw(_names)] = draw(st.sampled_from([1, "s", None, [1, {"q": 1}], {"z": [{"y": 2}]}]))
        return out
    if isinstance(value, list):
        return [_with_extras(draw, v, depth + 1) for v in value]
    return value


@settings(max_examples=300)
@given(st.data(), st.sampled_from(["Pod", "Deployment", "Node", "Lease", "Service"]))
def test_walk_answers_as_the_reference(data: st.DataObject, kind: str) -> None:
    obj = _with_extras(data.draw, _POD)
    expected: list[str] = []
    _reference(obj, kind, "", expected)
    assert unknown_fields(obj, kind) == expected


def test_paths_of_unknown_fields_in_lists_and_maps() -> None:
    obj = {"spec": {"containers": [{"name": "c"}, {"name": "d", "imagex": "i"}],
                    "nodeSelector": {"any": "thing"}, "bogus": {"deep": 1}},
           "status": {"containerStatuses": [{"state": {"running": {"startedAtx": 1}}}]}}
    assert unknown_fields(obj, "Pod") == ["spec.containers[1].imagex", "spec.bogus",
                                          "status.containerStatuses[0].state.running.startedAtx"]
