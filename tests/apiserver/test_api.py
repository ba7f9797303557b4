"""The HTTP API against an in-process server on a MemoryStore (real hypercorn, real sockets).

Expected codes, reasons and messages are Kubernetes' (k8s.io/apimachinery/pkg/api/errors,
the generic registry's update/delete rules, the watch protocol).
"""

from __future__ import annotations

import json

import httpx
import pytest
import trio

from controlplane import _watchcache

from .conftest import VIEWER_TOKEN, Api, start_api

POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "my-nginx", "labels": {"app": "nginx"}},
    "spec": {"containers": [{"name": "nginx", "image": "nginx:1.7.9", "ports": [{"containerPort": 80}]}]},
}

PODS = "/api/v1/namespaces/default/pods"


def pod(name: str, **labels: str) -> dict:
    return {**POD, "metadata": {"name": name, "labels": labels or {"app": "nginx"}}}


def deployment(name: str, replicas: int = 1) -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": "c", "image": "nginx"}]}},
        },
    }


async def test_seed_pod_create_get_list_delete(api: Api) -> None:
    c = api.client
    r = await c.post(PODS, json=POD)
    assert r.status_code == 201, r.text
    created = r.json()
    meta = created["metadata"]
    assert meta["namespace"] == "default"
    assert len(meta["uid"]) == 36 and meta["creationTimestamp"].endswith("Z")
    assert meta["generation"] == 1
    assert created["status"]["phase"] == "Pending"
    got = (await c.get(f"{PODS}/my-nginx")).json()
    assert got["metadata"]["resourceVersion"] == meta["resourceVersion"]
    listed = (await c.get("/api/v1/pods")).json()
    assert listed["kind"] == "PodList"
    assert [p["metadata"]["name"] for p in listed["items"]] == ["my-nginx"]
    assert int(listed["metadata"]["resourceVersion"]) >= int(meta["resourceVersion"])
    r = await c.post(PODS, json=POD)
    assert r.status_code == 409
    assert r.json()["reason"] == "AlreadyExists"
    assert r.json()["message"] == 'pods "my-nginx" already exists'
    r = await c.delete(f"{PODS}/my-nginx")
    assert r.status_code == 200  # unbound pod: deleted at once
    r = await c.get(f"{PODS}/my-nginx")
    assert r.status_code == 404
    assert r.json()["message"] == 'pods "my-nginx" not found'


async def test_yaml_body_and_generate_name(api: Api) -> None:
    body = "apiVersion: v1\nkind: ConfigMap\nmetadata: {generateName: cfg-}\ndata: {when: 2024-01-01T00:00:00Z}\n"
    r = await api.client.post("/api/v1/namespaces/default/configmaps", content=body,
                              headers={"Content-Type": "application/yaml"})
    assert r.status_code == 201, r.text
    obj = r.json()
    name = obj["metadata"]["name"]
    assert name.startswith("cfg-") and len(name) == len("cfg-") + 5
    assert obj["data"]["when"] == "2024-01-01T00:00:00Z"  # a string, not a timestamp


async def test_namespace_must_exist_and_not_terminate(api: Api) -> None:
    c = api.client
    r = await c.post("/api/v1/namespaces/nope/pods", json=POD)
    assert r.status_code == 404
    assert r.json()["message"] == 'namespaces "nope" not found'
    assert (await c.post("/api/v1/namespaces", json={"metadata": {"name": "team"}})).status_code == 201
    assert (await c.post("/api/v1/namespaces/team/pods", json=POD)).status_code == 201
    # a bound pod keeps the namespace terminating until its agent removes it
    await api.registry.bind("team", "my-nginx", {"target": {"name": "node-1"}})
    r = await c.delete("/api/v1/namespaces/team")
    assert r.status_code == 200
    assert r.json()["status"]["phase"] == "Terminating"
    r = await c.post("/api/v1/namespaces/team/configmaps", json={"metadata": {"name": "x"}})
    assert r.status_code == 403
    assert "because it is being terminated" in r.json()["message"]
    r = await c.delete("/api/v1/namespaces/team/pods/my-nginx", params={"gracePeriodSeconds": "0"})
    assert r.status_code == 200
    assert await api.registry.finalize_namespace("team")
    assert (await c.get("/api/v1/namespaces/team")).status_code == 404


async def test_update_conflict_and_generation(api: Api) -> None:
    c = api.client
    created = (await c.post("/apis/apps/v1/namespaces/default/deployments", json=deployment("web"))).json()
    stale = json.loads(json.dumps(created))
    created["spec"]["replicas"] = 3
    r = await c.put("/apis/apps/v1/namespaces/default/deployments/web", json=created)
    assert r.status_code == 200, r.text
    updated = r.json()
    assert updated["metadata"]["generation"] == 2
    assert int(updated["metadata"]["resourceVersion"]) > int(stale["metadata"]["resourceVersion"])
    stale["spec"]["replicas"] = 5
    r = await c.put("/apis/apps/v1/namespaces/default/deployments/web", json=stale)
    assert r.status_code == 409
    assert r.json()["reason"] == "Conflict"
    assert r.json()["message"] == (
        'Operation cannot be fulfilled on deployments.apps "web": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )
    # labels only: no spec change, generation stays
    updated["metadata"]["labels"] = {"tier": "front"}
    again = (await c.put("/apis/apps/v1/namespaces/default/deployments/web", json=updated)).json()
    assert again["metadata"]["generation"] == 2


async def test_status_subresource_separation(api: Api) -> None:
    c = api.client
    created = (await c.post("/apis/apps/v1/namespaces/default/deployments", json=deployment("web"))).json()
    created["status"] = {"replicas": 7}
    created["spec"]["replicas"] = 2
    main = (await c.put("/apis/apps/v1/namespaces/default/deployments/web", json=created)).json()
    assert main["spec"]["replicas"] == 2 and main.get("status", {}).get("replicas") is None
    main["status"] = {"replicas": 2, "readyReplicas": 1}
    main["spec"]["replicas"] = 9
    st = await c.put("/apis/apps/v1/namespaces/default/deployments/web/status", json=main)
    assert st.status_code == 200, st.text
    assert st.json()["status"]["replicas"] == 2 and st.json()["spec"]["replicas"] == 2
    got = (await c.get("/apis/apps/v1/namespaces/default/deployments/web/status")).json()
    assert got["status"]["readyReplicas"] == 1


async def test_scale_subresource(api: Api) -> None:
    c = api.client
    await c.post("/apis/apps/v1/namespaces/default/deployments", json=deployment("web", 1))
    scale = (await c.get("/apis/apps/v1/namespaces/default/deployments/web/scale")).json()
    assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"]["replicas"] == 1 and scale["status"]["selector"] == "app=web"
    r = await c.patch("/apis/apps/v1/namespaces/default/deployments/web/scale",
                      content=json.dumps({"spec": {"replicas": 4}}),
                      headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text
    assert r.json()["spec"]["replicas"] == 4
    scale = r.json()
    scale["spec"]["replicas"] = 6
    r = await c.put("/apis/apps/v1/namespaces/default/deployments/web/scale", json=scale)
    assert r.status_code == 200 and r.json()["spec"]["replicas"] == 6
    assert (await c.get("/apis/apps/v1/namespaces/default/deployments/web")).json()["spec"]["replicas"] == 6
    scale["spec"]["replicas"] = 1  # stale resourceVersion now
    assert (await c.put("/apis/apps/v1/namespaces/default/deployments/web/scale", json=scale)).status_code == 409


async def test_patch_types(api: Api) -> None:
    c = api.client
    await c.post(PODS, json=POD)
    r = await c.patch(f"{PODS}/my-nginx", content=json.dumps({"metadata": {"labels": {"tier": "web"}}}),
                      headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text
    assert r.json()["metadata"]["labels"] == {"app": "nginx", "tier": "web"}
    r = await c.patch(f"{PODS}/my-nginx", content=json.dumps([{"op": "remove", "path": "/metadata/labels/tier"}]),
                      headers={"Content-Type": "application/json-patch+json"})
    assert r.status_code == 200, r.text
    assert r.json()["metadata"]["labels"] == {"app": "nginx"}
    # strategic merge: containers merge by name
    r = await c.patch(f"{PODS}/my-nginx",
                      content=json.dumps({"spec": {"containers": [{"name": "nginx", "image": "nginx:1.25"}]}}),
                      headers={"Content-Type": "application/strategic-merge-patch+json"})
    assert r.status_code == 200, r.text
    containers = r.json()["spec"]["containers"]
    assert [(x["name"], x["image"], x["ports"][0]["containerPort"]) for x in containers] == [("nginx", "nginx:1.25", 80)]
    r = await c.patch(f"{PODS}/my-nginx", content=b"{}", headers={"Content-Type": "application/apply-patch+yaml"})
    assert r.status_code == 415 and "server-side apply" in r.json()["message"]
    # a patch carrying a stale resourceVersion is a conflict
    r = await c.patch(f"{PODS}/my-nginx", content=json.dumps({"metadata": {"resourceVersion": "1", "labels": {"a": "b"}}}),
                      headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 409


async def test_label_and_field_selectors_and_paging(api: Api) -> None:
    c = api.client
    for i in range(7):
        assert (await c.post(PODS, json=pod(f"p{i}", app="a" if i % 2 else "b"))).status_code == 201
    await api.registry.bind("default", "p3", {"target": {"name": "node-x"}})
    names = lambda r: [p["metadata"]["name"] for p in r.json()["items"]]  # noqa: E731
    assert names(await c.get(PODS, params={"labelSelector": "app=a"})) == ["p1", "p3", "p5"]
    assert names(await c.get(PODS, params={"labelSelector": "app in (b),app!=zz"})) == ["p0", "p2", "p4", "p6"]
    assert names(await c.get("/api/v1/pods", params={"fieldSelector": "spec.nodeName=node-x"})) == ["p3"]
    assert names(await c.get(PODS, params={"fieldSelector": "metadata.name!=p0", "labelSelector": "app=b"})) == ["p2", "p4", "p6"]
    r = await c.get(PODS, params={"fieldSelector": "spec.bogus=1"})
    assert r.status_code == 400
    r = await c.get(PODS, params={"labelSelector": "app in (("})
    assert r.status_code == 400
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        params = {"limit": "3"}
        if token:
            params["continue"] = token
        page = (await c.get(PODS, params=params)).json()
        pages += 1
        seen += [p["metadata"]["name"] for p in page["items"]]
        token = page["metadata"].get("continue")
        if not token:
            break
    assert seen == [f"p{i}" for i in range(7)] and pages == 3
    # limit with a selector fills pages with matches
    page = (await c.get(PODS, params={"limit": "2", "labelSelector": "app=b"})).json()
    assert names_list(page) == ["p0", "p2"] and page["metadata"]["continue"]
    r = await c.get(PODS, params={"limit": "2", "continue": "garbage!!"})
    assert r.status_code == 400


def names_list(page: dict) -> list[str]:
    return [p["metadata"]["name"] for p in page["items"]]


async def test_list_pages_over_http_show_the_first_pages_state(api: Api) -> None:
    # Kubernetes API conventions, "Retrieving large results sets in chunks": each chunk is served
    # at the first chunk's resourceVersion, whatever changed in between; selectors apply to the
    # objects as they were then.
    c = api.client
    for i in range(8):
        assert (await c.post(PODS, json=pod(f"p{i}", app="a" if i % 2 else "b"))).status_code == 201
    seen = lambda items: [(p["metadata"]["name"], p["metadata"]["resourceVersion"], p["metadata"]["labels"])  # noqa: E731
                          for p in items]
    expected = (await c.get(PODS)).json()
    expected_a = (await c.get(PODS, params={"labelSelector": "app=a"})).json()
    first = (await c.get(PODS, params={"limit": "3"})).json()
    first_a = (await c.get(PODS, params={"limit": "2", "labelSelector": "app=a"})).json()
    rv = first["metadata"]["resourceVersion"]
    assert rv == expected["metadata"]["resourceVersion"] == first_a["metadata"]["resourceVersion"]
    # between the pages: a delete, a create, label changes both ways, a delete and re-create
    assert (await c.delete(f"{PODS}/p5", params={"gracePeriodSeconds": "0"})).status_code == 200
    assert (await c.post(PODS, json=pod("p45", app="a"))).status_code == 201
    for name, app in (("p3", "b"), ("p4", "a")):
        r = await c.patch(f"{PODS}/{name}", content=json.dumps({"metadata": {"labels": {"app": app}}}),
                          headers={"Content-Type": "application/merge-patch+json"})
        assert r.status_code == 200
    assert (await c.delete(f"{PODS}/p7", params={"gracePeriodSeconds": "0"})).status_code == 200
    assert (await c.post(PODS, json=pod("p7", app="a"))).status_code == 201

    async def rest(page: dict, params: dict) -> list[dict]:
        items = list(page["items"])
        while page["metadata"].get("continue"):
            r = await c.get(PODS, params={**params, "continue": page["metadata"]["continue"]})
            assert r.status_code == 200, r.text
            page = r.json()
            assert page["metadata"]["resourceVersion"] == rv
            items += page["items"]
        return items

    assert seen(await rest(first, {"limit": "3"})) == seen(expected["items"])
    assert seen(await rest(first_a, {"limit": "2", "labelSelector": "app=a"})) == seen(expected_a["items"])
    assert names_list(expected_a) == ["p1", "p3", "p5", "p7"]
    # Kubernetes rejects a resourceVersion (other than "0") or resourceVersionMatch with continue
    r = await c.get(PODS, params={"limit": "3", "continue": first["metadata"]["continue"], "resourceVersion": rv})
    assert r.status_code == 400 and r.json()["message"] == "specifying resource version is not allowed when using continue"
    r = await c.get(PODS, params={"limit": "3", "continue": first["metadata"]["continue"], "resourceVersion": "0",
                                  "resourceVersionMatch": "NotOlderThan"})
    assert r.status_code == 400 and r.json()["message"] == "resourceVersionMatch is forbidden when continue is provided"


async def test_continue_token_expires_when_compacted(nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch) -> None:
    # Both histories a page can be read from are short here: the store's (5 events) and the
    # watch cache's (3 events of each resource).
    monkeypatch.setattr(_watchcache, "HISTORY_PER_RESOURCE", 3)
    api = await start_api(nursery, history_limit=5)
    c = api.client
    for i in range(4):
        await c.post(PODS, json=pod(f"p{i}"))
    token = (await c.get(PODS, params={"limit": "2"})).json()["metadata"]["continue"]
    for i in range(10):
        await c.post(PODS, json=pod(f"q{i}"))
    r = await c.get(PODS, params={"limit": "2", "continue": token})
    assert r.status_code == 410 and r.json()["reason"] == "Expired"
    # kubectl and client-go show this message; it tells the user what to do (start over, or
    # continue inconsistently with the Status' token: test_list_continue_expired.py)
    assert r.json()["message"] == (
        "The provided continue parameter is too old to display a consistent list result. "
        "You can start a new list without the continue parameter, or use the continue token in this "
        "response to retrieve the remainder of the results. Continuing with the provided token results "
        "in an inconsistent list - objects that were created, modified, or deleted between the time the "
        "first chunk was returned and now may show up in the list.")
    assert r.json()["metadata"]["continue"]
    await c.aclose()


async def read_events(api: Api, path: str, params: dict, count: int, timeout: float = 10) -> list[dict]:
    events: list[dict] = []
    with trio.fail_after(timeout):
        async with api.client.stream("GET", path, params={**params, "watch": "true"}) as r:
            assert r.status_code == 200
            async for line in r.aiter_lines():
                if line.strip():
                    events.append(json.loads(line))
                if len(events) >= count:
                    break
    return events


async def test_watch_resume_selectors_and_410(nursery: trio.Nursery) -> None:
    api = await start_api(nursery, history_limit=20)
    c = api.client
    start = (await c.get(PODS)).json()["metadata"]["resourceVersion"]
    await c.post(PODS, json=pod("w1", app="a"))
    await c.post(PODS, json=pod("w2", app="b"))
    # moving w1 out of the selector is a DELETED for a selector watch, MODIFIED for a plain one
    await c.patch(f"{PODS}/w1", content=json.dumps({"metadata": {"labels": {"app": "z"}}}),
                  headers={"Content-Type": "application/merge-patch+json"})
    await c.delete(f"{PODS}/w2")
    plain = await read_events(api, PODS, {"resourceVersion": start}, 4)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in plain] == [
        ("ADDED", "w1"), ("ADDED", "w2"), ("MODIFIED", "w1"), ("DELETED", "w2")]
    revisions = [int(e["object"]["metadata"]["resourceVersion"]) for e in plain]
    assert revisions == sorted(revisions) and len(set(revisions)) == 4
    selected = await read_events(api, PODS, {"resourceVersion": start, "labelSelector": "app=a"}, 2)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in selected] == [("ADDED", "w1"), ("DELETED", "w1")]
    assert selected[1]["object"]["metadata"]["labels"] == {"app": "a"}  # last matching content
    assert selected[1]["object"]["metadata"]["resourceVersion"] == str(revisions[2])
    # resume from the middle: only later events
    resumed = await read_events(api, PODS, {"resourceVersion": str(revisions[1])}, 2)
    assert [e["type"] for e in resumed] == ["MODIFIED", "DELETED"]
    # no resourceVersion: current state first
    initial = await read_events(api, PODS, {}, 1)
    assert initial[0]["type"] == "ADDED" and initial[0]["object"]["metadata"]["name"] == "w1"
    # compacted history: an ERROR event with a 410 Status
    for i in range(30):
        await c.post("/api/v1/namespaces/default/configmaps", json={"metadata": {"name": f"c{i}"}})
    expired = await read_events(api, PODS, {"resourceVersion": start}, 1)
    assert expired[0]["type"] == "ERROR"
    assert expired[0]["object"]["code"] == 410 and expired[0]["object"]["reason"] == "Expired"
    assert expired[0]["object"]["message"].startswith(f"too old resource version: {start}")
    await c.aclose()


async def test_watch_bookmarks_and_timeout(api: Api) -> None:
    c = api.client
    rv = (await c.get(PODS)).json()["metadata"]["resourceVersion"]
    # changes elsewhere advance the bookmark although this watch sees no events
    for i in range(3):
        await c.post("/api/v1/namespaces/default/configmaps", json={"metadata": {"name": f"b{i}"}})
    events = await read_events(api, PODS, {"resourceVersion": rv, "allowWatchBookmarks": "true"}, 1)
    assert events[0]["type"] == "BOOKMARK"
    assert int(events[0]["object"]["metadata"]["resourceVersion"]) > int(rv)
    with trio.fail_after(10):
        r = await c.get(PODS, params={"watch": "1", "timeoutSeconds": "1", "resourceVersion": rv})
    assert r.status_code == 200 and r.text == ""


async def test_watch_stream_sees_live_changes(api: Api) -> None:
    c = api.client
    rv = (await c.get(PODS)).json()["metadata"]["resourceVersion"]
    got: list[dict] = []

    async def watcher(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with c.stream("GET", "/api/v1/watch/namespaces/default/pods", params={"resourceVersion": rv}) as r:
            task_status.started()
            async for line in r.aiter_lines():
                got.append(json.loads(line))
                if len(got) == 2:
                    return

    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            await n.start(watcher)
            await c.post(PODS, json=pod("live1"))
            await c.post(PODS, json=pod("live2"))
    assert [e["object"]["metadata"]["name"] for e in got] == ["live1", "live2"]


async def test_table_output(api: Api) -> None:
    c = api.client
    await c.post(PODS, json=POD)
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
    r = await c.get(PODS, headers={"Accept": accept})
    assert r.status_code == 200
    table = r.json()
    assert table["kind"] == "Table"
    columns = [col["name"] for col in table["columnDefinitions"]]
    assert columns[:2] == ["Name", "Ready"]
    assert table["rows"][0]["cells"][0] == "my-nginx"
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    r = await c.get(PODS, headers={"Accept": accept}, params={"includeObject": "Object"})
    assert r.json()["rows"][0]["object"]["kind"] == "Pod"
    r = await c.get(PODS, headers={"Accept": "application/vnd.kubernetes.protobuf"})
    assert r.status_code == 406


async def test_graceful_pod_deletion_and_finalizers(api: Api) -> None:
    c = api.client
    await c.post(PODS, json=POD)
    await api.registry.bind("default", "my-nginx", {"target": {"name": "node-1"}})
    r = await c.delete(f"{PODS}/my-nginx")
    assert r.status_code == 200
    marked = r.json()["metadata"]
    assert marked["deletionGracePeriodSeconds"] == 30 and marked["deletionTimestamp"]
    assert (await c.get(f"{PODS}/my-nginx")).status_code == 200  # the agent has not confirmed yet
    r = await c.delete(f"{PODS}/my-nginx", params={"gracePeriodSeconds": "0"})
    assert r.status_code == 200
    assert (await c.get(f"{PODS}/my-nginx")).status_code == 404
    # finalizers hold an object until the last one is removed
    cm = {"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}
    await c.post("/api/v1/namespaces/default/configmaps", json=cm)
    r = await c.delete("/api/v1/namespaces/default/configmaps/held")
    assert r.status_code == 200 and r.json()["metadata"]["deletionTimestamp"]
    r = await c.patch("/api/v1/namespaces/default/configmaps/held",
                      content=json.dumps({"metadata": {"finalizers": None}}),
                      headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text
    assert (await c.get("/api/v1/namespaces/default/configmaps/held")).status_code == 404
    # foreground propagation records the foregroundDeletion finalizer for the GC controller
    await c.post("/apis/apps/v1/namespaces/default/deployments", json=deployment("fg"))
    r = await c.request("DELETE", "/apis/apps/v1/namespaces/default/deployments/fg",
                        content=json.dumps({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground"}),
                        headers={"Content-Type": "application/json"})
    assert r.status_code == 200 and r.json()["metadata"]["finalizers"] == ["foregroundDeletion"]


async def test_delete_preconditions(api: Api) -> None:
    c = api.client
    created = (await c.post(PODS, json=POD)).json()
    body = {"preconditions": {"uid": "00000000-0000-0000-0000-000000000000"}}
    r = await c.request("DELETE", f"{PODS}/my-nginx", content=json.dumps(body), headers={"Content-Type": "application/json"})
    assert r.status_code == 409 and "Precondition failed: UID in precondition" in r.json()["message"]
    body = {"preconditions": {"uid": created["metadata"]["uid"], "resourceVersion": created["metadata"]["resourceVersion"]}}
    r = await c.request("DELETE", f"{PODS}/my-nginx", content=json.dumps(body), headers={"Content-Type": "application/json"})
    assert r.status_code == 200


async def test_deletecollection(api: Api) -> None:
    c = api.client
    for i in range(4):
        await c.post("/api/v1/namespaces/default/configmaps", json={"metadata": {"name": f"c{i}", "labels": {"x": str(i % 2)}}})
    r = await c.delete("/api/v1/namespaces/default/configmaps", params={"labelSelector": "x=1"})
    assert r.status_code == 200
    assert sorted(i["metadata"]["name"] for i in r.json()["items"]) == ["c1", "c3"]
    left = (await c.get("/api/v1/namespaces/default/configmaps")).json()
    assert names_list(left) == ["c0", "c2"]


async def test_binding_and_eviction_subresources(api: Api) -> None:
    c = api.client
    await c.post(PODS, json=POD)
    r = await c.post(f"{PODS}/my-nginx/binding", json={"apiVersion": "v1", "kind": "Binding",
                                                       "metadata": {"name": "my-nginx"}, "target": {"kind": "Node", "name": "n1"}})
    assert r.status_code == 201, r.text
    got = (await c.get(f"{PODS}/my-nginx")).json()
    assert got["spec"]["nodeName"] == "n1"
    r = await c.post(f"{PODS}/my-nginx/binding", json={"target": {"name": "n2"}})
    assert r.status_code == 409 and "already assigned" in r.json()["message"]
    r = await c.post(f"{PODS}/my-nginx/eviction", json={"apiVersion": "policy/v1", "kind": "Eviction",
                                                        "metadata": {"name": "my-nginx"}, "deleteOptions": {"gracePeriodSeconds": 0}})
    assert r.status_code == 201
    assert (await c.get(f"{PODS}/my-nginx")).status_code == 404


async def test_log_without_proxy_is_501(api: Api) -> None:
    c = api.client
    await c.post(PODS, json=POD)
    await api.registry.bind("default", "my-nginx", {"target": {"name": "n1"}})
    r = await c.get(f"{PODS}/my-nginx/log")
    assert r.status_code == 501 and "log proxy" in r.json()["message"]
    assert (await c.get(f"{PODS}/absent/log")).status_code == 404


async def test_log_proxy_streams(nursery: trio.Nursery) -> None:
    calls = []

    async def proxy(namespace: str, name: str, params: dict):
        calls.append((namespace, name, params))
        for line in (b"hello\n", b"world\n"):
            yield line

    api = await start_api(nursery, log_proxy=proxy)
    await api.client.post(PODS, json=POD)
    await api.registry.bind("default", "my-nginx", {"target": {"name": "n1"}})
    r = await api.client.get(f"{PODS}/my-nginx/log", params={"container": "nginx", "tailLines": "5"})
    assert r.status_code == 200 and r.text == "hello\nworld\n"
    assert calls == [("default", "my-nginx", {"container": "nginx", "tailLines": "5"})]
    await api.client.aclose()


async def test_validation_is_422_with_causes(api: Api) -> None:
    bad = {**POD, "metadata": {"name": "Bad_Name"}, "spec": {"containers": [{"name": "c", "image": "x",
                                                                              "resources": {"limits": {"cpu": "lots"}}}]}}
    r = await api.client.post(PODS, json=bad)
    assert r.status_code == 422
    status = r.json()
    assert status["reason"] == "Invalid" and status["details"]["kind"] == "Pod"
    fields = {cause["field"] for cause in status["details"]["causes"]}
    assert "metadata.name" in fields
    assert "spec.containers[0].resources.limits[cpu]" in fields or any("cpu" in f for f in fields)
    assert status["message"].startswith('Pod "Bad_Name" is invalid: ')


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "code", "reason", "fragment"),
    [
        ("POST", PODS, {"content": b"{not json", "headers": {"Content-Type": "application/json"}}, 400, "BadRequest", "not valid JSON"),
        ("POST", PODS, {"content": b"[" * 5000 + b"]" * 5000, "headers": {"Content-Type": "application/json"}}, 400, "BadRequest", "nested deeper"),
        ("POST", PODS, {"content": b"a:\n" + b"".join(b"  " * i + b"- \n" for i in range(1, 200)), "headers": {"Content-Type": "application/yaml"}}, 400, "BadRequest", "nested deeper"),
        ("POST", PODS, {"content": b"a: &x [1]\nb: *x\n", "headers": {"Content-Type": "application/yaml"}}, 400, "BadRequest", "anchors and aliases"),
        ("POST", PODS, {"content": b"x=1", "headers": {"Content-Type": "application/x-www-form-urlencoded"}}, 415, "UnsupportedMediaType", "unknown format"),
        ("POST", PODS, {"content": b"{}", "headers": {"Content-Type": "application/vnd.kubernetes.protobuf"}}, 400, "BadRequest", "magic prefix"),
        ("POST", PODS, {"content": b"k8s\x00\x0a\xff\xff", "headers": {"Content-Type": "application/vnd.kubernetes.protobuf"}}, 400, "BadRequest", "could not be decoded"),
        ("POST", PODS, {"content": b"k8s\x00\x0a\x0c\x0a\x02v1\x12\x06Secret", "headers": {"Content-Type": "application/vnd.kubernetes.protobuf"}}, 415, "UnsupportedMediaType", "v1 Secret"),
        ("POST", PODS, {"content": b"{}", "headers": {"Content-Type": "application/cbor"}}, 415, "UnsupportedMediaType", "application/json"),
        ("POST", "/api/v1/namespaces/default/widgets", {"json": {}}, 404, "NotFound", "could not find the requested resource"),
        ("GET", "/apis/nope.example.com/v1/things", {}, 404, "NotFound", "could not find"),
        ("GET", "/api/v1/pods/some-name", {}, 404, "NotFound", "could not find"),
        ("PUT", PODS, {"json": POD}, 405, "MethodNotAllowed", "does not allow"),
        ("POST", f"{PODS}/x", {"json": POD}, 405, "MethodNotAllowed", "does not allow"),
        ("POST", "/api/v1/namespaces/other/pods", {"json": {**POD, "metadata": {"name": "a", "namespace": "default"}}}, 400, "BadRequest", "does not match the namespace"),
        ("POST", PODS, {"json": {**POD, "kind": "Service"}}, 400, "BadRequest", "does not match"),
        ("POST", PODS, {"json": [1, 2]}, 400, "BadRequest", "must be a Pod"),
        ("POST", PODS, {"json": {"kind": "Pod", "metadata": {}}}, 422, "Invalid", "name or generateName is required"),
        ("GET", PODS, {"params": {"limit": "ten"}}, 400, "BadRequest", "not an integer"),
        ("GET", PODS, {"params": {"watch": "maybe"}}, 400, "BadRequest", "expected true or false"),
        ("GET", PODS, {"params": {"resourceVersion": "abc"}}, 400, "BadRequest", "resource version"),
        ("POST", PODS, {"json": POD, "params": {"dryRun": "Some"}}, 400, "BadRequest", "Invalid dry run value"),
        ("DELETE", f"{PODS}/x", {"params": {"propagationPolicy": "Sideways"}}, 400, "BadRequest", "Unsupported value"),
    ],
)
async def test_bad_input(api: Api, method: str, path: str, kwargs: dict, code: int, reason: str, fragment: str) -> None:
    if method == "DELETE":
        await api.client.post(PODS, json={**POD, "metadata": {"name": "x"}})
    r = await api.client.request(method, path, **kwargs)
    assert r.status_code == code, r.text
    status = r.json()
    assert status["kind"] == "Status" and status["reason"] == reason and status["code"] == code
    assert fragment in status["message"], status["message"]


async def test_body_over_3mib_is_413_before_reading(api: Api) -> None:
    # Declared too large: answered from the headers alone.
    big = b'{"a":"' + b"x" * (3 * 1024 * 1024 + 10) + b'"}'
    r = await api.client.post(PODS, content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["reason"] == "RequestEntityTooLarge"

    # Chunked (no Content-Length): cut off once the limit is passed.
    async def chunks():
        for _ in range(64):
            yield b"x" * (64 * 1024)

    r = await api.client.post(PODS, content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413


async def test_unknown_fields_strict_and_warn(api: Api) -> None:
    body = {**POD, "spec": {**POD["spec"], "bogusField": 1}}
    r = await api.client.post(PODS, json=body, params={"fieldValidation": "Strict"})
    assert r.status_code == 400
    assert r.json()["message"] == 'strict decoding error: unknown field "spec.bogusField"'
    r = await api.client.post(PODS, json=body, params={"fieldValidation": "Warn"})
    assert r.status_code == 201
    assert 'unknown field' in r.headers["warning"] and "spec.bogusField" in r.headers["warning"]


async def test_authentication_and_authorization(api: Api) -> None:
    async with httpx.AsyncClient(base_url=api.url) as anon:
        r = await anon.get(PODS)
        assert r.status_code == 401 and r.json()["reason"] == "Unauthorized"
        r = await anon.get(PODS, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401
        assert (await anon.get("/healthz")).text == "ok"
        assert (await anon.get("/version")).json()["gitVersion"] == "v1.32.0-edgeplane"
        viewer = {"Authorization": f"Bearer {VIEWER_TOKEN}"}
        assert (await anon.get(PODS, headers=viewer)).status_code == 200
        r = await anon.post(PODS, json=POD, headers=viewer)
        assert r.status_code == 403 and r.json()["reason"] == "Forbidden"
        assert 'User "viewer" cannot create resource "pods"' in r.json()["message"]


async def test_discovery_and_metrics(api: Api) -> None:
    c = api.client
    aggregated = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
    apis = (await c.get("/apis", headers={"Accept": aggregated})).json()
    assert apis["kind"] == "APIGroupList"
    assert {g["name"] for g in apis["groups"]} >= {"apps", "coordination.k8s.io"}
    core = (await c.get("/api/v1")).json()
    names = {r["name"] for r in core["resources"]}
    assert {"pods", "pods/status", "pods/log", "pods/eviction", "nodes", "namespaces", "services"} <= names
    apps = (await c.get("/apis/apps/v1")).json()
    assert "deployments/scale" in {r["name"] for r in apps["resources"]}
    await c.get(PODS)
    metrics = (await c.get("/metrics")).text
    assert 'apiserver_request_total{code="200",resource="pods",verb="LIST"}' in metrics
    assert "apiserver_request_duration_seconds_bucket" in metrics
    assert "edgeplane_store_commit_duration_seconds_count" in metrics
    assert "edgeplane_store_is_leader 1.0" in metrics


async def test_read_barrier_metric_counts_linearizable_reads(api: Api) -> None:
    c = api.client
    await c.post("/api/v1/namespaces/default/configmaps", json={"metadata": {"name": "rb"}, "data": {}})

    async def barriers() -> float:
        text = (await c.get("/metrics")).text
        line = next(x for x in text.splitlines() if x.startswith("edgeplane_read_barrier_duration_seconds_count"))
        return float(line.split()[-1])

    before = await barriers()
    assert (await c.get("/api/v1/namespaces/default/configmaps/rb")).status_code == 200  # linearizable
    assert await barriers() == before + 1
    assert (await c.get("/api/v1/namespaces/default/configmaps/rb", params={"resourceVersion": "0"})).status_code == 200
    assert await barriers() == before + 1  # any version: no read point


async def test_many_writers_with_preconditions(api: Api) -> None:
    """Optimistic concurrency: of N writers holding the same resourceVersion exactly one wins;
    repeated rounds of read-modify-write with retry-on-409 lose no increment."""
    c = api.client
    await c.post("/api/v1/namespaces/default/configmaps", json={"metadata": {"name": "counter"}, "data": {"n": "0"}})
    base = (await c.get("/api/v1/namespaces/default/configmaps/counter")).json()
    codes: list[int] = []

    async def racer(i: int) -> None:
        body = json.loads(json.dumps(base))
        body["data"]["n"] = str(i + 1)
        codes.append((await c.put("/api/v1/namespaces/default/configmaps/counter", json=body)).status_code)

    async with trio.open_nursery() as n:
        for i in range(20):
            n.start_soon(racer, i)
    assert sorted(codes) == [200] + [409] * 19

    conflicts = 0

    async def incrementer() -> None:
        nonlocal conflicts
        for _ in range(10):
            while True:
                cur = (await c.get("/api/v1/namespaces/default/configmaps/counter")).json()
                cur["data"]["n"] = str(int(cur["data"]["n"]) + 1)
                r = await c.put("/api/v1/namespaces/default/configmaps/counter", json=cur)
                if r.status_code == 200:
                    break
                assert r.status_code == 409
                conflicts += 1

    start = int((await c.get("/api/v1/namespaces/default/configmaps/counter")).json()["data"]["n"])
    async with trio.open_nursery() as n:
        for _ in range(8):
            n.start_soon(incrementer)
    final = int((await c.get("/api/v1/namespaces/default/configmaps/counter")).json()["data"]["n"])
    assert final == start + 80


async def test_update_many_commits_in_one_store_round(api: Api) -> None:
    reg = api.registry
    for i in range(3):
        await reg.create("pods", "default", pod(f"b{i}"))
    pods = [await reg.get("pods", "default", f"b{i}") for i in range(3)]
    stale = dict(pods[2])
    await reg.patch("pods", "default", "b2", "merge", {"metadata": {"labels": {"moved": "yes"}}})
    rev_before = api.store.revision
    results = await reg.bind_many([("default", "b0", "n1"), ("default", "b1", "n2"), ("default", "missing", "n1")])
    assert [r["spec"]["nodeName"] for r in results[:2]] == ["n1", "n2"]
    assert getattr(results[2], "code", None) == 404
    assert api.store.revision == rev_before + 2
    upd = []
    for p in (pods[0], stale):
        body = json.loads(json.dumps(p))
        body["status"] = {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}
        upd.append(("pods", "default", p["metadata"]["name"], body))
    out = await reg.update_many(upd, subresource="status")
    assert getattr(out[0], "reason", None) == "Conflict"  # b0 changed by the binding
    assert getattr(out[1], "reason", None) == "Conflict"  # b2 was patched after the read


async def test_watch_list_initial_events_end_with_a_bookmark(api: Api) -> None:
    c = api.client
    await c.post(PODS, json=pod("i1"))
    events = await read_events(api, PODS, {"sendInitialEvents": "true", "allowWatchBookmarks": "true",
                                           "resourceVersionMatch": "NotOlderThan"}, 2)
    assert events[0]["type"] == "ADDED" and events[0]["object"]["metadata"]["name"] == "i1"
    assert events[1]["type"] == "BOOKMARK"
    assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    r = await c.get(PODS, params={"watch": "true", "sendInitialEvents": "true"})
    assert r.status_code == 422


async def test_local_reads_and_unavailable_store(api: Api) -> None:
    c = api.client
    await c.post(PODS, json=POD)
    api.store.set_available(False)
    try:
        # resourceVersion=0: any version will do, the local replica answers
        assert (await c.get(f"{PODS}/my-nginx", params={"resourceVersion": "0"})).status_code == 200
        assert (await c.get(PODS, params={"resourceVersion": "0"})).json()["items"][0]["metadata"]["name"] == "my-nginx"
        r = await c.get(f"{PODS}/my-nginx")  # linearizable by default: needs the quorum
        assert r.status_code == 503 and r.json()["reason"] == "ServiceUnavailable"
        r = await c.post(PODS, json=pod("other"))
        assert r.status_code == 503
    finally:
        api.store.set_available(True)
    far = str(api.store.revision + 1000)
    r = await c.get(PODS, params={"resourceVersion": far})
    assert r.status_code == 504 and "Too large resource version" in r.json()["message"]


async def test_update_of_a_recreated_object_is_a_conflict(api: Api) -> None:
    c = api.client
    old = (await c.post(PODS, json=POD)).json()
    await c.delete(f"{PODS}/my-nginx")
    await c.post(PODS, json=POD)
    old["metadata"].pop("resourceVersion")
    old["metadata"]["labels"] = {"app": "changed"}
    r = await c.put(f"{PODS}/my-nginx", json=old)
    assert r.status_code == 409 and "UID in precondition" in r.json()["message"]


@pytest.mark.parametrize(
    ("body", "content_type", "fragment"),
    [
        (b'{"metadata":{"name":"x"},"extra":123456789012345678901234567890}', "application/json", "cannot be stored"),
        (b'{"metadata":{"name":"x"},"data":{"k":"\\ud800"}}', "application/json", "cannot be stored"),
        (b'{"metadata":{"name":"x"},"extra":1e400}', "application/json", "out of range"),
        (b'{"metadata":{"name":"x"},"extra":NaN}', "application/json", "not a JSON number"),
        (b"metadata: {name: x}\nextra: .inf\n", "application/yaml", "JSON cannot hold"),
    ],
)
async def test_values_json_or_the_store_cannot_hold_are_400(api: Api, body: bytes, content_type: str, fragment: str) -> None:
    r = await api.client.post("/api/v1/namespaces/default/configmaps", content=body,
                              headers={"Content-Type": content_type}, params={"fieldValidation": "Ignore"})
    assert r.status_code == 400 and fragment in r.json()["message"], r.text


async def test_lone_surrogate_in_an_invalid_name_is_reported_not_500(api: Api) -> None:
    r = await api.client.post("/api/v1/namespaces/default/configmaps", content=b'{"metadata":{"name":"\\ud800"}}',
                              headers={"Content-Type": "application/json"})
    assert r.status_code in (400, 422), r.text
