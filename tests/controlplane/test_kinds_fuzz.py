"""Bad input gets field errors, never an exception: defaulting, validation, unknown-field
detection, tables and patches over arbitrary JSON grafted into otherwise valid objects."""

import copy

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controlplane.kinds import RESOURCES
from controlplane.patch import (
    PatchError,
    apply_json_patch,
    apply_merge_patch,
    apply_strategic_merge_patch,
)
from controlplane.tables import table_for

_json = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**40, max_value=2**40) | st.floats(allow_nan=False)
    | st.text(max_size=6),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=10,
)

_POD_SPEC = {"containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 80}],
                             "resources": {"requests": {"cpu": "1"}}, "livenessProbe": {"httpGet": {"port": 80}},
                             "env": [{"name": "A", "value": "1"}], "volumeMounts": [{"name": "v", "mountPath": "/v"}]}],
             "volumes": [{"name": "v", "emptyDir": {}}], "tolerations": [{"operator": "Exists"}],
             "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                 "nodeSelectorTerms": [{"matchExpressions": [{"key": "a", "operator": "In", "values": ["b"]}]}]}}}}
_TEMPLATE = {"metadata": {"labels": {"app": "a"}}, "spec": _POD_SPEC}
SEEDS = {
    "pods": {"spec": _POD_SPEC, "status": {"phase": "Running", "containerStatuses": [{"name": "c", "state": {}}]}},
    "deployments": {"spec": {"selector": {"matchLabels": {"app": "a"}}, "template": _TEMPLATE,
                             "strategy": {"rollingUpdate": {"maxSurge": 1}}}},
    "replicasets": {"spec": {"selector": {"matchLabels": {"app": "a"}}, "template": _TEMPLATE}},
    "services": {"spec": {"ports": [{"port": 80, "name": "a"}], "selector": {"app": "a"}}},
    "endpoints": {"subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"port": 80}]}]},
    "nodes": {"spec": {"taints": [{"key": "a", "effect": "NoSchedule"}]},
              "status": {"capacity": {"cpu": "1"}, "conditions": [{"type": "Ready", "status": "True"}]}},
    "namespaces": {"spec": {"finalizers": ["kubernetes"]}},
    "configmaps": {"data": {"a": "b"}},
    "events": {"involvedObject": {"kind": "Pod", "name": "x"}, "series": {"count": 2}},
    "leases": {"spec": {"holderIdentity": "a", "leaseDurationSeconds": 10}},
}


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


def _graft(obj, path, value):
    if not path:
        return value
    cur = obj
    for p in path[:-1]:
        cur = cur[p]
    cur[path[-1]] = value
    return obj


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(RESOURCES), st.data(), _json)
def test_garbage_anywhere_never_raises(rtype, data, garbage):
    obj = {"apiVersion": rtype.api_version, "kind": rtype.kind,
           "metadata": {"name": "x", "namespace": "default", "labels": {"a": "b"}}, **copy.deepcopy(SEEDS[rtype.plural])}
    paths = list(_paths(obj))[1:]
    path = data.draw(st.sampled_from(paths))
    obj = _graft(obj, path, garbage)
    old = copy.deepcopy(obj)
    rtype.default(obj)
    assert isinstance(rtype.validate(obj), list)
    assert isinstance(rtype.validate(obj, old), list)
    assert isinstance(rtype.unknown_fields(obj), list)
    table = table_for(rtype, [obj, old])
    assert all(len(r["cells"]) == len(table["columnDefinitions"]) for r in table["rows"])
    for apply in (lambda: apply_strategic_merge_patch(old, {"spec": garbage, "status": garbage}, rtype),
                  lambda: apply_strategic_merge_patch(old, garbage, rtype),
                  lambda: apply_merge_patch(old, garbage),
                  lambda: apply_json_patch(old, garbage)):
        try:
            apply()
        except PatchError:
            pass
