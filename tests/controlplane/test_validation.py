"""Validation with Kubernetes' rules and messages (pkg/apis/core/validation et al.)."""

import copy

import pytest

from controlplane.kinds import by_plural


def pod(**spec_overrides):
    p = {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": "my-nginx", "namespace": "default", "labels": {"app": "nginx"}},
         "spec": {"containers": [{"name": "nginx", "image": "nginx:1.7.9", "ports": [{"containerPort": 80}]}]}}
    p["spec"].update(spec_overrides)
    return p


def errors(plural, obj, old=None, default=True):
    rt = by_plural(plural)
    obj = copy.deepcopy(obj)
    if default:
        rt.default(obj)
    if old is not None:
        old = copy.deepcopy(old)
        rt.default(old)
    return {e.field: str(e) for e in rt.validate(obj, old)}


def test_pod_name_subdomain_message():
    p = pod()
    p["metadata"]["name"] = "My_Pod"
    errs = errors("pods", p)
    assert errs == {"metadata.name": (
        'metadata.name: Invalid value: "My_Pod": a lowercase RFC 1123 subdomain must consist of lower case '
        "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. "
        "'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*"
        "[a-z0-9])?)*')")}
    p["metadata"]["name"] = "a" * 254
    assert "must be no more than 253 characters" in errors("pods", p)["metadata.name"]
    p["metadata"]["name"] = "web.v1"
    assert errors("pods", p) == {}


def test_generate_name():
    p = pod()
    del p["metadata"]["name"]
    p["metadata"]["generateName"] = "web-"
    assert errors("pods", p) == {}
    p["metadata"]["generateName"] = "Web-"
    assert "metadata.generateName" in errors("pods", p)
    del p["metadata"]["generateName"]
    assert errors("pods", p) == {"metadata.name": "metadata.name: Required value: name or generateName is required"}


def test_service_and_namespace_names_are_labels():
    svc = {"metadata": {"name": "web.v1", "namespace": "default"}, "spec": {"ports": [{"port": 80}]}}
    assert "DNS-1035 label" in errors("services", svc)["metadata.name"]
    svc["metadata"]["name"] = "1web"  # Service names must start with a letter
    assert "metadata.name" in errors("services", svc)
    ns = {"metadata": {"name": "team.a"}}
    assert "RFC 1123 label" in errors("namespaces", ns)["metadata.name"]
    assert errors("namespaces", {"metadata": {"name": "team-a"}}) == {}
    assert "metadata.namespace" in errors("namespaces", {"metadata": {"name": "a", "namespace": "x"}})


def test_labels_and_annotations():
    p = pod()
    p["metadata"]["labels"] = {"example.com/app": "ok", "bad key": "x"}
    assert "name part must consist of alphanumeric" in errors("pods", p)["metadata.labels"]
    p["metadata"]["labels"] = {"app": "x" * 64}
    assert "must be no more than 63 characters" in errors("pods", p)["metadata.labels"]
    p["metadata"]["labels"] = {"Example.com/app": "x"}
    assert "prefix part a lowercase RFC 1123 subdomain" in errors("pods", p)["metadata.labels"]
    p["metadata"]["labels"] = {"app": "v"}
    p["metadata"]["annotations"] = {"big": "x" * (256 * 1024)}
    assert errors("pods", p)["metadata.annotations"] == (
        "metadata.annotations: Too long: must have at most 262144 bytes")


def test_containers_required_and_names():
    assert errors("pods", pod(containers=[])) == {"spec.containers": "spec.containers: Required value"}
    errs = errors("pods", pod(containers=[{"name": "Web", "image": "x"}, {"name": "ok"}]))
    assert errs["spec.containers[0].name"].startswith('spec.containers[0].name: Invalid value: "Web": '
                                                      "a lowercase RFC 1123 label")
    assert errs["spec.containers[1].image"] == "spec.containers[1].image: Required value"
    dup = errors("pods", pod(containers=[{"name": "a", "image": "x"}, {"name": "a", "image": "y"}]))
    assert dup == {"spec.containers[1].name": 'spec.containers[1].name: Duplicate value: "a"'}


@pytest.mark.parametrize(
    ("port", "field", "text"),
    [
        ({"containerPort": 0}, "spec.containers[0].ports[0].containerPort", "must be between 1 and 65535, inclusive"),
        ({"containerPort": 65536}, "spec.containers[0].ports[0].containerPort", "Invalid value: 65536"),
        ({"containerPort": 80, "protocol": "HTTP"}, "spec.containers[0].ports[0].protocol",
         'Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP"'),
        ({"containerPort": 80, "hostPort": 70000}, "spec.containers[0].ports[0].hostPort", "between 1 and 65535"),
        ({"containerPort": 80, "name": "Http"}, "spec.containers[0].ports[0].name", "alpha-numeric"),
        ({"containerPort": "80"}, "spec.containers[0].ports[0].containerPort", "must be an integer"),
        ({}, "spec.containers[0].ports[0].containerPort", "Required value"),
    ],
)
def test_container_ports(port, field, text):
    p = pod()
    p["spec"]["containers"][0]["ports"] = [port]
    errs = errors("pods", p)
    assert text in errs[field]


def test_host_ports_unique_per_pod():
    p = pod(containers=[{"name": "a", "image": "x", "ports": [{"containerPort": 80, "hostPort": 8080}]},
                        {"name": "b", "image": "x", "ports": [{"containerPort": 81, "hostPort": 8080},
                                                              {"containerPort": 82, "hostPort": 8080, "protocol": "UDP"},
                                                              {"containerPort": 80}, {"containerPort": 80}]}])
    assert errors("pods", p) == {"spec.containers[1].ports[0].hostPort":
                                 'spec.containers[1].ports[0].hostPort: Duplicate value: "/TCP/8080"'}


def test_resources_quantities_and_requests_le_limits():
    p = pod()
    c = p["spec"]["containers"][0]
    c["resources"] = {"requests": {"cpu": "500m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "1G"}}
    assert errors("pods", p) == {}
    c["resources"] = {"requests": {"cpu": "lots"}}
    assert "quantities must match the regular expression" in errors("pods", p)["spec.containers[0].resources.requests[cpu]"]
    c["resources"] = {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}
    assert errors("pods", p)["spec.containers[0].resources.requests"] == (
        'spec.containers[0].resources.requests: Invalid value: "2": must be less than or equal to cpu limit of 1')
    c["resources"] = {"requests": {"memory": "-1Mi"}}
    assert "must be greater than or equal to 0" in errors("pods", p)["spec.containers[0].resources.requests[memory]"]
    c["resources"] = {"requests": {"gpus": "1"}}
    assert "standard resource type or fully qualified" in errors("pods", p)["spec.containers[0].resources.requests[gpus]"]
    c["resources"] = {"limits": {"example.com/gpu": "1"}}
    assert errors("pods", p) == {}


def test_restart_policy_and_probes():
    assert 'Unsupported value: "Sometimes"' in errors("pods", pod(restartPolicy="Sometimes"))["spec.restartPolicy"]
    p = pod()
    c = p["spec"]["containers"][0]
    c["livenessProbe"] = {"periodSeconds": 5}
    assert errors("pods", p)["spec.containers[0].livenessProbe"] == (
        "spec.containers[0].livenessProbe: Required value: must specify a handler type")
    c["livenessProbe"] = {"httpGet": {"port": 80}, "exec": {"command": ["true"]}}
    assert "may not specify more than 1 handler type" in str(errors("pods", p))
    c["livenessProbe"] = {"httpGet": {"port": "http"}, "successThreshold": 2}
    assert errors("pods", p) == {"spec.containers[0].livenessProbe.successThreshold":
                                 "spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1"}
    c["livenessProbe"] = {"tcpSocket": {"port": 80}, "periodSeconds": -1}
    assert "periodSeconds" in str(errors("pods", p))
    c["livenessProbe"] = None
    c["readinessProbe"] = {"exec": {"command": ["cat", "/ready"]}, "successThreshold": 2}
    assert errors("pods", p) == {}


def test_env_and_volume_mounts():
    p = pod(volumes=[{"name": "data", "emptyDir": {}}])
    c = p["spec"]["containers"][0]
    c["env"] = [{"name": "GOOD", "value": "1"}, {"name": "1BAD", "value": "x"},
                {"name": "REF", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]
    c["volumeMounts"] = [{"name": "data", "mountPath": "/data"}, {"name": "missing", "mountPath": "/m"}]
    errs = errors("pods", p)
    assert set(errs) == {"spec.containers[0].env[1].name", "spec.containers[0].volumeMounts[1].name"}
    assert errs["spec.containers[0].volumeMounts[1].name"].endswith('Not found: "missing"')
    p["spec"]["volumes"] = [{"name": "data"}]
    assert "must specify a volume type" in str(errors("pods", p))


def test_tolerations_and_affinity():
    p = pod(tolerations=[{"key": "k", "operator": "Exists", "value": "v"},
                         {"key": "k", "operator": "Maybe"},
                         {"key": "k", "effect": "Sometimes"},
                         {"operator": "Equal", "value": "x"},
                         {"key": "k", "effect": "NoSchedule", "tolerationSeconds": 5}])
    errs = errors("pods", p)
    assert "value must be empty when `operator` is 'Exists'" in errs["spec.tolerations[0].operator"]
    assert 'Unsupported value: "Maybe"' in errs["spec.tolerations[1].operator"]
    assert 'Unsupported value: "Sometimes"' in errs["spec.tolerations[2].effect"]
    assert "operator must be Exists when `key` is empty" in errs["spec.tolerations[3].operator"]
    assert "effect must be 'NoExecute'" in errs["spec.tolerations[4].effect"]
    ok = pod(tolerations=[{"operator": "Exists"}, {"key": "k", "value": "v", "effect": "NoExecute",
                                                   "tolerationSeconds": 30}],
             affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                 {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}},
                 "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                     {"weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "x"}},
                                                         "topologyKey": "kubernetes.io/hostname"}}]}})
    assert errors("pods", ok) == {}
    bad = pod(affinity={
        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}},
        "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {}}]},
        "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 0, "podAffinityTerm": {"topologyKey": "k"}}]}})
    errs = errors("pods", bad)
    assert set(errs) == {
        "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms",
        "spec.affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey",
        "spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight",
    }
    gt = pod(affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["a"]}]}]}}})
    assert "must be an integer" in str(errors("pods", gt))


def test_pod_update_immutability():
    old = pod(tolerations=[{"key": "a", "operator": "Exists"}])
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["image"] = "nginx:1.9"
    new["spec"]["tolerations"].append({"key": "b", "operator": "Exists"})
    new["spec"]["activeDeadlineSeconds"] = 30
    new["metadata"]["labels"]["extra"] = "yes"
    new["spec"]["nodeName"] = "edge-1"  # binding: only from unset
    assert errors("pods", new, old) == {}
    changed = copy.deepcopy(old)
    changed["spec"]["containers"][0]["ports"][0]["containerPort"] = 81
    assert errors("pods", changed, old)["spec"].startswith(
        "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`")
    removed = copy.deepcopy(old)
    removed["spec"]["tolerations"] = []
    assert "spec" in errors("pods", removed, old)
    bound = copy.deepcopy(old)
    bound["spec"]["nodeName"] = "edge-1"
    rebound = copy.deepcopy(bound)
    rebound["spec"]["nodeName"] = "edge-2"
    assert "spec" in errors("pods", rebound, bound)
    renamed = copy.deepcopy(old)
    renamed["metadata"]["name"] = "other"
    assert errors("pods", renamed, old)["metadata.name"] == 'metadata.name: Invalid value: "other": field is immutable'


def deployment(**spec):
    d = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
         "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                  "template": {"metadata": {"labels": {"app": "web"}},
                               "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]}}}}
    d["spec"].update(spec)
    return d


def test_deployment_valid_and_selector_mismatch():
    assert errors("deployments", deployment()) == {}
    d = deployment(selector={"matchLabels": {"app": "other"}})
    assert errors("deployments", d) == {"spec.template.metadata.labels": (
        'spec.template.metadata.labels: Invalid value: {"app":"web"}: `selector` does not match template `labels`')}
    assert "empty selector is invalid for deployment" in errors("deployments", deployment(selector={}))["spec.selector"]
    d = deployment()
    del d["spec"]["selector"]
    assert errors("deployments", d) == {"spec.selector": "spec.selector: Required value"}


def test_deployment_fields():
    d = deployment(replicas=-1, strategy={"type": "RollingUpdate",
                                          "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}})
    errs = errors("deployments", d)
    assert errs["spec.replicas"] == "spec.replicas: Invalid value: -1: must be greater than or equal to 0"
    assert "may not be 0 when `maxSurge` is 0" in errs["spec.strategy.rollingUpdate.maxUnavailable"]
    d = deployment(strategy={"type": "Recreate", "rollingUpdate": {"maxSurge": 1}})
    assert "spec.strategy.rollingUpdate" in errors("deployments", d)
    d = deployment(strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "120%"}})
    assert "spec.strategy.rollingUpdate.maxSurge" in errors("deployments", d)
    d = deployment()
    d["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    assert errors("deployments", d)["spec.template.spec.restartPolicy"] == (
        'spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"')
    d = deployment()
    d["spec"]["template"]["spec"]["containers"][0]["name"] = "Web"
    assert "spec.template.spec.containers[0].name" in errors("deployments", d)


def test_workload_status_counts():
    d = deployment()
    d["status"] = {"replicas": 2, "readyReplicas": 2, "availableReplicas": 1, "updatedReplicas": 2}
    assert errors("deployments", d) == {}
    d["status"] = {"replicas": 1, "readyReplicas": 2, "availableReplicas": 3, "updatedReplicas": -1}
    assert set(errors("deployments", d)) == {"status.readyReplicas", "status.availableReplicas",
                                             "status.updatedReplicas"}


def test_workload_selector_immutable():
    old = deployment()
    new = deployment(selector={"matchLabels": {"app": "web", "v": "2"}})
    new["spec"]["template"]["metadata"]["labels"]["v"] = "2"
    assert "field is immutable" in errors("deployments", new, old)["spec.selector"]
    scaled = deployment(replicas=5)
    assert errors("deployments", scaled, old) == {}
    rs = {"metadata": {"name": "web-abc", "namespace": "default"}, "spec": old["spec"]}
    rs2 = copy.deepcopy(rs)
    rs2["spec"]["selector"] = {"matchLabels": {"app": "x"}}
    rs2["spec"]["template"]["metadata"]["labels"] = {"app": "x"}
    assert "field is immutable" in errors("replicasets", rs2, rs)["spec.selector"]


def service(**spec):
    s = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
         "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}
    s["spec"].update(spec)
    return s


def test_service_rules():
    assert errors("services", service()) == {}
    errs = errors("services", service(ports=[{"port": 80}, {"port": 81}]))
    assert errs == {"spec.ports[0].name": "spec.ports[0].name: Required value",
                    "spec.ports[1].name": "spec.ports[1].name: Required value"}
    errs = errors("services", service(ports=[{"name": "a", "port": 80}, {"name": "a", "port": 81}]))
    assert errs == {"spec.ports[1].name": 'spec.ports[1].name: Duplicate value: "a"'}
    assert "between 1 and 65535" in errors("services", service(ports=[{"port": 0}]))["spec.ports[0].port"]
    assert "spec.ports" in errors("services", service(ports=[]))
    assert errors("services", service(ports=[], clusterIP="None")) == {}
    assert errors("services", service(clusterIP="10.0.0.300"))["spec.clusterIP"] == (
        'spec.clusterIP: Invalid value: "10.0.0.300": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)')
    assert errors("services", service(type="NodePort", ports=[{"port": 80, "nodePort": 30080}])) == {}
    assert "The range of valid ports is 30000-32767" in errors(
        "services", service(type="NodePort", ports=[{"port": 80, "nodePort": 80}]))["spec.ports[0].nodePort"]
    assert "may not be used when `type` is 'ClusterIP'" in errors(
        "services", service(ports=[{"port": 80, "nodePort": 30080}]))["spec.ports[0].nodePort"]
    assert 'Unsupported value: "Magic"' in errors("services", service(type="Magic"))["spec.type"]
    assert "spec.externalName" in errors("services", service(type="ExternalName"))
    assert "spec.ports[0].targetPort" in errors("services", service(ports=[{"port": 80, "targetPort": "Bad_Name"}]))


def test_service_cluster_ip_immutable():
    old = service(clusterIP="10.96.0.10")
    assert errors("services", service(clusterIP="10.96.0.11"), old) == {
        "spec.clusterIP": 'spec.clusterIP: Invalid value: "10.96.0.11": field is immutable'}
    assert errors("services", service(clusterIP="10.96.0.10", selector={"app": "x"}), old) == {}


def test_endpoints():
    ep = {"metadata": {"name": "web", "namespace": "default"},
          "subsets": [{"addresses": [{"ip": "127.0.1.5", "nodeName": "edge-1"}], "ports": [{"port": 8080}]}]}
    assert errors("endpoints", ep) == {}
    ep["subsets"][0]["addresses"].append({"ip": "nope"})
    ep["subsets"][0]["ports"] = [{"port": 8080}, {"port": 70000, "name": "b"}]
    errs = errors("endpoints", ep)
    assert set(errs) == {"subsets[0].addresses[1].ip", "subsets[0].ports[0].name", "subsets[0].ports[1].port"}


def test_node_taints_and_quantities():
    node = {"metadata": {"name": "edge-1"}, "spec": {"taints": [
        {"key": "dedicated", "value": "edge", "effect": "NoSchedule"},
        {"key": "dedicated", "value": "other", "effect": "NoSchedule"},
        {"key": "x", "effect": "Never"}]},
        "status": {"capacity": {"cpu": "2", "memory": "bad"},
                   "addresses": [{"type": "InternalIP", "address": "127.0.1.1"}]}}
    errs = errors("nodes", node)
    assert set(errs) == {"spec.taints[1]", "spec.taints[2].effect", "status.capacity[memory]",
                         "status.allocatable[memory]"}
    assert "taints must be unique by key and effect pair" in errs["spec.taints[1]"]


def test_configmap():
    cm = {"metadata": {"name": "cfg", "namespace": "default"}, "data": {"a.conf": "x", "bad key": "y"}}
    assert "a valid config key must consist of alphanumeric characters" in errors("configmaps", cm)["data[bad key]"]
    old = {"metadata": {"name": "cfg", "namespace": "default"}, "data": {"a": "1"}, "immutable": True}
    new = copy.deepcopy(old)
    new["data"]["a"] = "2"
    assert "field is immutable when `immutable` is set" in errors("configmaps", new, old)["data"]
    assert errors("configmaps", {"metadata": {"name": "b", "namespace": "default"}, "binaryData": {"k": "aGk="}}) == {}
    assert "must be base64-encoded" in errors(
        "configmaps", {"metadata": {"name": "b", "namespace": "default"}, "binaryData": {"k": "not base64!"}})["binaryData[k]"]
    big = {"metadata": {"name": "cfg", "namespace": "default"}, "data": {"a": "x" * (1024 * 1024 + 1)}}
    assert "must have at most 1048576 bytes" in str(errors("configmaps", big))


def test_lease_and_event():
    lease = {"metadata": {"name": "edge-1", "namespace": "kube-node-lease"},
             "spec": {"holderIdentity": "edge-1", "leaseDurationSeconds": 40,
                      "renewTime": "2026-01-01T00:00:00.000000Z"}}
    assert errors("leases", lease) == {}
    lease["spec"]["leaseDurationSeconds"] = 0
    lease["spec"]["renewTime"] = "yesterday"
    assert set(errors("leases", lease)) == {"spec.leaseDurationSeconds", "spec.renewTime"}
    ev = {"metadata": {"name": "web.1", "namespace": "default"},
          "involvedObject": {"kind": "Pod", "name": "web", "namespace": "other"}, "type": "Normal"}
    assert errors("events", ev) == {"involvedObject.namespace": (
        'involvedObject.namespace: Invalid value: "other": does not match event.namespace')}


def test_status_causes_shape():
    p = pod()
    p["spec"]["containers"][0]["ports"][0]["containerPort"] = 0
    rt = by_plural("pods")
    rt.default(p)
    [err] = rt.validate(p)
    assert err.cause() == {"reason": "FieldValueInvalid", "field": "spec.containers[0].ports[0].containerPort",
                           "message": "Invalid value: 0: must be between 1 and 65535, inclusive"}
    assert rt.invalid_message(p, [err]) == (
        'Pod "my-nginx" is invalid: spec.containers[0].ports[0].containerPort: Invalid value: 0: '
        "must be between 1 and 65535, inclusive")
