"""userspace mode with real traffic over loopback: VIPs in 127.10/16, backends on 127.0.1.x."""

from __future__ import annotations

from collections import Counter
from functools import partial

import pytest
import trio

from netproxy import ProxyState, serve_proxy
from netproxy.testing import (
    endpoints_object,
    http_get,
    service_object,
    udp_request,
)

VIP = "127.10.0.1"


def web_state(vip: str, port: int, backends, *, affinity: int | None = None, **svc) -> ProxyState:
    return ProxyState(
        [service_object("web", vip, [("http", port, "TCP", *svc.pop("node_port", ()))],
                        affinity_timeout=affinity, **svc)],
        [endpoints_object("web", [(b.ip, b.port) for b in backends], port_name="http")],
    )


async def test_vip_round_robins_over_all_ready_backends(http_backend) -> None:
    backends = [http_backend(f"127.0.1.{i}", 24010 + i) for i in (1, 2, 3)]
    state = web_state(VIP, 24100, backends)
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(partial(serve_proxy, state, mode="userspace"))
        assert handle.mode == "userspace"
        seen = Counter([await http_get(VIP, 24100) for _ in range(30)])
        assert seen == {b.identity: 10 for b in backends}
        nursery.cancel_scope.cancel()


async def test_removing_a_backend_while_a_client_loops_fails_no_request(http_backend) -> None:
    backends = [http_backend(f"127.0.1.{i}", 24020 + i) for i in (1, 2, 3)]
    state = web_state(VIP, 24101, backends)
    answers: list[str] = []
    failures: list[BaseException] = []

    async def client_loop(stop: trio.Event) -> None:
        while not stop.is_set():
            try:
                answers.append(await http_get(VIP, 24101))
            except (OSError, trio.BrokenResourceError, trio.TooSlowError) as exc:
                failures.append(exc)

    async with trio.open_nursery() as nursery:
        handle = await nursery.start(partial(serve_proxy, state, mode="userspace"))
        stop = trio.Event()
        nursery.start_soon(client_loop, stop)
        while len(answers) < 30:
            await trio.sleep(0.01)
        # The pod dies before the endpoints controller notices: the proxier must skip it.
        backends[2].stop()
        before_update = len(answers)
        while len(answers) < before_update + 30:
            await trio.sleep(0.01)
        state.set_endpoints([endpoints_object(
            "web", [(b.ip, b.port) for b in backends[:2]], port_name="http")])
        await handle.wait_synced()
        after_update = len(answers)
        while len(answers) < after_update + 30:
            await trio.sleep(0.01)
        stop.set()
        nursery.cancel_scope.cancel()
    assert failures == []
    assert backends[2].identity in answers[:before_update]
    # The one request in flight while the backend stopped may still be answered by it.
    assert backends[2].identity not in answers[before_update + 1:]
    assert set(answers[after_update:]) == {backends[0].identity, backends[1].identity}


async def test_refusing_endpoint_is_skipped(http_backend) -> None:
    live = [http_backend("127.0.1.1", 24031), http_backend("127.0.1.2", 24032)]
    state = ProxyState(
        [service_object("web", VIP, [("", 24102, "TCP")])],
        # 127.0.1.3:24033 has no listener: every connection to it is refused.
        [endpoints_object("web", [("127.0.1.3", 24033), *((b.ip, b.port) for b in live)])],
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(serve_proxy, state, mode="userspace"))
        seen = Counter([await http_get(VIP, 24102) for _ in range(20)])
        assert set(seen) == {b.identity for b in live}
        assert min(seen.values()) >= 5  # the dead endpoint's turns went to the live ones
        nursery.cancel_scope.cancel()


async def test_service_without_endpoints_resets_at_once() -> None:
    state = ProxyState([service_object("web", VIP, [("", 24103, "TCP")])], [])
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(serve_proxy, state, mode="userspace"))
        with pytest.raises((OSError, trio.BrokenResourceError)):
            await http_get(VIP, 24103, timeout=1.0)
        nursery.cancel_scope.cancel()


async def test_udp_service_spreads_and_skips_a_refusing_endpoint(udp_backend) -> None:
    live = [udp_backend("127.0.1.1", 24041), udp_backend("127.0.1.2", 24042)]
    state = ProxyState(
        [service_object("dns", VIP, [("dns", 24104, "UDP")])],
        [endpoints_object("dns", [*((b.ip, b.port) for b in live), ("127.0.1.3", 24043)],
                          port_name="dns", protocol="UDP")],
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(serve_proxy, state, mode="userspace"))
        seen: Counter[str] = Counter()
        lost = 0
        for i in range(20):
            payload = f"q{i}".encode()
            # A datagram sent to the dead endpoint is lost (UDP); the proxier learns from the
            # ICMP refusal and the client's retry goes elsewhere.
            for _attempt in range(3):
                try:
                    answer = await udp_request(VIP, 24104, payload, timeout=0.3)
                    break
                except trio.TooSlowError:
                    lost += 1
            else:
                pytest.fail("no answer after 3 tries")
            who, _, echoed = answer.partition(b" ")
            assert echoed == payload
            seen[who.decode()] += 1
        assert set(seen) == {b.identity for b in live}
        assert lost <= 1
        nursery.cancel_scope.cancel()


async def test_client_ip_affinity_pins_each_client_address(http_backend) -> None:
    backends = [http_backend(f"127.0.1.{i}", 24050 + i) for i in (1, 2, 3)]
    async with trio.open_nursery() as nursery:
        state = web_state(VIP, 24105, backends, affinity=60)
        await nursery.start(partial(serve_proxy, state, mode="userspace"))
        pinned = {}
        for client in ("127.0.2.1", "127.0.2.2", "127.0.2.3", "127.0.2.4"):
            seen = {await http_get(VIP, 24105, source=client) for _ in range(6)}
            assert len(seen) == 1, f"{client} was spread over {seen}"
            pinned[client] = seen.pop()
        # Round-robin between clients: the four first choices cover every backend.
        assert set(pinned.values()) == {b.identity for b in backends}
        # The pinned endpoint leaves: its clients move on, and stick to their new choice.
        gone = pinned["127.0.2.1"]
        state.set_endpoints([endpoints_object(
            "web", [(b.ip, b.port) for b in backends if b.identity != gone], port_name="http")])
        seen = {await http_get(VIP, 24105, source="127.0.2.1") for _ in range(6)}
        assert len(seen) == 1 and gone not in seen
        nursery.cancel_scope.cancel()


async def test_without_affinity_one_client_is_spread(http_backend) -> None:
    backends = [http_backend(f"127.0.1.{i}", 24060 + i) for i in (1, 2, 3)]
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(serve_proxy, web_state(VIP, 24106, backends), mode="userspace"))
        seen = {await http_get(VIP, 24106, source="127.0.2.1") for _ in range(6)}
        assert len(seen) == 3
        nursery.cancel_scope.cancel()


async def read_response(stream: trio.SocketStream) -> str:
    """One HTTP/1.1 response body from a keep-alive connection."""
    data = b""
    while True:
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            if len(body) >= length:
                return body[:length].decode()
        chunk = await stream.receive_some(4096)
        assert chunk, "connection closed mid-response"
        data += chunk


async def test_endpoint_change_keeps_established_connections(http_backend) -> None:
    backends = [http_backend("127.0.1.1", 24071), http_backend("127.0.1.2", 24072)]
    state = web_state(VIP, 24107, backends)
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(partial(serve_proxy, state, mode="userspace"))
        stream = await trio.open_tcp_stream(VIP, 24107)
        async with stream:
            await stream.send_all(request)
            who = await read_response(stream)
            remaining = [b for b in backends if b.identity != who]
            state.set_endpoints([endpoints_object("web", [(b.ip, b.port) for b in remaining],
                                                  port_name="http")])
            await handle.wait_synced()
            # The keep-alive connection still reaches the endpoint that left the Service.
            await stream.send_all(request)
            assert await read_response(stream) == who
        assert await http_get(VIP, 24107) == remaining[0].identity
        nursery.cancel_scope.cancel()


async def test_node_port_listens_on_every_node_address(http_backend) -> None:
    backend = http_backend("127.0.1.1", 24081)
    state = web_state(VIP, 24108, [backend], type="NodePort", node_port=(24508,))
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(
            serve_proxy, state, mode="userspace", node_addresses=["127.0.1.11", "127.0.1.12"]))
        for address in (VIP, "127.0.1.11", "127.0.1.12"):
            port = 24108 if address == VIP else 24508
            assert await http_get(address, port) == backend.identity
        nursery.cancel_scope.cancel()


async def test_two_proxiers_share_a_machine_one_serves_the_other_stands_by(http_backend) -> None:
    backends = [http_backend("127.0.1.1", 24091), http_backend("127.0.1.2", 24092)]
    async with trio.open_nursery() as nursery:
        first_scope = trio.CancelScope()

        async def first(task_status=trio.TASK_STATUS_IGNORED) -> None:
            with first_scope:
                await serve_proxy(web_state(VIP, 24109, backends), mode="userspace",
                                  task_status=task_status)

        a = await nursery.start(first)
        b = await nursery.start(partial(serve_proxy, web_state(VIP, 24109, backends),
                                        mode="userspace"))
        key = (VIP, 24109, "TCP")
        assert a.proxier.listener_states()[key] == "serving"
        assert b.proxier.listener_states()[key] == "standby"
        assert {await http_get(VIP, 24109) for _ in range(4)} == {x.identity for x in backends}
        # The serving proxier goes away (agent stopped): the standby takes over.
        first_scope.cancel()
        with trio.fail_after(3):
            while b.proxier.listener_states()[key] != "serving":
                await trio.sleep(0.02)
        assert {await http_get(VIP, 24109) for _ in range(4)} == {x.identity for x in backends}
        nursery.cancel_scope.cancel()


async def test_last_rules_survive_the_source_failing(http_backend) -> None:
    backend = http_backend("127.0.1.1", 24095)
    snapshot_given = trio.Event()

    async def source():
        yield ([service_object("web", VIP, [("", 24110, "TCP")])],
               [endpoints_object("web", [(backend.ip, backend.port)])])
        snapshot_given.set()
        raise ConnectionError("every master is unreachable")

    async with trio.open_nursery() as nursery:
        handle = await nursery.start(partial(serve_proxy, source(), mode="userspace"))
        await snapshot_given.wait()
        await handle.wait_synced()
        for _ in range(5):
            assert await http_get(VIP, 24110) == backend.identity
        nursery.cancel_scope.cancel()


async def test_unknown_mode_is_a_clear_error() -> None:
    from netproxy import ProxyError

    with pytest.raises(ProxyError, match="unknown proxy mode"):
        await serve_proxy(ProxyState(), mode="ipvs")
    with pytest.raises(ProxyError, match="invalid nftables table name"):
        await serve_proxy(ProxyState(), mode="userspace", table="x; flush ruleset")


async def test_endpoint_that_accepts_and_closes_silently_is_skipped(http_backend) -> None:
    """Like Docker's port proxy for a dead pod: the connection opens, then closes unanswered."""
    live = http_backend("127.0.1.1", 24121)
    hangup = trio.socket.socket()
    await hangup.bind(("127.0.1.2", 24122))
    hangup.listen(64)

    async def hang_up_everyone() -> None:
        while True:
            conn, _ = await hangup.accept()
            await trio.sleep(0.005)  # after the request arrived, as a dying endpoint would
            conn.close()

    state = ProxyState([service_object("web", VIP, [("", 24120, "TCP")])],
                       [endpoints_object("web", [("127.0.1.2", 24122), (live.ip, live.port)])])
    with hangup:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(hang_up_everyone)
            await nursery.start(partial(serve_proxy, state, mode="userspace"))
            answers = [await http_get(VIP, 24120) for _ in range(10)]
            assert answers == [live.identity] * 10
            nursery.cancel_scope.cancel()


async def test_a_burst_of_changes_is_one_sync_and_no_change_is_none(http_backend) -> None:
    backends = [http_backend("127.0.1.1", 24131), http_backend("127.0.1.2", 24132)]
    state = web_state(VIP, 24130, backends[:1])
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(partial(serve_proxy, state, mode="userspace"))
        assert handle.syncs == 1
        for i in range(100):  # e.g. a re-list delivering every object at once
            state.set_endpoints([endpoints_object(
                "web", [(b.ip, b.port) for b in backends[: 1 + i % 2]], port_name="http")])
        await handle.wait_synced()
        assert handle.syncs == 2
        assert {await http_get(VIP, 24130) for _ in range(4)} == {b.identity for b in backends}
        state.set_services(state.services)  # same objects again: nothing to reprogram
        await handle.wait_synced()
        assert handle.syncs == 2
        nursery.cancel_scope.cancel()
