"""The Raft leader asks node agents to use the other masters (a hint, never a refusal)."""

from __future__ import annotations

import itertools
import os
from types import SimpleNamespace

import httpx
import pytest
import trio

from controlplane._master_api import MasterEndpoints, _is_watch
from controlplane.apiserver import StaticTokenAuthenticator, User, create_app
from controlplane.master import AGENT_SHARE_ENV, LEADER_AGENT_SHARE, MasterError, leader_agent_share
from controlplane.registry import Registry
from edge_agent import HttpApiSession
from raftstore import MemoryStore
from tests.api_serving import serve_on_free_port

TOKEN = "spread-test-token"
# Ports from H9A's share (25500-25999).
_PORTS = itertools.cycle(range(25600 + (os.getpid() % 20) * 10, 25800))
NODE_LEASE = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
              "metadata": {"name": "n1", "namespace": "kube-node-lease"},
              "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 20}}


async def test_agents_leave_the_leader_but_are_served_there() -> None:
    store = MemoryStore()
    registry = Registry(store)
    await registry.ensure_namespaces()
    auth = StaticTokenAuthenticator({TOKEN: User("system:node:n1", ("system:nodes",), "node")})
    # A leader serving more agents' pod watches than its budget (its share of the agents).
    leader = SimpleNamespace(sheds_agents=True, agent_watches=0, agent_budget=-1)
    follower = SimpleNamespace(sheds_agents=False, agent_watches=0, agent_budget=0)
    async with trio.open_nursery() as nursery:
        app = create_app(registry, store=store, authenticator=auth, info={})
        urls = [await serve_on_free_port(nursery, MasterEndpoints(app, m), _PORTS)
                for m in (leader, follower, follower)]
        async with httpx.AsyncClient() as http:
            # kubectl and other clients get no hint
            plain = await http.get(urls[0] + "/api/v1/namespaces/default", headers={"Authorization": f"Bearer {TOKEN}"})
            assert plain.status_code == 200
            assert "x-edgeplane-prefer-other-master" not in plain.headers
        session = HttpApiSession(urls[:2], TOKEN)
        try:
            session._index = 0  # starts on the leader
            created = await session._request("POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                                             body=NODE_LEASE)
            assert created is not None and created["metadata"]["name"] == "n1"  # served there
            assert session.server == urls[1]  # and moved on
            await session._request("GET", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1")
            assert session.server == urls[1]  # the follower gives no hint: the agent stays
            # An agent that knows only the leader keeps being served by it.
            alone = HttpApiSession(urls[:1], TOKEN)
            try:
                for _ in range(2):
                    got = await alone._request("GET", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1")
                    assert got is not None and got["spec"]["holderIdentity"] == "n1"
            finally:
                await alone.aclose()
        finally:
            await session.aclose()
        # Many agents that start on the leader spread over the other masters.
        async with httpx.AsyncClient() as shared:
            landed = set()
            for _ in range(20):
                agent = HttpApiSession(urls, TOKEN, client=shared)
                agent._index = 0
                await agent._request("GET", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1")
                landed.add(agent.server)
        assert landed == {urls[1], urls[2]}
        # Agents' pod watches are counted; within its budget the leader gives no hint.
        leader.agent_budget = 1
        watching = trio.Event()

        async def watch() -> None:
            async with httpx.AsyncClient() as http, http.stream(
                    "GET", urls[0] + "/api/v1/pods", params={"watch": "true", "fieldSelector": "spec.nodeName=n1"},
                    headers={"Authorization": f"Bearer {TOKEN}", "User-Agent": "edgeplane-agent/0.1"}) as response:
                assert response.status_code == 200
                watching.set()
                await trio.sleep_forever()

        nursery.start_soon(watch)
        await watching.wait()
        assert leader.agent_watches == 1
        stays = HttpApiSession(urls, TOKEN)
        try:
            stays._index = 0
            await stays._request("GET", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1")
            assert stays.server == urls[0]  # one watch, budget one: served, no hint
            leader.agent_budget = 0
            await stays._request("GET", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1")
            assert stays.server != urls[0]  # over budget: hinted away
        finally:
            await stays.aclose()
        nursery.cancel_scope.cancel()
    assert leader.agent_watches == 0


def test_only_a_leader_with_every_peer_connected_sends_agents_away() -> None:
    from controlplane.master import leads_with_all_peers

    me = {"name": "m1", "address": "a1", "last_contact_s": 0.0}

    def peer(connected: bool, contact: float | None) -> dict[str, object]:
        return {"name": "m2", "address": "a2", "connected": connected, "last_contact_s": contact}

    assert leads_with_all_peers({"is_leader": True, "members": [me, peer(True, 0.1), peer(True, 0.2)]})
    assert not leads_with_all_peers({"is_leader": False, "members": [me, peer(True, 0.1)]})
    assert not leads_with_all_peers({"is_leader": True, "members": [me]})  # alone
    assert not leads_with_all_peers({"is_leader": True, "members": [me, peer(True, 0.1), peer(False, 0.1)]})
    assert not leads_with_all_peers({"is_leader": True, "members": [me, peer(True, 0.1), peer(True, 3.0)]})
    assert not leads_with_all_peers({"is_leader": True, "members": [me, peer(True, None)]})


def test_the_leaders_share_of_agents_can_be_set_and_is_checked() -> None:
    assert leader_agent_share({}) == LEADER_AGENT_SHARE
    assert leader_agent_share({AGENT_SHARE_ENV: "1"}) == 1.0
    assert leader_agent_share({AGENT_SHARE_ENV: "0"}) == 0.0
    for bad in ("abc", "-0.5", "nan"):
        with pytest.raises(MasterError, match=AGENT_SHARE_ENV):
            leader_agent_share({AGENT_SHARE_ENV: bad})


@pytest.mark.parametrize(("query", "watch"), [
    (b"watch=true", True),
    (b"watch=1", True),
    (b"watch=True", True),  # the API app reads flags in any case
    (b"fieldSelector=spec.nodeName%3Dn1&watch=true&timeoutSeconds=290", True),
    (b"watch=true&watch=false", True),  # the first value counts, as in the API app
    (b"", False),
    (b"watch=false", False),
    (b"watch=0", False),
    (b"watch=", False),
    (b"watch=10", False),  # not a flag value (the API app answers 400)
    (b"labelSelector=watch%3Dtrue", False),  # inside another parameter's value
    (b"labelSelector=watch=true", False),  # (a client need not escape "=" in a value)
    (b"fieldSelector=metadata.name%3Dwatch%3D1", False),
    (b"nowatch=1", False),
    (b"allowWatchBookmarks=true", False),
])
def test_a_watch_is_read_from_the_parsed_query(query: bytes, watch: bool) -> None:
    """An agent's request counts as a watch (against the leader's agent budget) exactly when
    the API app serves it as one: the ``watch`` parameter is true (Kubernetes ListOptions)."""
    assert _is_watch({"type": "http", "query_string": query}) is watch
