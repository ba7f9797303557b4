"""Random requests never produce a 500 or a traceback (the API server's last-resort rule)."""

from __future__ import annotations

import json
import os
import random

from .conftest import Api

PATHS = [
    "/", "/api", "/api/v1", "/apis", "/apis/apps", "/apis/apps/v1", "/apis/policy/v1", "/version", "/healthz",
    "/metrics", "/openapi/v2", "/openapi/v3", "/openapi/v3/api/v1", "/openapi/v3/apis/apps/v1",
    "/api/v1/pods", "/api/v1/namespaces", "/api/v1/namespaces/default", "/api/v1/namespaces/default/status",
    "/api/v1/namespaces/default/pods", "/api/v1/namespaces/default/pods/p", "/api/v1/namespaces/default/pods/p/status",
    "/api/v1/namespaces/default/pods/p/log", "/api/v1/namespaces/default/pods/p/binding",
    "/api/v1/namespaces/default/pods/p/eviction", "/api/v1/namespaces/default/pods/p/scale",
    "/api/v1/watch/namespaces/default/pods", "/api/v1/watch/pods/p", "/api/v1/nodes", "/api/v1/nodes/n/status",
    "/apis/apps/v1/namespaces/default/deployments/d", "/apis/apps/v1/namespaces/default/deployments/d/scale",
    "/apis/apps/v1/deployments", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/l",
    "/api/v1/namespaces/default/services/s", "/api/v1/namespaces/default/configmaps/c",
    "/api/v1/namespaces//pods", "/api/v2/pods", "/apis/apps", "/api/v1/namespaces/default/pods/p/status/extra",
    "/api/v1/namespaces/%00/pods", "/api/v1/namespaces/default/endpoints/e", "/api/v1/namespaces/default/events/ev",
]
CONTENT_TYPES = [
    "application/json", "application/yaml", "application/merge-patch+json", "application/json-patch+json",
    "application/strategic-merge-patch+json", "application/apply-patch+yaml", "text/plain", "", "application/json; charset=utf-8",
    "application/vnd.kubernetes.protobuf",
]
PARAMS = ["watch", "limit", "continue", "labelSelector", "fieldSelector", "resourceVersion", "resourceVersionMatch",
          "timeoutSeconds", "gracePeriodSeconds", "propagationPolicy", "dryRun", "fieldValidation", "includeObject",
          "allowWatchBookmarks", "orphanDependents"]
VALUES = ["", "0", "1", "-1", "true", "false", "All", "Strict", "Warn", "x", "app=a", "app in (", "metadata.name=p",
          "spec.nodeName!=n", "99999999999999999999", "Exact", "NotOlderThan", "Orphan", "Foreground", "eyJ2Ijo1fQ", "None",
          "!", "a,,b", "x=y=z", "a notin ()", "=", "a in (b,", "a>", "a<b", "status.phase==Running", "\\", "a=\u00e9",
          "metadata.name", "a!=", "(", "eyJydiI6MSwic3RhcnQiOjV9"]


def random_value(rng: random.Random, depth: int = 0):
    choice = rng.randrange(9 if depth < 4 else 6)
    if choice == 0:
        return None
    if choice == 1:
        return rng.choice([True, False])
    if choice == 2:
        return rng.choice([rng.randint(-(2**40), 2**40), 2**70, -(2**65), 2**63])
    if choice == 3:
        return rng.choice([rng.random() * 1e6, float("inf"), 1e308])
    if choice in (4, 5):
        return rng.choice(["", "p", "Bad_Name", "nginx", "500m", "128Mi", "a" * 300, "x/y", "ü", "$patch", "Node",
                           "\ud800", "1e400", "\x00"])
    if choice == 6:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = ["metadata", "spec", "status", "name", "namespace", "labels", "containers", "image", "replicas", "kind",
            "apiVersion", "target", "resourceVersion", "finalizers", "selector", "op", "path", "value", "ports",
            "deleteOptions", "preconditions", "uid", "data", "generateName", "nodeName"]
    return {rng.choice(keys): random_value(rng, depth + 1) for _ in range(rng.randrange(5))}


def random_object(rng: random.Random) -> dict:
    obj = {"metadata": {"name": rng.choice(["p", "d", "c", "n", "default", "s", "l", "e", "ev"])}}
    if rng.random() < 0.5:
        obj["spec"] = random_value(rng, 1)
    for _ in range(rng.randrange(4)):
        obj[rng.choice(["kind", "apiVersion", "spec", "status", "target", "data", "metadata"])] = random_value(rng, 1)
    return obj


async def test_random_requests_never_500(api: Api) -> None:
    rng = random.Random(int(os.environ.get("API_FUZZ_SEED", "20241126")))
    c = api.client
    # some real objects so that updates, patches and deletes reach deep code paths
    await c.post("/api/v1/namespaces/default/pods", json={
        "metadata": {"name": "p", "labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}})
    await c.post("/apis/apps/v1/namespaces/default/deployments", json={
        "metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"a": "b"}},
                                            "template": {"metadata": {"labels": {"a": "b"}},
                                                         "spec": {"containers": [{"name": "c", "image": "i"}]}}}})
    await c.post("/api/v1/namespaces/default/configmaps", json={"metadata": {"name": "c"}})
    failures = []
    for _ in range(600):
        method = rng.choice(["GET", "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
        path = rng.choice(PATHS)
        params = {rng.choice(PARAMS): rng.choice(VALUES) for _ in range(rng.randrange(4))}
        if params.get("watch") in ("1", "true") or "watch/" in path:
            params["timeoutSeconds"] = "1"
            params.pop("allowWatchBookmarks", None)
        headers = {"Content-Type": rng.choice(CONTENT_TYPES)}
        if rng.random() < 0.3:
            headers["Accept"] = rng.choice(["application/json;as=Table;v=v1;g=meta.k8s.io", "application/yaml",
                                            "application/vnd.kubernetes.protobuf", "*/*", "text/html"])
        kind = rng.randrange(5)
        if kind == 0:
            content = json.dumps(random_object(rng)).encode()
        elif kind == 1:
            content = json.dumps(random_value(rng)).encode()
        elif kind == 2:
            content = bytes(rng.randrange(256) for _ in range(rng.randrange(50)))
            if rng.random() < 0.5:  # a protobuf envelope around random bytes
                content = b"k8s\x00" + content
        elif kind == 3:
            content = json.dumps([{"op": rng.choice(["add", "remove", "replace", "move", "copy", "test", "bogus"]),
                                   "path": rng.choice(["/metadata/labels/x", "/spec", "", "/a/b/c", "/metadata/name", "~"]),
                                   "value": random_value(rng)}]).encode()
        else:
            content = b""
        r = await c.request(method, path, params=params, content=content, headers=headers)
        if r.status_code >= 500 and r.status_code not in (501, 503, 504):
            failures.append((method, path, params, headers, content[:200], r.status_code, r.text[:300]))
        else:
            assert "Traceback" not in r.text
    assert not failures, failures[:5]


TEMPLATES = {
    "/api/v1/namespaces/default/pods": {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "m", "labels": {"a": "b"}},
        "spec": {"containers": [{"name": "c", "image": "nginx", "ports": [{"containerPort": 80}],
                                 "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}],
                 "nodeSelector": {"x": "y"}, "tolerations": [{"key": "k", "operator": "Exists"}]},
    },
    "/apis/apps/v1/namespaces/default/deployments": {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "m"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"a": "b"}},
                 "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
                 "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}},
    },
    "/api/v1/namespaces/default/services": {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "m"},
        "spec": {"selector": {"a": "b"}, "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}], "type": "NodePort"},
    },
    "/api/v1/nodes": {
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": "m"},
        "status": {"capacity": {"cpu": "2", "memory": "1Gi", "pods": "110"},
                   "conditions": [{"type": "Ready", "status": "True"}]},
    },
    "/apis/coordination.k8s.io/v1/namespaces/default/leases": {
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "m"},
        "spec": {"holderIdentity": "h", "leaseDurationSeconds": 40, "renewTime": "2024-01-01T00:00:00.000000Z"},
    },
    "/api/v1/namespaces/default/endpoints": {
        "apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "m"},
        "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"port": 80}]}],
    },
}


def _mutate(rng: random.Random, obj: object) -> object:
    """Replace, delete or retype one random node of a JSON tree."""
    paths: list[list] = []

    def walk(node: object, path: list) -> None:
        paths.append(path)
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, [*path, k])
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, [*path, i])

    walk(obj, [])
    path = rng.choice(paths[1:])
    parent = obj
    for part in path[:-1]:
        parent = parent[part]  # type: ignore[index]
    if rng.random() < 0.2 and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = random_value(rng)  # type: ignore[index]
    return obj


async def test_mutated_valid_objects_never_500(api: Api) -> None:
    rng = random.Random(int(os.environ.get("API_FUZZ_SEED", "7")))
    c = api.client
    failures = []
    for i in range(300):
        path, template = rng.choice(list(TEMPLATES.items()))
        body = json.loads(json.dumps(template))
        body["metadata"]["name"] = f"m{i}"
        for _ in range(rng.randrange(1, 4)):
            _mutate(rng, body)
        r = await c.post(path, content=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        if r.status_code >= 500:
            failures.append(("POST", path, body, r.status_code, r.text[:200]))
            continue
        if r.status_code == 201:
            name = r.json()["metadata"]["name"]
            update = _mutate(rng, r.json())
            r = await c.put(f"{path}/{name}", content=json.dumps(update).encode(),
                            headers={"Content-Type": "application/json"})
            if r.status_code >= 500:
                failures.append(("PUT", path, update, r.status_code, r.text[:200]))
            patch = _mutate(rng, json.loads(json.dumps(template)))
            kind = rng.choice(["application/merge-patch+json", "application/strategic-merge-patch+json"])
            r = await c.patch(f"{path}/{name}", content=json.dumps(patch), headers={"Content-Type": kind})
            if r.status_code >= 500:
                failures.append(("PATCH", path, patch, r.status_code, r.text[:200]))
    assert not failures, failures[:3]
