"""OpenAPI documents: what kubectl 1.32 reads for explain, apply and server-side validation."""

import json

import pytest

from controlplane import openapi
from controlplane.kinds import RESOURCES, by_plural


def test_v3_index_lists_every_group_version_with_a_hash():
    idx = openapi.openapi_v3_index()
    assert set(idx["paths"]) == {"api/v1", "apis/apps/v1", "apis/coordination.k8s.io/v1"}
    url = idx["paths"]["apis/apps/v1"]["serverRelativeURL"]
    assert url.startswith("/openapi/v3/apis/apps/v1?hash=") and len(url.split("=")[1]) == 128
    assert openapi.openapi_v3_index("/prefix")["paths"]["api/v1"]["serverRelativeURL"].startswith("/prefix/openapi/v3/")
    assert openapi.openapi_v3_index() == idx  # deterministic


def test_v3_lookup_names():
    assert openapi.openapi_v3("api/v1") is openapi.openapi_v3("api/v1")
    assert openapi.openapi_v3("apis/apps/v1")["paths"] == openapi.openapi_v3("apps/v1")["paths"]
    assert openapi.openapi_v3("api/v1?hash=abc") is not None
    for missing in ("apis/batch/v1", "api/apps/v1", "apis/apps", "", "apis/apps/v1/x"):
        assert openapi.openapi_v3(missing) is None


def _schema_by_gvk(doc, group, version, kind):
    found = [name for name, sch in doc["components"]["schemas"].items()
             if {"group": group, "version": version, "kind": kind} in sch.get("x-kubernetes-group-version-kind", [])]
    assert len(found) == 1, found
    return found[0], doc["components"]["schemas"][found[0]]


def _resolve(doc, prop):
    ref = prop["allOf"][0]["$ref"] if "allOf" in prop else prop["$ref"]
    return doc["components"]["schemas"][ref.rsplit("/", 1)[1]]


@pytest.mark.parametrize("rt", RESOURCES, ids=lambda r: r.plural)
def test_every_kind_has_a_schema_and_patch_operation_with_field_validation(rt):
    doc = openapi.openapi_v3(rt.api_version)
    _schema_by_gvk(doc, rt.group, rt.version, rt.kind)
    _schema_by_gvk(doc, rt.group, rt.version, rt.list_kind)
    # kubectl's QueryParamVerifierV3: a PATCH operation tagged with the GVK whose operation
    # parameters include the fieldValidation query parameter -> server-side validation.
    patches = [p["patch"] for p in doc["paths"].values()
               if "patch" in p and p["patch"]["x-kubernetes-group-version-kind"] ==
               {"group": rt.group, "version": rt.version, "kind": rt.kind}]
    assert patches
    for op in patches:
        assert {"name": "fieldValidation", "in": "query"}.items() <= next(
            p for p in op["parameters"] if p["name"] == "fieldValidation").items()
    # every $ref resolves inside the same document
    text = json.dumps(doc)
    for ref in {part.split('"')[0] for part in text.split('"$ref": "#/components/schemas/')[1:]}:
        assert ref in doc["components"]["schemas"], ref


def test_patch_extensions_for_apply():
    doc = openapi.openapi_v3("api/v1")
    spec = doc["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"]
    assert spec["containers"]["x-kubernetes-patch-merge-key"] == "name"
    assert spec["containers"]["x-kubernetes-patch-strategy"] == "merge"
    assert spec["volumes"]["x-kubernetes-patch-strategy"] == "merge,retainKeys"
    assert "x-kubernetes-patch-strategy" not in spec["tolerations"]
    container = _resolve(doc, spec["containers"]["items"])
    assert container["properties"]["ports"]["x-kubernetes-patch-merge-key"] == "containerPort"
    assert container["properties"]["env"]["x-kubernetes-patch-merge-key"] == "name"
    assert container["required"] == ["name"]
    meta = doc["components"]["schemas"]["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"]
    assert meta["finalizers"]["x-kubernetes-patch-strategy"] == "merge"
    assert meta["labels"]["additionalProperties"] == {"type": "string"}
    apps = openapi.openapi_v3("apps/v1")
    dspec = apps["components"]["schemas"]["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]
    assert dspec["strategy"]["x-kubernetes-patch-strategy"] == "retainKeys"
    # the pod template's schema is in the apps document too (apply walks into it)
    assert "io.k8s.api.core.v1.Container" in apps["components"]["schemas"]
    _schema_by_gvk(apps, "autoscaling", "v1", "Scale")


def test_explain_descriptions_present():
    doc = openapi.openapi_v3("api/v1")
    _, pod = _schema_by_gvk(doc, "", "v1", "Pod")
    spec = _resolve(doc, pod["properties"]["spec"])
    assert "containers" in spec["required"]
    containers = spec["properties"]["containers"]
    assert "List of containers belonging to the pod" in containers["description"]
    container = _resolve(doc, containers["items"])
    for name, prop in container["properties"].items():
        assert prop["description"], name
    assert container["properties"]["resources"]["description"]


def test_v2_document():
    doc = openapi.openapi_v2()
    assert doc["swagger"] == "2.0"
    pod = doc["definitions"]["io.k8s.api.core.v1.Pod"]
    assert pod["x-kubernetes-group-version-kind"] == [{"group": "", "version": "v1", "kind": "Pod"}]
    assert pod["properties"]["spec"] == {"$ref": "#/definitions/io.k8s.api.core.v1.PodSpec",
                                         "description": pod["properties"]["spec"]["description"]}
    patch = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert any(p["name"] == "fieldValidation" for p in patch["parameters"])
    assert doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["put"][
        "x-kubernetes-group-version-kind"]["kind"] == "Scale"
    json.dumps(doc)  # serializable


def test_unknown_fields():
    pods = by_plural("pods")
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", "labels": {"any": "thing"},
                                                           "annotations": {"k": "v"}, "nmae": "typo"},
           "spec": {"containers": [{"name": "a", "image": "b", "imagePullPolicyx": "Always",
                                    "ports": [{"containerPort": 80, "proto": "TCP"}],
                                    "securityContext": {"seccompProfile": {"type": "RuntimeDefault", "x": 1}}}],
                    "nodeSelector": {"disk": "ssd"}},
           "status": {"phase": "Running", "bogus": 1},
           "extra": True}
    assert pods.unknown_fields(obj) == ["metadata.nmae", "spec.containers[0].imagePullPolicyx",
                                        "spec.containers[0].ports[0].proto", "status.bogus", "extra"]
    seed = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "my-nginx", "labels": {"app": "nginx"}},
            "spec": {"containers": [{"name": "nginx", "image": "nginx:1.7.9", "ports": [{"containerPort": 80}]}]}}
    assert pods.unknown_fields(seed) == []
    # a defaulted object is known through and through
    pods.default(seed)
    assert pods.unknown_fields(seed) == []
    assert openapi.unknown_fields("not an object", pods) == []
    assert openapi.unknown_fields({"a": 1}, "NoSuchKind") == []


def test_unknown_fields_of_scale_bodies():
    deploy = by_plural("deployments")
    scale = {"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "web"},
             "spec": {"replicas": 3}, "status": {"replicas": 2, "selector": "app=web"}}
    assert deploy.unknown_fields(scale) == []
    assert deploy.unknown_fields({"spec": {"replicas": 3, "paused": True}}, subresource="scale") == ["spec.paused"]
    assert deploy.unknown_fields({"spec": {"replicas": 3, "paused": True}}) == []


@pytest.mark.parametrize("rt", RESOURCES, ids=lambda r: r.plural)
def test_defaulted_objects_have_no_unknown_fields(rt):
    samples = {
        "pods": {"spec": {"containers": [{"name": "c", "image": "x", "livenessProbe": {"httpGet": {"port": 80}}}],
                          "volumes": [{"name": "v", "configMap": {"name": "c"}}]}},
        "services": {"spec": {"ports": [{"port": 80}], "type": "NodePort"}},
        "deployments": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}},
        "replicasets": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}},
        "namespaces": {"metadata": {"name": "n"}},
        "nodes": {"status": {"capacity": {"cpu": "1"}}},
        "endpoints": {"subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"port": 1}]}]},
    }
    obj = {"apiVersion": rt.api_version, "kind": rt.kind, "metadata": {"name": "x"}, **samples.get(rt.plural, {})}
    rt.default(obj)
    assert rt.unknown_fields(obj) == []
