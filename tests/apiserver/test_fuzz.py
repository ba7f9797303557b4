"""Random requests never produce a 500 or a traceback (the API server's last-resort rule)."""

from __future__ import annotations

import json
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
]
PARAMS = ["watch", "limit", "continue", "labelSelector", "fieldSelector", "resourceVersion", "resourceVersionMatch",
          "timeoutSeconds", "gracePeriodSeconds", "propagationPolicy", "dryRun", "fieldValidation", "includeObject",
          "allowWatchBookmarks", "orphanDependents"]
VALUES = ["", "0", "1", "-1", "true", "false", "All", "Strict", "Warn", "x", "app=a", "app in (", "metadata.name=p",
          "spec.nodeName!=n", "99999999999999999999", "Exact", "NotOlderThan", "Orphan", "Foreground", "eyJ2Ijo1fQ", "None"]


def random_value(rng: random.Random, depth: int = 0):
    choice = rng.randrange(9 if depth < 4 else 6)
    if choice == 0:
        return None
    if choice == 1:
        return rng.choice([True, False])
    if choice == 2:
        return rng.randint(-(2**40), 2**40)
    if choice == 3:
        return rng.random() * 1e6
    if choice in (4, 5):
        return rng.choice(["", "p", "Bad_Name", "nginx", "500m", "128Mi", "a" * 300, "x/y", "ü", "$patch", "Node"])
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
    rng = random.Random(20241126)
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
