"""apiserver_request_total as a kube-apiserver labels it, read from /metrics as Prometheus would.

Kubernetes (k8s.io/apiserver endpoints/metrics): verb is the HTTP method with GET split into
GET/LIST/WATCH, APPLY for a server-side-apply PATCH, CONNECT for streaming subresources; resource
is what the URL names (its request info is parsed from the path before authentication or routing).
Here a subresource is part of the resource label (``pods/status``).
"""

from __future__ import annotations

import json

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from controlplane.apiserver import _metrics

from .conftest import Api, start_api
from .test_api import PODS, pod


async def request_counts(api: Api) -> dict[tuple[str, str, str], float]:
    """(verb, resource, code) -> count, from the /metrics text."""
    r = await api.client.get("/metrics")
    assert r.status_code == 200
    counts = {}
    for family in text_string_to_metric_families(r.text):
        if family.name == "apiserver_request":  # (the parser drops a counter's _total)
            for sample in family.samples:
                if sample.name == "apiserver_request_total":
                    counts[(sample.labels["verb"], sample.labels["resource"], sample.labels["code"])] = sample.value
    return counts


async def test_requests_refused_before_routing_carry_the_urls_resource(api: Api) -> None:
    c = api.client
    async with httpx.AsyncClient(base_url=api.url) as anonymous:
        assert (await anonymous.get(PODS)).status_code == 401
        assert (await anonymous.post(PODS, json=pod("x"))).status_code == 401
        assert (await anonymous.get(f"{PODS}/x", headers={"Authorization": "Bearer wrong"})).status_code == 401
        assert (await anonymous.get("/apis/apps/v1/namespaces/default/deployments")).status_code == 401
        assert (await anonymous.get("/apis/apps/v1/watch/namespaces/default/deployments")).status_code == 401
        assert (await anonymous.get("/healthz")).status_code == 200  # public, not a resource
    assert (await c.get("/api/v1/namespaces/default/foos")).status_code == 404  # a kind not served
    assert (await c.get(f"{PODS}/x/bogus")).status_code == 404  # a subresource not served
    assert (await c.get("/api/v1/namespaces/default/pods/x/y/z")).status_code == 404
    assert (await c.get(PODS, params={"watch": "maybe"})).status_code == 400  # a bad query
    assert (await c.get("/api/v1")).status_code == 200  # discovery: no resource
    assert (await c.get("/nowhere")).status_code == 404
    counts = await request_counts(api)
    assert counts[("LIST", "pods", "401")] == 1
    assert counts[("POST", "pods", "401")] == 1
    assert counts[("GET", "pods", "401")] == 1
    assert counts[("LIST", "deployments", "401")] == 1
    assert counts[("WATCH", "deployments", "401")] == 1
    assert counts[("LIST", "foos", "404")] == 1
    assert counts[("GET", "pods/bogus", "404")] == 1
    assert counts[("GET", "pods/y", "404")] == 1
    assert counts[("LIST", "pods", "400")] == 1
    # an empty resource: only the requests whose URL names none (/healthz, /api/v1, /nowhere)
    assert {k: v for k, v in counts.items() if k[1] == ""} == {
        ("GET", "", "200"): 2, ("GET", "", "404"): 1}


async def test_errors_after_routing_keep_the_resource_and_verbs_are_kubernetes(api: Api) -> None:
    c = api.client
    assert (await c.post(PODS, content=b"{not json", headers={"Content-Type": "application/json"})).status_code == 400
    assert (await c.get(f"{PODS}/missing")).status_code == 404
    created = await c.post(PODS, json=pod("p"))
    assert created.status_code == 201
    assert (await c.post(PODS, json=pod("p"))).status_code == 409
    body = created.json()
    assert (await c.put(f"{PODS}/p", json=body)).status_code == 200
    r = await c.patch(f"{PODS}/p", content=json.dumps({"metadata": {"labels": {"a": "b"}}}),
                      headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200
    r = await c.patch(f"{PODS}/p", content=b"kind: Pod", headers={"Content-Type": "application/apply-patch+yaml"})
    assert r.status_code == 415  # server-side apply is not served; still an APPLY
    assert (await c.get(f"{PODS}/p/status")).status_code == 200
    assert (await c.get(f"{PODS}/p/log")).status_code != 200  # no log proxy in this server
    with trio.fail_after(10):
        async with c.stream("GET", PODS, params={"watch": "true", "timeoutSeconds": "1"}) as r:
            assert r.status_code == 200
            async for _ in r.aiter_bytes():
                pass
    assert (await c.delete(f"{PODS}/p", params={"gracePeriodSeconds": "0"})).status_code == 200
    assert (await c.delete(PODS)).status_code == 200
    counts = await request_counts(api)
    assert counts[("POST", "pods", "400")] == 1
    assert counts[("GET", "pods", "404")] == 1
    assert counts[("POST", "pods", "201")] == 1
    assert counts[("POST", "pods", "409")] == 1
    assert counts[("PUT", "pods", "200")] == 1
    assert counts[("PATCH", "pods", "200")] == 1
    assert counts[("APPLY", "pods", "415")] == 1
    assert counts[("GET", "pods/status", "200")] == 1
    assert sum(v for (verb, res, _), v in counts.items() if (verb, res) == ("CONNECT", "pods/log")) == 1
    assert counts[("WATCH", "pods", "200")] == 1
    assert counts[("DELETE", "pods", "200")] == 2  # one pod, then the collection
    assert not any(k[1] == "" for k in counts)


async def test_names_of_resources_not_served_are_bounded(nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch) -> None:
    # every label value is a time series for the life of the process; unauthenticated clients choose URLs
    monkeypatch.setattr(_metrics, "_MAX_UNKNOWN_RESOURCES", 2)
    api = await start_api(nursery)
    async with httpx.AsyncClient(base_url=api.url) as anonymous:
        for kind in ("foos", "bars", "foos", "bazs", "quxs"):
            assert (await anonymous.get(f"/api/v1/{kind}")).status_code == 401
        assert (await anonymous.get(PODS)).status_code == 401  # a served kind is always named
    counts = await request_counts(api)
    assert counts[("LIST", "foos", "401")] == 2 and counts[("LIST", "bars", "401")] == 1
    assert counts[("LIST", "other", "401")] == 2
    assert counts[("LIST", "pods", "401")] == 1
    await api.client.aclose()
