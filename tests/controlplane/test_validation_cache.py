"""A pod spec's verdict is reused only for a spec of exactly the same JSON value and types."""

import copy
import uuid

from controlplane import _validation
from controlplane._validation import validate_pod_spec
from controlplane.kinds import by_plural


def _spec(**extra):
    spec = {"containers": [{"name": "web", "image": "nginx:1.27",
                            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}],
            "activeDeadlineSeconds": None, **extra}
    by_plural("pods").default({"spec": spec})
    return spec


def _fields(errs):
    return sorted(e.field for e in errs)


def test_equal_valid_spec_is_not_walked_again(monkeypatch):
    _validation._valid_specs.clear()
    walked = []
    real = _validation._check_pod_spec
    monkeypatch.setattr(_validation, "_check_pod_spec", lambda *a: walked.append(a) or real(*a))
    spec = _spec()
    assert validate_pod_spec(spec) == []
    assert validate_pod_spec(copy.deepcopy(spec)) == []  # another object, the same JSON
    assert len(walked) == 1
    # another path (a template's) or another spec: checked on its own
    assert validate_pod_spec(copy.deepcopy(spec), "spec.template.spec", template=True) == []
    assert validate_pod_spec(_spec(hostname="web-0")) == []
    assert len(walked) == 3


def test_invalid_specs_are_checked_every_time(monkeypatch):
    _validation._valid_specs.clear()
    walked = []
    real = _validation._check_pod_spec
    monkeypatch.setattr(_validation, "_check_pod_spec", lambda *a: walked.append(a) or real(*a))
    bad = _spec(restartPolicy="Sometimes")
    for _ in range(2):
        assert _fields(validate_pod_spec(copy.deepcopy(bad))) == ["spec.restartPolicy"]
    assert len(walked) == 2


def test_same_json_other_types_are_validated_on_their_own():
    _validation._valid_specs.clear()
    spec = _spec()
    assert validate_pod_spec(spec) == []
    # each of these writes the same JSON text as the valid spec, but is not that value
    as_tuple = copy.deepcopy(spec)
    as_tuple["containers"] = tuple(as_tuple["containers"])
    assert set(_fields(validate_pod_spec(as_tuple))) == {"spec.containers"}
    nan = copy.deepcopy(spec)
    nan["activeDeadlineSeconds"] = float("nan")  # orjson writes NaN as null
    assert _fields(validate_pod_spec(nan)) == ["spec.activeDeadlineSeconds"]

    class Name(str):
        pass

    sub = copy.deepcopy(spec)
    sub["containers"][0]["name"] = Name("web")
    assert _validation._exact_json(sub) is None
    with_uuid = _spec(hostname="x")
    with_uuid["hostname"] = uuid.UUID(int=0)
    assert _validation._exact_json(with_uuid) is None
    assert validate_pod_spec(with_uuid) != []


def test_cycle_is_no_key():
    spec = _spec()
    spec["containers"][0]["resources"]["self"] = spec
    assert _validation._exact_json(spec) is None


def test_full_cache_starts_afresh(monkeypatch):
    _validation._valid_specs.clear()
    monkeypatch.setattr(_validation, "VALID_SPEC_CACHE", 3)
    for i in range(5):
        assert validate_pod_spec(_spec(hostname=f"h{i}")) == []
        assert len(_validation._valid_specs) <= 3
