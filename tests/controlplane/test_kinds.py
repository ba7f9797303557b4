"""Resource registry, discovery and defaulting."""

import copy

import pytest

from controlplane.kinds import (
    RESOURCES,
    api_groups,
    by_kind,
    by_plural,
    discovery_resources,
    group_versions,
    lookup,
    scale_of,
)

SEED_POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "my-nginx", "labels": {"app": "nginx"}},
    "spec": {"containers": [{"name": "nginx", "image": "nginx:1.7.9", "ports": [{"containerPort": 80}]}]},
}


def test_lookup_and_by_kind():
    pods = lookup("", "v1", "pods")
    assert pods is not None and pods.kind == "Pod" and pods.namespaced and pods.short_names == ("po",)
    assert pods.subresources == frozenset({"status"})
    deploy = by_kind("apps/v1", "Deployment")
    assert deploy is lookup("apps", "v1", "deployments")
    assert deploy.subresources == frozenset({"status", "scale"})
    assert deploy.list_kind == "DeploymentList" and deploy.api_version == "apps/v1"
    assert by_kind("coordination.k8s.io/v1", "Lease").plural == "leases"
    assert not by_kind("v1", "Node").namespaced and not by_plural("namespaces").namespaced
    assert lookup("", "v1", "deployments") is None
    assert lookup("apps", "v1beta1", "deployments") is None
    assert by_kind("v1", "Secret") is None


def test_short_names_and_categories_as_kubernetes():
    shorts = {r.plural: r.short_names for r in RESOURCES}
    assert shorts == {"configmaps": ("cm",), "endpoints": ("ep",), "events": ("ev",), "namespaces": ("ns",),
                      "nodes": ("no",), "pods": ("po",), "services": ("svc",), "deployments": ("deploy",),
                      "replicasets": ("rs",), "leases": ()}
    assert {r.plural for r in RESOURCES if "all" in r.categories} == {"pods", "services", "deployments",
                                                                      "replicasets"}


def test_discovery():
    core = {e["name"]: e for e in discovery_resources("", "v1")}
    assert core["pods"]["verbs"] == sorted(["create", "delete", "deletecollection", "get", "list", "patch",
                                            "update", "watch"])
    assert core["pods"]["shortNames"] == ["po"] and core["pods"]["singularName"] == "pod"
    assert core["pods/status"]["verbs"] == ["get", "patch", "update"]
    assert core["pods/log"]["verbs"] == ["get"]
    assert core["pods/eviction"]["group"] == "policy" and core["pods/eviction"]["kind"] == "Eviction"
    assert "deletecollection" not in core["namespaces"]["verbs"]
    assert core["nodes"]["namespaced"] is False
    apps = {e["name"]: e for e in discovery_resources("apps", "v1")}
    assert apps["deployments/scale"]["group"] == "autoscaling" and apps["deployments/scale"]["kind"] == "Scale"
    assert set(apps) == {"deployments", "deployments/scale", "deployments/status", "replicasets",
                         "replicasets/scale", "replicasets/status"}
    assert discovery_resources("batch", "v1") == []
    groups = {g["name"]: g for g in api_groups()}
    assert set(groups) == {"apps", "coordination.k8s.io"}
    assert groups["apps"]["preferredVersion"] == {"groupVersion": "apps/v1", "version": "v1"}
    assert group_versions() == ["v1", "apps/v1", "coordination.k8s.io/v1"]


def test_seed_pod_defaults_and_validates_clean():
    pod = copy.deepcopy(SEED_POD)
    pod["metadata"]["namespace"] = "default"
    rt = by_kind("v1", "Pod")
    rt.default(pod)
    assert rt.validate(pod) == []
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Always" and spec["dnsPolicy"] == "ClusterFirst"
    assert spec["terminationGracePeriodSeconds"] == 30 and spec["schedulerName"] == "default-scheduler"
    assert spec["enableServiceLinks"] is True and spec["priority"] == 0
    c = spec["containers"][0]
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert c["terminationMessagePath"] == "/dev/termination-log" and c["terminationMessagePolicy"] == "File"
    assert c["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert pod["status"]["phase"] == "Pending" and pod["status"]["qosClass"] == "BestEffort"
    # defaulting twice changes nothing (idempotent)
    again = copy.deepcopy(pod)
    rt.default(again)
    assert again == pod


@pytest.mark.parametrize(
    ("image", "policy"),
    [("nginx", "Always"), ("nginx:latest", "Always"), ("nginx:1.7.9", "IfNotPresent"),
     ("localhost:5000/nginx", "Always"), ("localhost:5000/nginx:1", "IfNotPresent"),
     ("nginx@sha256:abcd", "IfNotPresent")],
)
def test_image_pull_policy_default(image, policy):
    pod = {"metadata": {}, "spec": {"containers": [{"name": "c", "image": image}]}}
    by_plural("pods").default(pod)
    assert pod["spec"]["containers"][0]["imagePullPolicy"] == policy


def test_probe_and_resource_defaults():
    pod = {"spec": {"containers": [{
        "name": "c", "image": "x:1",
        "livenessProbe": {"httpGet": {"port": 8080}},
        "readinessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 3},
        "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
    }]}}
    by_plural("pods").default(pod)
    c = pod["spec"]["containers"][0]
    assert c["livenessProbe"] == {"httpGet": {"port": 8080, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1,
                                  "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}
    assert c["readinessProbe"]["periodSeconds"] == 3
    assert c["resources"]["requests"] == {"cpu": "1", "memory": "1Gi"}  # requests default to limits
    assert pod["status"]["qosClass"] == "Guaranteed"


def test_service_defaults():
    svc = {"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}
    by_plural("services").default(svc)
    spec = svc["spec"]
    assert spec["type"] == "ClusterIP" and spec["sessionAffinity"] == "None"
    assert spec["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80}]
    assert spec["ipFamilies"] == ["IPv4"] and spec["ipFamilyPolicy"] == "SingleStack"
    np_svc = {"spec": {"type": "NodePort", "ports": [{"port": 80, "targetPort": "http"}]}}
    by_plural("services").default(np_svc)
    assert np_svc["spec"]["externalTrafficPolicy"] == "Cluster"
    assert np_svc["spec"]["ports"][0]["targetPort"] == "http"


def test_deployment_defaults():
    d = {"metadata": {"name": "web"}, "spec": {
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}},
    }}
    by_plural("deployments").default(d)
    spec = d["spec"]
    assert spec["replicas"] == 1 and spec["revisionHistoryLimit"] == 10 and spec["progressDeadlineSeconds"] == 600
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}
    tspec = spec["template"]["spec"]
    assert tspec["restartPolicy"] == "Always" and tspec["containers"][0]["imagePullPolicy"] == "Always"
    assert "priority" not in tspec  # admission sets priority on pods, not templates
    recreate = {"spec": {"strategy": {"type": "Recreate"}}}
    by_plural("deployments").default(recreate)
    assert recreate["spec"]["strategy"] == {"type": "Recreate"}
    rs = {"spec": {"template": {"spec": {"containers": []}}}}
    by_plural("replicasets").default(rs)
    assert rs["spec"]["replicas"] == 1


def test_namespace_node_endpoints_defaults():
    ns = {"metadata": {"name": "team-a"}}
    by_plural("namespaces").default(ns)
    assert ns["spec"]["finalizers"] == ["kubernetes"] and ns["status"]["phase"] == "Active"
    assert ns["metadata"]["labels"] == {"kubernetes.io/metadata.name": "team-a"}
    node = {"metadata": {"name": "edge-1"}, "status": {"capacity": {"cpu": "2", "memory": "1Gi"}}}
    by_plural("nodes").default(node)
    assert node["status"]["allocatable"] == {"cpu": "2", "memory": "1Gi"}
    ep = {"subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]}
    by_plural("endpoints").default(ep)
    assert ep["subsets"][0]["ports"][0]["protocol"] == "TCP"


@pytest.mark.parametrize("plural", [r.plural for r in RESOURCES])
def test_defaulting_never_raises_on_garbage(plural):
    rt = by_plural(plural)
    for garbage in ({}, {"spec": "x"}, {"spec": {"containers": "x", "template": 3, "ports": [1]}},
                    {"metadata": [], "status": 5, "subsets": [None]}):
        rt.default(garbage)
        errs = rt.validate(garbage)
        assert isinstance(errs, list) and errs


def test_scale_view():
    d = {"metadata": {"name": "web", "namespace": "default", "resourceVersion": "7"},
         "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}}, "status": {"replicas": 2}}
    assert scale_of(d) == {"kind": "Scale", "apiVersion": "autoscaling/v1",
                           "metadata": {"name": "web", "namespace": "default", "resourceVersion": "7"},
                           "spec": {"replicas": 3}, "status": {"replicas": 2, "selector": "app=web"}}
