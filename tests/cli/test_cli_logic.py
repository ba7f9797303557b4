"""Pure pieces of edgectl and the master endpoints, tested directly."""

from __future__ import annotations

import httpx
import pytest

from cli._common import CommandError
from cli._resources import _apply_patch, _split_targets
from controlplane._master_api import MasterEndpoints, MemberRecord
from controlplane.apiserver import StaticTokenAuthenticator, User


def test_apply_patch_deletes_only_what_the_last_apply_set() -> None:
    last = {"metadata": {"labels": {"a": "1", "b": "2"}}, "data": {"x": "1", "y": "2"}}
    desired = {"metadata": {"labels": {"a": "1"}}, "data": {"x": "3"}}
    assert _apply_patch(last, desired) == {
        "metadata": {"labels": {"a": "1", "b": None}},
        "data": {"x": "3", "y": None},
    }
    # Nothing applied before: the patch is the document itself (no deletions).
    assert _apply_patch({}, desired) == desired
    # A whole section dropped from the manifest is removed.
    assert _apply_patch({"data": {"x": "1"}, "kind": "ConfigMap"}, {"kind": "ConfigMap"}) == {
        "kind": "ConfigMap", "data": None}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("pods",), [("pods", None)]),
        (("pods", "a", "b"), [("pods", "a"), ("pods", "b")]),
        (("pod/a", "deploy/b"), [("pod", "a"), ("deploy", "b")]),
        (("pods,services",), [("pods", None), ("services", None)]),
    ],
)
def test_resource_arguments_follow_kubectl(args, expected) -> None:
    assert _split_targets(args) == expected


@pytest.mark.parametrize("args", [(), ("pod/a", "b"), ("pods,services", "a"), ("pod/",)])
def test_bad_resource_arguments_are_explained(args) -> None:
    with pytest.raises(CommandError):
        _split_targets(args)


class FakeMaster:
    """Just what MasterEndpoints calls; the real Master is exercised by the cluster tests."""

    def __init__(self) -> None:
        self.authenticator = StaticTokenAuthenticator({
            "admin-token": User("admin", role="admin"), "viewer-token": User("v", role="viewer")})
        self.added: list[MemberRecord] = []

    async def cluster_status(self) -> dict:
        return {"leader": "m1"}

    async def members(self) -> list[MemberRecord]:
        return [MemberRecord("m1", "127.0.0.1:1", "https://127.0.0.1:2"), *self.added]

    async def join_info(self) -> dict:
        return {"secret": "s", "members": []}

    async def add_member(self, record: MemberRecord) -> list[MemberRecord]:
        self.added.append(record)
        return await self.members()


async def _call(method: str, path: str, token: str | None = None, **kwargs) -> httpx.Response:
    async def inner(scope, receive, send):  # the Kubernetes API app behind the endpoints
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b"inner"})

    app = MasterEndpoints(inner, FakeMaster())
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://master") as client:
        return await client.request(method, path, headers=headers, **kwargs)


async def test_master_endpoints_require_a_token_and_admin_for_changes() -> None:
    assert (await _call("GET", "/edgeplane/v1/cluster/status")).status_code == 401
    ok = await _call("GET", "/edgeplane/v1/cluster/status", "viewer-token")
    assert ok.status_code == 200 and ok.json() == {"leader": "m1"}
    denied = await _call("POST", "/edgeplane/v1/join", "viewer-token")
    assert denied.status_code == 403 and denied.json()["kind"] == "Status"
    joined = await _call("POST", "/edgeplane/v1/join", "admin-token")
    assert joined.json()["secret"] == "s"
    # Everything else goes to the Kubernetes API app untouched.
    assert (await _call("GET", "/api/v1/pods")).status_code == 299


async def test_member_requests_are_checked_before_anything_changes() -> None:
    bad_json = await _call("POST", "/edgeplane/v1/members", "admin-token", content=b"{nope")
    assert bad_json.status_code == 400 and "not valid JSON" in bad_json.json()["message"]
    missing = await _call("POST", "/edgeplane/v1/members", "admin-token", json={"name": "m4"})
    assert missing.status_code == 400 and "raftAddress" in missing.json()["message"]
    huge = await _call("POST", "/edgeplane/v1/members", "admin-token", content=b"x" * 100_000)
    assert huge.status_code == 413
    added = await _call("POST", "/edgeplane/v1/members", "admin-token",
                        json={"name": "m4", "raftAddress": "127.0.0.1:3", "apiAddress": "https://x"})
    assert added.status_code == 201 and [m["name"] for m in added.json()["members"]] == ["m1", "m4"]
    wrong = await _call("PUT", "/edgeplane/v1/members", "admin-token")
    assert wrong.status_code == 405
