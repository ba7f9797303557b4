"""Label and field selectors (apimachinery labels.Parse / fields.ParseSelector semantics)."""

import pytest

from controlplane.kinds import by_plural
from controlplane.selectors import FieldSelector, LabelSelector, SelectorError

LABELS = {"app": "nginx", "tier": "frontend", "env": "prod", "size": "10"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", True),
        ("app=nginx", True),
        ("app==nginx", True),
        ("app!=nginx", False),
        ("app=redis", False),
        ("app", True),
        ("!app", False),
        ("!missing", True),
        ("missing!=x", True),
        ("app in (nginx, redis)", True),
        ("app in (redis)", False),
        ("app notin (nginx)", False),
        ("missing notin (nginx)", True),
        ("app=nginx,tier=frontend", True),
        ("app=nginx, tier=backend", False),
        ("size>5", True),
        ("size<5", False),
        ("env in (prod,),tier", True),
        ("  app = nginx  ", True),
    ],
)
def test_label_selector_string(text, expected):
    assert LabelSelector.parse(text).matches(LABELS) is expected


@pytest.mark.parametrize("text", ["app=", "app = "])
def test_empty_value_matches_empty_label(text):
    sel = LabelSelector.parse(text)
    assert sel.matches({"app": ""})
    assert not sel.matches({"app": "x"})
    assert not sel.matches({})


@pytest.mark.parametrize(
    "text", ["app in nginx", "app in (nginx", "=x", "app=a=b", "in (a)", "app notin ()", "a b",
             "app=bad value!", "Bad_Key-/x=1", "size>abc", "a,,b", "-bad-=x"]
)
def test_label_selector_syntax_errors(text):
    with pytest.raises(SelectorError):
        LabelSelector.parse(text)


def test_label_selector_str_round_trips():
    sel = LabelSelector.parse("tier in (b,a),app=nginx,!gone,env!=dev,has")
    again = LabelSelector.parse(str(sel))
    assert again == sel
    assert str(sel) == "app=nginx,env!=dev,!gone,has,tier in (a,b)"


def test_api_form():
    sel = LabelSelector.from_api({
        "matchLabels": {"app": "nginx"},
        "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["frontend", "web"]},
            {"key": "canary", "operator": "DoesNotExist"},
        ],
    })
    assert sel.matches(LABELS)
    assert not sel.matches({**LABELS, "canary": "1"})
    assert not sel.matches({"app": "nginx"})
    assert str(sel) == "app=nginx,!canary,tier in (frontend,web)"


def test_api_form_nil_and_empty():
    assert not LabelSelector.from_api(None).matches(LABELS)
    assert LabelSelector.from_api({}).matches(LABELS)
    assert LabelSelector.from_api({}).empty


@pytest.mark.parametrize(
    "sel",
    [
        {"matchExpressions": [{"key": "a", "operator": "In"}]},
        {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
        {"matchExpressions": [{"key": "a", "operator": "Foo", "values": ["x"]}]},
        {"matchLabels": {"a": "not valid!"}},
    ],
)
def test_api_form_errors(sel):
    with pytest.raises(SelectorError):
        LabelSelector.from_api(sel)


POD = {
    "metadata": {"name": "web-1", "namespace": "default"},
    "spec": {"nodeName": "edge-1", "hostNetwork": False},
    "status": {"phase": "Running"},
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", True),
        ("spec.nodeName=edge-1", True),
        ("spec.nodeName==edge-1", True),
        ("spec.nodeName!=edge-1", False),
        ("spec.nodeName=", False),
        ("status.phase=Running,metadata.namespace=default", True),
        ("status.phase!=Running", False),
        ("metadata.name=web-2", False),
        ("spec.hostNetwork=false", True),
    ],
)
def test_field_selector(text, expected):
    assert FieldSelector.parse(text, by_plural("pods")).matches(POD) is expected


def test_unscheduled_pods_have_empty_node_name():
    assert FieldSelector.parse("spec.nodeName=", "pods").matches({"metadata": {}, "spec": {}})


def test_field_selector_unsupported_field():
    with pytest.raises(SelectorError, match="field label not supported: spec.foo"):
        FieldSelector.parse("spec.foo=bar", by_plural("pods"))
    with pytest.raises(SelectorError, match="field label not supported: spec.nodeName"):
        FieldSelector.parse("spec.nodeName=x", by_plural("configmaps"))


def test_field_selector_escapes_and_exact():
    sel = FieldSelector.parse(r"metadata.name=a\,b", "pods")
    assert sel.matches({"metadata": {"name": "a,b"}})
    assert sel.exact("metadata.name") == "a,b"
    assert sel.exact("spec.nodeName") is None
    with pytest.raises(SelectorError):
        FieldSelector.parse("metadata.name", "pods")


def test_event_fields():
    ev = {"metadata": {"name": "e"}, "involvedObject": {"kind": "Pod", "name": "web-1"}, "type": "Warning",
          "source": {"component": "scheduler"}}
    assert FieldSelector.parse("involvedObject.name=web-1,involvedObject.kind=Pod,type=Warning", "events").matches(ev)
    assert FieldSelector.parse("source=scheduler", "events").matches(ev)
