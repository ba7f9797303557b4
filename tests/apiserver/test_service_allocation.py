"""Service VIP and node-port allocation (issue 6): in-process on a MemoryStore.

Kubernetes' behaviour is the reference: pkg/registry/core/service/ipallocator and portallocator
(a taken or out-of-range value is 422 "provided IP is already allocated" / "... not in the valid
range"), patchAllocatedValues on update, release on delete or on a type change.
"""

from __future__ import annotations

import ipaddress

import pytest
import trio

from controlplane._allocators import NODE_PORT_PREFIX, SERVICE_IP_PREFIX, ServiceNetwork
from controlplane.errors import ApiError
from controlplane.registry import Registry
from raftstore import MemoryStore

NETWORK = ServiceNetwork.parse("127.12.0.0/28")  # 14 usable VIPs: "full" is reachable


@pytest.fixture
async def registry() -> Registry:
    reg = Registry(MemoryStore(), service_network=NETWORK)
    await reg.ensure_namespaces()
    return reg


def svc(name: str, **spec: object) -> dict:
    body: dict = {"selector": {"app": name}, "ports": [{"port": 80}]}
    body.update(spec)
    return {"metadata": {"name": name}, "spec": body}


async def held(registry: Registry, prefix: str) -> dict[str, str]:
    rr = await registry.store.range(prefix)
    return {kv.key[len(prefix):]: kv.value.decode() for kv in rr.kvs}


async def test_vips_are_allocated_unique_in_range_and_released(registry: Registry) -> None:
    ips = []
    for i in range(14):
        created = await registry.create("services", "default", svc(f"s{i}"))
        spec = created["spec"]
        assert spec["clusterIPs"] == [spec["clusterIP"]] and spec["ipFamilies"] == ["IPv4"]
        assert ipaddress.IPv4Address(spec["clusterIP"]) in NETWORK.cidr
        assert spec["clusterIP"] not in ("127.12.0.0", "127.12.0.15")  # network, broadcast
        ips.append(spec["clusterIP"])
    assert len(set(ips)) == 14
    assert (await held(registry, SERVICE_IP_PREFIX)) == {ip: f"default/s{i}" for i, ip in enumerate(ips)}
    # the range is full: Kubernetes answers 500 "range is full"
    with pytest.raises(ApiError) as err:
        await registry.create("services", "default", svc("extra"))
    assert err.value.code == 500 and "range is full" in err.value.message
    # a delete frees the VIP, and the next Service may get it
    await registry.delete("services", "default", "s3")
    assert ips[3] not in await held(registry, SERVICE_IP_PREFIX)
    again = await registry.create("services", "default", svc("extra"))
    assert again["spec"]["clusterIP"] == ips[3]
    # the stored object carries the VIP (what kubectl get svc shows)
    assert (await registry.get("services", "default", "extra"))["spec"]["clusterIP"] == ips[3]


async def test_requested_vip_honoured_taken_or_out_of_range_is_422(registry: Registry) -> None:
    created = await registry.create("services", "default", svc("a", clusterIP="127.12.0.7"))
    assert created["spec"]["clusterIP"] == "127.12.0.7"
    with pytest.raises(ApiError) as err:
        await registry.create("services", "default", svc("b", clusterIP="127.12.0.7"))
    assert err.value.code == 422
    assert "spec.clusterIPs[0]: Invalid value: \"127.12.0.7\": provided IP is already allocated" in err.value.message
    with pytest.raises(ApiError) as err:
        await registry.create("services", "default", svc("b", clusterIP="10.0.0.1"))
    assert err.value.code == 422
    assert "provided IP is not in the valid range. The range of valid IPs is 127.12.0.0/28" in err.value.message
    with pytest.raises(ApiError) as err:
        await registry.create("services", "default", svc("b", clusterIP="127.12.0.15"))  # broadcast
    assert err.value.code == 422
    # nothing leaked by the failures
    assert list(await held(registry, SERVICE_IP_PREFIX)) == ["127.12.0.7"]
    with pytest.raises(ApiError):
        await registry.get("services", "default", "b")


async def test_headless_and_external_name_get_no_vip(registry: Registry) -> None:
    headless = await registry.create("services", "default", svc("h", clusterIP="None"))
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["clusterIPs"] == ["None"]
    by_list = await registry.create("services", "default", svc("h2", clusterIPs=["None"]))
    assert by_list["spec"]["clusterIP"] == "None" and by_list["spec"]["clusterIPs"] == ["None"]
    ext = await registry.create("services", "default", {"metadata": {"name": "e"},
                                                        "spec": {"type": "ExternalName", "externalName": "example.org"}})
    assert "clusterIP" not in ext["spec"]
    assert await held(registry, SERVICE_IP_PREFIX) == {}


async def test_vip_is_immutable_and_kept_by_updates_that_omit_it(registry: Registry) -> None:
    created = await registry.create("services", "default", svc("a"))
    vip = created["spec"]["clusterIP"]
    # a replace without clusterIP (kubectl replace of a hand-written file) keeps the VIP
    replaced = await registry.update("services", "default", "a", svc("a", selector={"app": "other"}))
    assert replaced["spec"]["clusterIP"] == vip and replaced["spec"]["selector"] == {"app": "other"}
    other = "127.12.0.9" if vip != "127.12.0.9" else "127.12.0.10"
    with pytest.raises(ApiError) as err:
        await registry.patch("services", "default", "a", "merge", {"spec": {"clusterIP": other}})
    assert err.value.code == 422 and "field is immutable" in err.value.message
    assert list(await held(registry, SERVICE_IP_PREFIX)) == [vip]


async def test_node_ports_allocated_requested_taken_and_released(registry: Registry) -> None:
    two = svc("np", type="NodePort", ports=[{"name": "a", "port": 80}, {"name": "b", "port": 81, "nodePort": 30080}])
    created = await registry.create("services", "default", two)
    ports = created["spec"]["ports"]
    assert ports[1]["nodePort"] == 30080
    assert 30000 <= ports[0]["nodePort"] <= 32767 and ports[0]["nodePort"] != 30080
    assert set(await held(registry, NODE_PORT_PREFIX)) == {str(ports[0]["nodePort"]), "30080"}
    with pytest.raises(ApiError) as err:
        await registry.create("services", "default", svc("np2", type="NodePort", ports=[{"port": 80, "nodePort": 30080}]))
    assert err.value.code == 422
    assert 'spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated' in err.value.message
    with pytest.raises(ApiError) as err:
        await registry.create("services", "default", svc("np2", type="NodePort", ports=[{"port": 80, "nodePort": 80}]))
    assert err.value.code == 422 and "provided port is not in the valid range" in err.value.message
    # a type change to ClusterIP releases the node ports (and drops them from the object)
    changed = await registry.patch("services", "default", "np", "merge", {"spec": {"type": "ClusterIP"}})
    assert all("nodePort" not in p for p in changed["spec"]["ports"])
    assert await held(registry, NODE_PORT_PREFIX) == {}
    # back to NodePort: new ports; a delete releases them and the VIP
    back = await registry.patch("services", "default", "np", "merge", {"spec": {"type": "NodePort"}})
    assert all(30000 <= p["nodePort"] <= 32767 for p in back["spec"]["ports"])
    assert len(await held(registry, NODE_PORT_PREFIX)) == 2
    await registry.delete("services", "default", "np")
    assert await held(registry, NODE_PORT_PREFIX) == {} and await held(registry, SERVICE_IP_PREFIX) == {}


async def test_node_port_kept_when_an_update_omits_it(registry: Registry) -> None:
    created = await registry.create("services", "default", svc("np", type="NodePort"))
    port = created["spec"]["ports"][0]["nodePort"]
    updated = await registry.update("services", "default", "np", svc("np", type="NodePort", selector={"x": "y"}))
    assert updated["spec"]["ports"][0]["nodePort"] == port
    assert list(await held(registry, NODE_PORT_PREFIX)) == [str(port)]


async def test_concurrent_creates_never_share_a_vip(registry: Registry) -> None:
    results: list[str] = []

    async def create(i: int) -> None:
        results.append((await registry.create("services", "default", svc(f"c{i}")))["spec"]["clusterIP"])

    async with trio.open_nursery() as nursery:
        for i in range(14):
            nursery.start_soon(create, i)
    assert len(set(results)) == 14


async def test_namespace_deletion_releases_vips(registry: Registry) -> None:
    await registry.create("namespaces", None, {"metadata": {"name": "team"}})
    await registry.create("services", "team", svc("a"))
    await registry.delete("namespaces", None, "team")
    assert await held(registry, SERVICE_IP_PREFIX) == {}


def test_service_cidr_parse_errors() -> None:
    with pytest.raises(ValueError, match="not an IPv4 network"):
        ServiceNetwork.parse("127.10.0.1/16")
    with pytest.raises(ValueError, match="too small"):
        ServiceNetwork.parse("127.10.0.0/30")
    assert str(ServiceNetwork.parse(None).cidr) == "10.96.0.0/12"


async def test_repair_adds_missing_keys_and_frees_orphans(registry: Registry) -> None:
    from controlplane._allocators import repair_allocations

    created = await registry.create("services", "default", svc("np", type="NodePort"))
    vip, port = created["spec"]["clusterIP"], created["spec"]["ports"][0]["nodePort"]
    # a Service stored before allocation existed: its keys are missing
    await registry.store.delete(SERVICE_IP_PREFIX + vip)
    # a key nobody holds (a Service removed by a path that did not free it); not the VIP the
    # Service drew at random from the 14 of the range
    orphan = "127.12.0.14" if vip != "127.12.0.14" else "127.12.0.13"
    await registry.store.put(SERVICE_IP_PREFIX + orphan, b"default/gone")
    assert await repair_allocations(registry.store) == (1, 1)
    assert await held(registry, SERVICE_IP_PREFIX) == {vip: "default/np"}
    assert await held(registry, NODE_PORT_PREFIX) == {str(port): "default/np"}
    assert await repair_allocations(registry.store) == (0, 0)  # nothing left to fix
    with pytest.raises(ApiError):  # the repaired key protects the VIP again
        await registry.create("services", "default", svc("b", clusterIP=vip))
