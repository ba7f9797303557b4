"""Real containers: busybox-httpd pods published on node addresses, reached through a Service.

Endpoints are what the agent publishes: ``hostIP:hostPort`` on 127.0.1.x. Traffic comes from
the host (nat output) and from another container on docker0 (nat prerouting, which needs
route_localnet on docker0 because the endpoints are in 127/8). Containers cannot reach a
127/8 VIP (that range is their own loopback), so the container path uses a VIP outside it.
"""

from __future__ import annotations

import os
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from functools import partial

import pytest
import trio

from netproxy import ProxyState, serve_proxy
from netproxy.testing import endpoints_object, http_get, service_object

IMAGE = "edgeplane/demo:latest"
HOST_VIP = "127.10.3.1"
CONTAINER_VIP = "10.97.3.1"  # routed to the host by the container's default route
PORT = 24310

pytestmark = [pytest.mark.docker, pytest.mark.root]


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check,
                          timeout=60)


@pytest.fixture
def pods() -> Iterator[Callable[[str, str, int], str]]:
    """Start demo pods published like the agent does; removed at the end even on failure."""
    started: list[str] = []
    if docker("image", "inspect", IMAGE, check=False).returncode != 0:
        pytest.skip(f"{IMAGE} is not built (edgectl image build-demo)")

    def start(name: str, host_ip: str, host_port: int) -> str:
        full = f"npt-{os.getpid()}-{name}"
        started.append(full)
        docker("run", "-d", "--name", full, "-e", f"POD_NAME={name}",
               "-p", f"{host_ip}:{host_port}:80", IMAGE)
        return full

    yield start
    if started:
        docker("rm", "-f", *started, check=False)


@pytest.fixture
def blackhole() -> Iterator[None]:
    # Docker turns on forwarding: without our DNAT, container packets to the test VIP must die
    # on this host rather than leave the machine by the default route.
    subprocess.run(["ip", "route", "replace", "blackhole", f"{CONTAINER_VIP}/32"], check=True)
    yield
    subprocess.run(["ip", "route", "del", "blackhole", f"{CONTAINER_VIP}/32"], capture_output=True)


@pytest.fixture
def table() -> Iterator[str]:
    name = f"edgeplane-dtest-{os.getpid()}"
    yield name
    subprocess.run(["nft", "-f", "-"], input=f"table ip {name} {{}}\ndelete table ip {name}\n",
                   text=True, capture_output=True)


async def wait_serving(ip: str, port: int) -> None:
    with trio.fail_after(20):
        while True:
            try:
                await http_get(ip, port, timeout=1)
                return
            except (OSError, trio.BrokenResourceError, trio.TooSlowError):
                await trio.sleep(0.1)


def pod_name(page: str) -> str:
    return page.split("pod: ")[1].split("<")[0]


async def test_host_and_containers_reach_pods_through_the_vip(pods, table, blackhole) -> None:
    endpoints = [("127.0.1.1", 24301), ("127.0.1.2", 24302), ("127.0.1.3", 24303)]
    for i, (ip, port) in enumerate(endpoints):
        pods(f"web-{i}", ip, port)
    for ip, port in endpoints:
        await wait_serving(ip, port)
    state = ProxyState(
        [service_object("web", HOST_VIP, [("http", PORT, "TCP")]),
         service_object("web-c", CONTAINER_VIP, [("http", PORT, "TCP")])],
        [endpoints_object(name, endpoints, port_name="http") for name in ("web", "web-c")],
    )
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(partial(
            serve_proxy, state, mode="nftables", table=table, localnet_interfaces=["docker0"]))
        seen = Counter([pod_name(await http_get(HOST_VIP, PORT)) for _ in range(60)])
        assert set(seen) == {"web-0", "web-1", "web-2"}
        # From a container: a loop of requests on the VIP, printing the pod that answered
        # (busybox nc: the image's static busybox wget crashes resolving names).
        script = f"""
for i in $(seq 30); do
  out=$(printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {CONTAINER_VIP} {PORT})
  case "$out" in *pod:*) echo "$out" | grep pod: ;; *) echo FAILED ;; esac
done
"""
        done = await trio.run_process(
            ["docker", "run", "--rm", "--name", f"npt-{os.getpid()}-client", IMAGE,
             "sh", "-c", script], capture_stdout=True, capture_stderr=True, check=False)
        out = done.stdout.decode()
        assert "FAILED" not in out, done.stderr.decode()
        assert {pod_name(line) for line in out.splitlines() if "pod: " in line} == {
            "web-0", "web-1", "web-2"}
        # Scale to one: only that pod answers, from the host and from containers.
        state.set_endpoints([endpoints_object(n, endpoints[:1], port_name="http")
                             for n in ("web", "web-c")])
        await handle.wait_synced()
        assert {pod_name(await http_get(HOST_VIP, PORT)) for _ in range(10)} == {"web-0"}
        nursery.cancel_scope.cancel()


async def test_deleting_a_pod_while_a_client_loops_userspace_fails_nothing(pods) -> None:
    endpoints = [("127.0.1.1", 24321), ("127.0.1.2", 24322)]
    names = [pods(f"del-{i}", ip, port) for i, (ip, port) in enumerate(endpoints)]
    for ip, port in endpoints:
        await wait_serving(ip, port)
    state = ProxyState([service_object("web", HOST_VIP, [("http", PORT + 1, "TCP")])],
                       [endpoints_object("web", endpoints, port_name="http")])
    answers: list[str] = []
    failures: list[str] = []

    async def client(stop: trio.Event) -> None:
        while not stop.is_set():
            try:
                answers.append(pod_name(await http_get(HOST_VIP, PORT + 1)))
            except (OSError, trio.BrokenResourceError, trio.TooSlowError) as exc:
                failures.append(repr(exc))

    async with trio.open_nursery() as nursery:
        handle = await nursery.start(partial(serve_proxy, state, mode="userspace"))
        stop = trio.Event()
        nursery.start_soon(client, stop)
        # The pod is killed before the endpoints controller removes it from the Endpoints.
        await trio.run_process(["docker", "rm", "-f", names[1]], capture_stdout=True)
        count = len(answers)
        while len(answers) < count + 30:
            await trio.sleep(0.02)
        state.set_endpoints([endpoints_object("web", endpoints[:1], port_name="http")])
        await handle.wait_synced()
        count = len(answers)
        while len(answers) < count + 30:
            await trio.sleep(0.02)
        stop.set()
        nursery.cancel_scope.cancel()
    assert failures == []
    assert set(answers[-30:]) == {"del-0"}
