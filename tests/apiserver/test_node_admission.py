"""A node's write of a pod's status (or annotations) is admitted on the stored pod the write
starts from (Kubernetes' NodeRestriction), not on a read of its own: the authorizer hands the
API app a check that the registry runs on the version each attempt writes. In-process: the API
app over a MemoryStore with the cluster's authorizer and a node's token."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import trio

from controlplane._security import ClusterAuthenticator, make_authorizer
from controlplane.apiserver import create_app
from controlplane.registry import Registry
from raftstore import MemoryStore

ADMIN = "admin-token-for-tests"


async def _call(app: Any, method: str, path: str, token: str, body: Any = None,
                content_type: str = "application/merge-patch+json") -> tuple[int, Any]:
    raw = orjson.dumps(body) if body is not None else b""
    headers = [(b"authorization", f"Bearer {token}".encode()), (b"accept", b"application/json")]
    if body is not None:
        headers += [(b"content-type", content_type.encode()), (b"content-length", str(len(raw)).encode())]
    scope = {"type": "http", "method": method, "path": path, "query_string": b"", "headers": headers}
    sent: list[dict[str, Any]] = []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": raw, "more_body": False}
        await trio.sleep_forever()
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], orjson.loads(sent[1]["body"])


class _Cluster:
    def __init__(self, store: Any) -> None:
        self.store = store
        self.registry = Registry(store)
        self.auth = ClusterAuthenticator(store, ADMIN)
        self.app = create_app(self.registry, store=store, info={}, authenticator=self.auth,
                              authorize=make_authorizer(self.registry))

    async def node_token(self, node: str) -> str:
        _, bearer = await self.auth.create(kind="auth", role="node", name=node)
        return bearer

    async def pod(self, name: str, node: str | None) -> dict[str, Any]:
        spec: dict[str, Any] = {"containers": [{"name": "c", "image": "i"}]}
        if node:
            spec["nodeName"] = node
        return await self.registry.create("pods", "default", {"metadata": {"name": name}, "spec": spec})


@pytest.fixture
async def cluster() -> _Cluster:
    c = _Cluster(MemoryStore())
    await c.registry.ensure_namespaces()
    return c


async def test_a_node_writes_status_and_annotations_of_its_own_pods_only(cluster: _Cluster) -> None:
    token = await cluster.node_token("n1")
    mine = await cluster.pod("mine", "n1")
    await cluster.pod("theirs", "n2")
    await cluster.pod("unbound", None)
    status = {"metadata": {"uid": mine["metadata"]["uid"]}, "status": {"phase": "Running"}}
    code, body = await _call(cluster.app, "PATCH", "/api/v1/namespaces/default/pods/mine/status", token, status)
    assert code == 200 and body["status"]["phase"] == "Running"
    code, body = await _call(cluster.app, "PATCH", "/api/v1/namespaces/default/pods/mine", token,
                             {"metadata": {"annotations": {"a": "b"}}})
    assert code == 200 and body["metadata"]["annotations"] == {"a": "b"}
    code, body = await _call(cluster.app, "PUT", "/api/v1/namespaces/default/pods/mine/status", token, body,
                             content_type="application/json")
    assert code == 200, body
    expected = {
        "theirs": 'pods "theirs" is forbidden: node "n1" can only update pod status for pods with '
                  "spec.nodeName set to itself (this pod is bound to n2)",
        "unbound": 'pods "unbound" is forbidden: node "n1" can only update pod status for pods with '
                   "spec.nodeName set to itself (this pod is bound to no node)",
        "missing": 'pods "missing" is forbidden: node "n1" can only modify pods bound to it',
    }
    for name, message in expected.items():
        for method, path, patch in (("PATCH", f"/api/v1/namespaces/default/pods/{name}/status", status),
                                    ("PATCH", f"/api/v1/namespaces/default/pods/{name}",
                                     {"metadata": {"annotations": {"a": "b"}}})):
            code, body = await _call(cluster.app, method, path, token, patch)
            assert (code, body["reason"], body["message"]) == (403, "Forbidden", message)
    # what the deferred check does not cover is decided as before (its own read, or refused)
    code, body = await _call(cluster.app, "PATCH", "/api/v1/namespaces/default/pods/mine", token,
                             {"metadata": {"labels": {"a": "b"}}})
    assert code == 403
    assert (await cluster.registry.get("pods", "default", "theirs"))["status"].get("phase") == "Pending"


class _StaleFirstRead:
    """A store whose first local read of one key answers an older version (a follower that
    lags): the write's first attempt starts from it."""

    def __init__(self, inner: MemoryStore, key: str, stale: Any) -> None:
        self._inner, self._key, self._stale = inner, key, stale

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def get(self, key: str, *, linearizable: bool = True) -> Any:
        if key == self._key and not linearizable and self._stale is not None:
            stale, self._stale = self._stale, None
            return stale
        return await self._inner.get(key, linearizable=linearizable)


async def test_the_check_is_made_on_the_version_written(cluster: _Cluster) -> None:
    """The pod was deleted and made again under its name, bound to another node; a lagging
    replica still has the old one, bound to n1. n1's status write must be refused: admitted on
    the stale copy, its compare fails, and the retry checks the latest version."""
    token = await cluster.node_token("n1")
    await cluster.pod("p", "n1")
    key = "/registry/pods/default/p"
    old = await cluster.store.get(key)
    await cluster.registry.delete("pods", "default", "p", grace_period_seconds=0)
    await cluster.pod("p", "n2")
    lagging = _Cluster(_StaleFirstRead(cluster.store, key, old))
    code, body = await _call(lagging.app, "PATCH", "/api/v1/namespaces/default/pods/p/status", token,
                             {"status": {"phase": "Failed"}})
    assert code == 403 and "bound to n2" in body["message"]
    assert (await cluster.registry.get("pods", "default", "p"))["status"]["phase"] == "Pending"


async def test_a_check_the_request_cannot_run_is_refused() -> None:
    """An authorizer that answers with a check where the app has no object to run it on
    (a read, a scale write) gets a 500: never a request served without its check."""
    store = MemoryStore()
    registry = Registry(store)
    await registry.ensure_namespaces()
    await registry.create("pods", "default", {"metadata": {"name": "p"},
                                              "spec": {"containers": [{"name": "c", "image": "i"}]}})
    checked: list[Any] = []

    def authorize(*args: Any) -> Any:
        return checked.append

    app = create_app(registry, store=store, info={}, authenticator=ClusterAuthenticator(store, ADMIN),
                     authorize=authorize)
    code, _ = await _call(app, "GET", "/api/v1/namespaces/default/pods/p", ADMIN)
    assert code == 500
    code, _ = await _call(app, "PATCH", "/api/v1/namespaces/default/pods/p/status", ADMIN,
                          {"status": {"phase": "Running"}})
    assert code == 200 and [p["metadata"]["name"] for p in checked] == ["p"]
