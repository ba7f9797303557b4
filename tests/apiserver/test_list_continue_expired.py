"""A list's continue token older than every history: 410 Expired with an "inconsistent continue" token.

Kubernetes API conventions ("Retrieving large results sets in chunks") and ListOptions.continue:
when a continue token's resourceVersion has been compacted the server answers 410 ResourceExpired
with a new token in the Status' ``metadata.continue``; a client that needs a consistent list starts
over, otherwise it lists with that token and gets the keys after the last one it had, from the
latest snapshot (objects created, changed or deleted since the first page show, if their keys come
later). The pages after that one are again one snapshot: the new page's resourceVersion.

Here both histories a page can be rebuilt from are short: the store's (5 events) and the watch
cache's (3 events per resource), so a few writes expire a token.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import trio

from controlplane import _watchcache

from .conftest import ADMIN_TOKEN, Api, start_api
from .test_api import PODS, pod, read_events
from .test_kubectl import Kubectl

# Kubernetes' message for this case (k8s.io/apiserver storage etcd3, "inconsistentContinue").
INCONSISTENT = (
    "The provided continue parameter is too old to display a consistent list result. You can start "
    "a new list without the continue parameter, or use the continue token in this response to "
    "retrieve the remainder of the results. Continuing with the provided token results in an "
    "inconsistent list - objects that were created, modified, or deleted between the time the first "
    "chunk was returned and now may show up in the list."
)


async def short_history_api(nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch, **kw: object) -> Api:
    monkeypatch.setattr(_watchcache, "HISTORY_PER_RESOURCE", 3)
    return await start_api(nursery, history_limit=5, **kw)  # type: ignore[arg-type]


def names(items: list[dict]) -> list[str]:
    return [p["metadata"]["name"] for p in items]


async def relabel(api: Api, name: str, **labels: str) -> dict:
    r = await api.client.patch(f"{PODS}/{name}", content=json.dumps({"metadata": {"labels": labels}}),
                               headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text
    return r.json()


async def test_expired_token_gives_410_with_a_token_for_the_rest_of_the_list_now(
        nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch) -> None:
    api = await short_history_api(nursery, monkeypatch)
    c = api.client
    for name in ("p0", "p1", "p2", "p3", "p4", "p5"):
        assert (await c.post(PODS, json=pod(name, app="a"))).status_code == 201
    first = (await c.get(PODS, params={"limit": "2"})).json()
    assert names(first["items"]) == ["p0", "p1"]
    token = first["metadata"]["continue"]
    # After the first page, more changes than either history keeps: a create before the last key
    # returned (never in the rest), one after it, a delete, a label change, and new pods after.
    assert (await c.post(PODS, json=pod("a0", app="a"))).status_code == 201
    assert (await c.post(PODS, json=pod("p15", app="a"))).status_code == 201
    assert (await c.delete(f"{PODS}/p3", params={"gracePeriodSeconds": "0"})).status_code == 200
    await relabel(api, "p4", app="changed")
    for i in range(4):
        r = await c.post(PODS, json=pod(f"q{i}", app="a"))
        assert r.status_code == 201
    last_write = int(r.json()["metadata"]["resourceVersion"])

    r = await c.get(PODS, params={"limit": "2", "continue": token})
    assert r.status_code == 410
    status = r.json()
    assert (status["kind"], status["status"], status["reason"], status["code"]) == ("Status", "Failure", "Expired", 410)
    assert status["message"] == INCONSISTENT
    fresh = status["metadata"]["continue"]
    assert fresh and fresh != token
    # the old token stays expired (asking again gives the same answer)
    again = await c.get(PODS, params={"limit": "2", "continue": token})
    assert again.status_code == 410 and again.json()["metadata"]["continue"] == fresh

    # The rest, from the key after p1, as the pods are now.
    page = (await c.get(PODS, params={"limit": "2", "continue": fresh})).json()
    assert names(page["items"]) == ["p15", "p2"]
    rv = page["metadata"]["resourceVersion"]
    assert int(rv) >= last_write  # a read of the latest state (linearizable)
    assert all(int(p["metadata"]["resourceVersion"]) <= int(rv) for p in page["items"])
    # Changes after that page do not show in its later pages: they are one snapshot at rv ...
    await relabel(api, "p5", app="later")
    assert (await c.post(PODS, json=pod("p45", app="a"))).status_code == 201
    rest = list(page["items"])
    while page["metadata"].get("continue"):
        r = await c.get(PODS, params={"limit": "2", "continue": page["metadata"]["continue"]})
        assert r.status_code == 200, r.text
        page = r.json()
        assert page["metadata"]["resourceVersion"] == rv
        rest += page["items"]
    assert names(rest) == ["p15", "p2", "p4", "p5", "q0", "q1", "q2", "q3"]
    labels = {p["metadata"]["name"]: p["metadata"]["labels"]["app"] for p in rest}
    assert labels["p4"] == "changed" and labels["p5"] == "a"
    # ... and a watch from rv sees exactly the changes made since (what an informer relies on).
    events = await read_events(api, PODS, {"resourceVersion": rv}, 2)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("MODIFIED", "p5"), ("ADDED", "p45")]
    await c.aclose()


async def test_the_inconsistent_rest_keeps_the_selector(nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch) -> None:
    api = await short_history_api(nursery, monkeypatch)
    c = api.client
    for i in range(6):
        assert (await c.post(PODS, json=pod(f"p{i}", app="a" if i % 2 else "b"))).status_code == 201
    params = {"limit": "1", "labelSelector": "app=a"}
    first = (await c.get(PODS, params=params)).json()
    assert names(first["items"]) == ["p1"]
    await relabel(api, "p2", app="a")  # now matches, after p1: shows
    await relabel(api, "p3", app="b")  # no longer matches: gone
    await relabel(api, "p0", app="a")  # before p1: never in the rest
    for i in range(4):
        await c.post(PODS, json=pod(f"x{i}", app="b"))
    r = await c.get(PODS, params={**params, "continue": first["metadata"]["continue"]})
    assert r.status_code == 410 and r.json()["message"] == INCONSISTENT
    page = (await c.get(PODS, params={**params, "continue": r.json()["metadata"]["continue"]})).json()
    rest = list(page["items"])
    while page["metadata"].get("continue"):
        page = (await c.get(PODS, params={**params, "continue": page["metadata"]["continue"]})).json()
        rest += page["items"]
    assert names(rest) == ["p2", "p5"]
    await c.aclose()


def _token(rv: int, start: str) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


async def test_continue_tokens_kubernetes_refuses(api: Api) -> None:
    c = api.client
    for i in range(3):
        await c.post(PODS, json=pod(f"p{i}"))
    # a revision of 0 is no revision (Kubernetes' DecodeContinue); a latest-revision token is
    # still bound to its list
    r = await c.get(PODS, params={"limit": "1", "continue": _token(0, "/registry/pods/default/p0")})
    assert r.status_code == 400
    assert r.json()["message"] == "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)"
    r = await c.get(PODS, params={"limit": "1", "continue": _token(-1, "/registry/services/default/p0")})
    assert r.status_code == 400 and r.json()["message"] == "continue key is not valid: it was issued for a different list"
    r = await c.get(PODS, params={"limit": "1", "continue": _token(-1, "/registry/pods/default/p0"),
                                  "resourceVersion": "5"})
    assert r.status_code == 400 and r.json()["message"] == "specifying resource version is not allowed when using continue"


@pytest.mark.kubectl
async def test_kubectl_shows_the_message_and_follows_the_token(
        nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # kubectl get pages (--chunk-size); when its second chunk's token has expired it reports
    # Kubernetes' message and fails (client-go does not continue an inconsistent list itself).
    api = await short_history_api(nursery, monkeypatch, tls_dir=tmp_path)
    k = Kubectl(api, tmp_path)
    reg = api.registry
    for i in range(4):
        await reg.create("configmaps", "default", {"metadata": {"name": f"c{i}"}, "data": {"k": "v"}})
    list_kvs = reg.list_kvs
    expired = []

    async def list_kvs_compacting_before_the_second_chunk(*args: object, **kw: object) -> object:
        if kw.get("continue_token") and not expired:
            expired.append(kw["continue_token"])
            for i in range(6):
                await reg.create("configmaps", "default", {"metadata": {"name": f"d{i}"}, "data": {}})
        return await list_kvs(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(reg, "list_kvs", list_kvs_compacting_before_the_second_chunk)
    proc = await k.run("get", "configmaps", "--chunk-size=2", ok=False)
    assert proc.returncode == 1 and expired
    assert proc.stderr.decode().strip() == f"Error from server (Expired): {INCONSISTENT}"
    # the token from the 410, used by hand (kubectl get --raw), lists the rest as it is now
    r = await api.client.get("/api/v1/namespaces/default/configmaps", params={"limit": "2", "continue": expired[0]})
    fresh = r.json()["metadata"]["continue"]
    page = json.loads(await k.out("get", "--raw", f"/api/v1/namespaces/default/configmaps?limit=10&continue={fresh}"))
    assert names(page["items"]) == ["c2", "c3", "d0", "d1", "d2", "d3", "d4", "d5"]
    await api.client.aclose()


async def test_official_python_client_follows_the_token(nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch) -> None:
    from kubernetes import client

    api = await short_history_api(nursery, monkeypatch)
    for i in range(4):
        await api.registry.create("pods", "default", pod(f"p{i}"))
    config = client.Configuration()
    config.host = api.url
    config.api_key = {"authorization": f"Bearer {ADMIN_TOKEN}"}

    def first_page() -> str:
        with client.ApiClient(config) as api_client:
            listed = client.CoreV1Api(api_client).list_namespaced_pod("default", limit=2)
            assert [p.metadata.name for p in listed.items] == ["p0", "p1"]
            return str(listed.metadata._continue)

    def rest(token: str) -> tuple[int, list[str]]:
        with client.ApiClient(config) as api_client:
            core = client.CoreV1Api(api_client)
            try:
                core.list_namespaced_pod("default", limit=2, _continue=token)
            except client.ApiException as exc:
                status = exc.status
                token = json.loads(exc.body)["metadata"]["continue"]
            else:
                raise AssertionError("the expired token was accepted")
            seen: list[str] = []
            while token:
                listed = core.list_namespaced_pod("default", limit=2, _continue=token)
                seen += [p.metadata.name for p in listed.items]
                token = listed.metadata._continue
            return status, seen

    token = await trio.to_thread.run_sync(first_page)
    for i in range(6):
        await api.registry.create("pods", "default", pod(f"q{i}"))
    status, seen = await trio.to_thread.run_sync(rest, token)
    assert status == 410
    assert seen == ["p2", "p3", "q0", "q1", "q2", "q3", "q4", "q5"]
    await api.client.aclose()
