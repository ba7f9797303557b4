"""Server-side printing: the columns and cells `kubectl get` shows (kubectl's printers.go)."""

from datetime import UTC, datetime

import pytest

from controlplane.kinds import RESOURCES, by_plural
from controlplane.tables import human_duration, pod_status_reason, table_for

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
CREATED = "2026-01-01T11:55:00Z"  # five minutes before NOW


def names(table, wide=True):
    return [c["name"] for c in table["columnDefinitions"]]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(-5, "<invalid>"), (-1, "0s"), (0, "0s"), (45, "45s"), (119, "119s"), (120, "2m"), (303, "5m3s"),
     (600, "10m"), (179 * 60, "179m"), (3 * 3600, "3h"), (3 * 3600 + 720, "3h12m"), (10 * 3600, "10h"),
     (50 * 3600, "2d2h"), (48 * 3600, "2d"), (30 * 86400, "30d"), (800 * 86400, "2y70d"), (9 * 365 * 86400, "9y")],
)
def test_human_duration_matches_kubectl(seconds, text):
    assert human_duration(seconds) == text


def pod(**status):
    return {"metadata": {"name": "web-1", "namespace": "default", "creationTimestamp": CREATED},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "edge-1"},
            "status": status}


def running(ready=True, restarts=0, **extra):
    return {"name": "a", "ready": ready, "restartCount": restarts, "state": {"running": {}}, **extra}


def test_pod_columns_and_row():
    p = pod(phase="Running", podIP="127.0.1.5", containerStatuses=[running(), running(restarts=2, lastState={
        "terminated": {"finishedAt": "2026-01-01T11:59:00Z", "exitCode": 1}})])
    t = table_for(by_plural("pods"), [p], wide=True, now=NOW)
    assert t["kind"] == "Table" and t["apiVersion"] == "meta.k8s.io/v1"
    assert names(t) == ["Name", "Ready", "Status", "Restarts", "Age", "IP", "Node", "Nominated Node",
                        "Readiness Gates"]
    assert [c["priority"] for c in t["columnDefinitions"]] == [0, 0, 0, 0, 0, 1, 1, 1, 1]
    [row] = t["rows"]
    assert row["cells"] == ["web-1", "2/2", "Running", "2 (60s ago)", "5m", "127.0.1.5", "edge-1", "<none>", "<none>"]
    assert row["object"] == {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": p["metadata"]}
    short = table_for("pods", [p], wide=False, now=NOW)
    assert names(short) == ["Name", "Ready", "Status", "Restarts", "Age"]
    assert short["rows"][0]["cells"] == ["web-1", "2/2", "Running", "2 (60s ago)", "5m"]


@pytest.mark.parametrize(
    ("status", "deleting", "expected"),
    [
        ({"phase": "Pending"}, False, "Pending"),
        ({"phase": "Pending", "containerStatuses": [{"name": "a", "state": {"waiting": {"reason": "ContainerCreating"}}}]},
         False, "ContainerCreating"),
        ({"phase": "Running", "containerStatuses": [{"name": "a", "restartCount": 5, "state": {"waiting": {
            "reason": "CrashLoopBackOff"}}}]}, False, "CrashLoopBackOff"),
        ({"phase": "Succeeded", "containerStatuses": [{"name": "a", "state": {"terminated": {"exitCode": 0,
                                                                                            "reason": "Completed"}}}]},
         False, "Completed"),
        ({"phase": "Failed", "containerStatuses": [{"name": "a", "state": {"terminated": {"exitCode": 137}}}]},
         False, "ExitCode:137"),
        ({"phase": "Running", "containerStatuses": [running()]}, True, "Terminating"),
        ({"phase": "Succeeded"}, True, "Succeeded"),
        ({"phase": "Failed", "reason": "Evicted"}, False, "Evicted"),
        ({"phase": "Pending", "initContainerStatuses": [{"name": "i", "state": {"running": {}}}]}, False, "Init:0/1"),
        ({"phase": "Pending", "initContainerStatuses": [{"name": "i", "state": {"waiting": {"reason": "ErrImagePull"}}}]},
         False, "Init:ErrImagePull"),
        ({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}], "containerStatuses": [
            running(), {"name": "b", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]},
         False, "Running"),
    ],
)
def test_pod_status_like_kubectl(status, deleting, expected):
    p = pod(**status)
    if "initContainerStatuses" in status:
        p["spec"]["initContainers"] = [{"name": "i"}]
    if deleting:
        p["metadata"]["deletionTimestamp"] = "2026-01-01T11:59:00Z"
    assert pod_status_reason(p)[0] == expected


def test_deployment_and_replicaset_rows():
    d = {"metadata": {"name": "web", "creationTimestamp": CREATED},
         "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                  "template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.25"},
                                                       {"name": "log", "image": "busybox"}]}}},
         "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}}
    t = table_for(by_plural("deployments"), [d], now=NOW)
    assert names(t) == ["Name", "Ready", "Up-to-date", "Available", "Age", "Containers", "Images", "Selector"]
    assert t["rows"][0]["cells"] == ["web", "2/3", 3, 2, "5m", "web,log", "nginx:1.25,busybox", "app=web"]
    rs = {**d, "metadata": {"name": "web-abc", "creationTimestamp": CREATED}, "status": {"replicas": 3, "readyReplicas": 1}}
    t = table_for(by_plural("replicasets"), [rs], now=NOW)
    assert names(t)[:5] == ["Name", "Desired", "Current", "Ready", "Age"]
    assert t["rows"][0]["cells"][:5] == ["web-abc", 3, 3, 1, "5m"]


def test_service_rows():
    base = {"metadata": {"name": "web", "creationTimestamp": CREATED}}
    cluster = {**base, "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10", "selector": {"app": "web", "a": "b"},
                                "ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}}
    nodeport = {**base, "spec": {"type": "NodePort", "clusterIP": "10.96.0.11",
                                 "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]}}
    lb = {**base, "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.12", "ports": []}}
    headless = {**base, "spec": {"clusterIP": "None", "externalIPs": ["1.2.3.4"]}}
    t = table_for(by_plural("services"), [cluster, nodeport, lb, headless], now=NOW)
    assert names(t) == ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age", "Selector"]
    assert [r["cells"] for r in t["rows"]] == [
        ["web", "ClusterIP", "10.96.0.10", "<none>", "80/TCP,53/UDP", "5m", "a=b,app=web"],
        ["web", "NodePort", "10.96.0.11", "<none>", "80:30080/TCP", "5m", "<none>"],
        ["web", "LoadBalancer", "10.96.0.12", "<pending>", "<none>", "5m", "<none>"],
        ["web", "ClusterIP", "None", "1.2.3.4", "<none>", "5m", "<none>"],
    ]


def test_endpoints_nodes_namespaces_configmaps_leases():
    ep = {"metadata": {"name": "web", "creationTimestamp": CREATED}, "subsets": [
        {"addresses": [{"ip": "127.0.1.1"}, {"ip": "127.0.1.2"}], "ports": [{"port": 8080}, {"port": 9090, "name": "m"}]}]}
    assert table_for("endpoints", [ep], now=NOW)["rows"][0]["cells"] == [
        "web", "127.0.1.1:8080,127.0.1.2:8080,127.0.1.1:9090 + 1 more...", "5m"]
    assert table_for("endpoints", [{"metadata": {"name": "x"}}], now=NOW)["rows"][0]["cells"] == ["x", "<none>", "<unknown>"]
    node = {"metadata": {"name": "edge-1", "creationTimestamp": CREATED,
                         "labels": {"node-role.kubernetes.io/edge": "", "kubernetes.io/role": "worker"}},
            "spec": {"unschedulable": True},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "addresses": [{"type": "InternalIP", "address": "127.0.1.1"}],
                       "nodeInfo": {"kubeletVersion": "edgeplane-0.1.0", "osImage": "Debian", "kernelVersion": "6.1",
                                    "containerRuntimeVersion": "docker://24"}}}
    t = table_for("nodes", [node], now=NOW)
    assert names(t) == ["Name", "Status", "Roles", "Age", "Version", "Internal-IP", "External-IP", "OS-Image",
                        "Kernel-Version", "Container-Runtime"]
    assert t["rows"][0]["cells"] == ["edge-1", "Ready,SchedulingDisabled", "edge,worker", "5m", "edgeplane-0.1.0",
                                     "127.0.1.1", "<none>", "Debian", "6.1", "docker://24"]
    not_ready = {"metadata": {"name": "n"}, "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}
    assert table_for("nodes", [not_ready, {"metadata": {"name": "m"}}], now=NOW)["rows"][0]["cells"][1] == "NotReady"
    assert table_for("nodes", [{"metadata": {"name": "m"}}], now=NOW)["rows"][0]["cells"][1] == "Unknown"
    ns = {"metadata": {"name": "default", "creationTimestamp": CREATED}, "status": {"phase": "Active"}}
    assert table_for("namespaces", [ns], now=NOW)["rows"][0]["cells"] == ["default", "Active", "5m"]
    cm = {"metadata": {"name": "cfg", "creationTimestamp": CREATED}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": ""}}
    assert table_for("configmaps", [cm], now=NOW)["rows"][0]["cells"] == ["cfg", 3, "5m"]
    lease = {"metadata": {"name": "edge-1", "creationTimestamp": CREATED}, "spec": {"holderIdentity": "edge-1"}}
    assert table_for("leases", [lease], now=NOW)["rows"][0]["cells"] == ["edge-1", "edge-1", "5m"]


def test_event_rows():
    ev = {"metadata": {"name": "web-1.17a", "creationTimestamp": CREATED}, "type": "Warning", "reason": "BackOff",
          "involvedObject": {"kind": "Pod", "name": "web-1", "fieldPath": "spec.containers{a}"},
          "source": {"component": "edge-agent", "host": "edge-1"}, "message": " Back-off restarting ",
          "firstTimestamp": "2026-01-01T11:50:00Z", "lastTimestamp": "2026-01-01T11:59:00Z", "count": 4}
    t = table_for("events", [ev], now=NOW)
    assert names(t) == ["Last Seen", "Type", "Reason", "Object", "Subobject", "Source", "Message", "First Seen",
                        "Count", "Name"]
    assert t["rows"][0]["cells"] == ["60s", "Warning", "BackOff", "pod/web-1", "spec.containers{a}",
                                     "edge-agent, edge-1", "Back-off restarting", "10m", 4, "web-1.17a"]
    short = table_for("events", [ev], wide=False, now=NOW)
    assert short["rows"][0]["cells"] == ["60s", "Warning", "BackOff", "pod/web-1", "Back-off restarting"]


@pytest.mark.parametrize("rtype", RESOURCES, ids=lambda r: r.plural)
def test_every_kind_tabulates_garbage_without_error(rtype):
    objs = [{}, {"metadata": {"name": "x"}, "spec": "bad", "status": [1], "subsets": "x", "data": 3},
            {"metadata": {"name": "y", "creationTimestamp": "not a time"}, "spec": {"containers": "x", "ports": [1]}}]
    t = rtype.table(objs, wide=True, now=NOW)
    assert len(t["rows"]) == 3
    assert all(len(r["cells"]) == len(t["columnDefinitions"]) for r in t["rows"])
    assert table_for(rtype, objs, include_object="None", now=NOW)["rows"][0].keys() == {"cells"}
    assert table_for(rtype, objs[1:2], include_object="Object", now=NOW)["rows"][0]["object"] == objs[1]
