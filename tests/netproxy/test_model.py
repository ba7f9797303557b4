"""desired_entries: Services + Endpoints -> what the data plane serves (pure, no network)."""

from __future__ import annotations

import pytest

from netproxy import Backend, ProxyState, desired_entries
from netproxy.testing import endpoints_object, service_object


def test_cluster_ip_service_maps_vip_port_to_ready_host_ports() -> None:
    svc = service_object("web", "127.10.0.1", [("http", 80, "TCP")])
    eps = endpoints_object(
        "web", [("127.0.1.2", 24002), ("127.0.1.1", 24001)], port_name="http"
    )
    [entry] = desired_entries([svc], [eps])
    assert (entry.vip, entry.port, entry.protocol, entry.node_port) == ("127.10.0.1", 80, "TCP", None)
    # Sorted, so renders are stable and "no change" is detectable.
    assert entry.backends == (Backend("127.0.1.1", 24001), Backend("127.0.1.2", 24002))
    assert entry.affinity_timeout is None
    assert entry.key == "default/web:http"


def test_not_ready_addresses_receive_no_traffic() -> None:
    svc = service_object("web", "127.10.0.1", [("", 80, "TCP")])
    eps = endpoints_object("web", [("127.0.1.1", 24001)], not_ready=[("127.0.1.2", 24002)])
    [entry] = desired_entries([svc], [eps])
    assert entry.backends == (Backend("127.0.1.1", 24001),)


def test_endpoint_ports_are_matched_by_service_port_name_and_protocol() -> None:
    svc = service_object("dns", "127.10.0.2", [("dns", 53, "UDP"), ("dns-tcp", 53, "TCP")])
    eps = {
        "metadata": {"name": "dns", "namespace": "default"},
        "subsets": [
            {
                "addresses": [{"ip": "127.0.1.1"}],
                "ports": [
                    {"name": "dns", "port": 24053, "protocol": "UDP"},
                    {"name": "dns-tcp", "port": 24054, "protocol": "TCP"},
                    {"name": "metrics", "port": 24055, "protocol": "TCP"},
                ],
            }
        ],
    }
    entries = {(e.port_name, e.protocol): e.backends for e in desired_entries([svc], [eps])}
    assert entries == {
        ("dns", "UDP"): (Backend("127.0.1.1", 24053),),
        ("dns-tcp", "TCP"): (Backend("127.0.1.1", 24054),),
    }


def test_node_port_and_affinity() -> None:
    svc = service_object(
        "web", "127.10.0.1", [("", 80, "TCP", 30080)], type="NodePort", affinity_timeout=60
    )
    [entry] = desired_entries([svc], [])
    assert entry.node_port == 30080
    assert entry.affinity_timeout == 60
    assert entry.backends == ()  # no Endpoints yet: served, but rejected (see render tests)


def test_affinity_timeout_defaults_to_kubernetes_three_hours() -> None:
    svc = service_object("web", "127.10.0.1", [("", 80, "TCP")])
    svc["spec"]["sessionAffinity"] = "ClientIP"
    [entry] = desired_entries([svc], [])
    assert entry.affinity_timeout == 10800


def test_node_port_ignored_for_cluster_ip_type() -> None:
    svc = service_object("web", "127.10.0.1", [("", 80, "TCP", 30080)], type="ClusterIP")
    [entry] = desired_entries([svc], [])
    assert entry.node_port is None


def test_headless_external_name_and_unallocated_services_get_no_rules() -> None:
    headless = service_object("h", "None", [("", 80, "TCP")])
    external = service_object("x", None, [("", 80, "TCP")], type="ExternalName")
    pending = service_object("p", None, [("", 80, "TCP")])
    eps = [endpoints_object(n, [("127.0.1.1", 24001)]) for n in ("h", "x", "p")]
    assert desired_entries([headless, external, pending], eps) == []


def test_node_port_service_without_vip_still_serves_its_node_port() -> None:
    svc = service_object("np", None, [("", 80, "TCP", 30081)], type="NodePort")
    [entry] = desired_entries([svc], [endpoints_object("np", [("127.0.1.1", 24001)])])
    assert entry.vip is None and entry.node_port == 30081


def test_endpoints_of_another_namespace_are_not_used() -> None:
    svc = service_object("web", "127.10.0.1", [("", 80, "TCP")], namespace="a")
    eps = endpoints_object("web", [("127.0.1.1", 24001)], namespace="b")
    [entry] = desired_entries([svc], [eps])
    assert entry.backends == ()


def test_malformed_objects_are_skipped_not_raised() -> None:
    good = service_object("good", "127.10.0.1", [("", 80, "TCP")])
    bad = [
        {"metadata": {}},  # no name
        service_object("badip", "not-an-ip", [("", 80, "TCP")]),
        service_object("badport", "127.10.0.3", [("", 70000, "TCP")]),
        {"metadata": {"name": "nospec"}},
        service_object("sctp", "127.10.0.4", [("", 80, "SCTP")]),
    ]
    eps = endpoints_object("good", [("127.0.1.1", 24001), ("999.1.1.1", 24002)])
    eps["subsets"].append({"addresses": [{"ip": "127.0.1.3"}], "ports": [{"port": "x"}]})
    [entry] = desired_entries([*bad, good], [eps, {"metadata": None}])
    assert entry.name == "good"
    assert entry.backends == (Backend("127.0.1.1", 24001),)


async def test_proxy_state_applies_watch_events_and_reports_changes() -> None:
    state = ProxyState()
    seen = state.version
    state.apply_event("Service", "ADDED", service_object("web", "127.10.0.1", [("", 80, "TCP")]))
    state.apply_event("Endpoints", "ADDED", endpoints_object("web", [("127.0.1.1", 24001)]))
    assert await state.wait_changed(seen) == seen + 2
    [entry] = state.entries()
    assert entry.backends == (Backend("127.0.1.1", 24001),)
    state.apply_event("Endpoints", "DELETED", endpoints_object("web", []))
    assert state.entries()[0].backends == ()
    state.apply_event("Service", "DELETED", service_object("web", "127.10.0.1", []))
    assert state.entries() == []
    with pytest.raises(ValueError, match="not 'Pod'"):
        state.apply_event("Pod", "ADDED", {})
    with pytest.raises(ValueError, match="unknown watch event type"):
        state.apply_event("Service", "BOOKMARK", {})


def test_contract_with_the_endpoints_controller() -> None:
    """What the endpoints controller writes is what the data plane reads: ready pods at
    hostIP:hostPort (from the agent's host-ports annotation), never not-ready or terminating."""
    from controlplane.controllers._endpoints_plan import desired_endpoints

    def pod(name: str, host_ip: str, host_port: int, *, ready: bool = True, **meta) -> dict:
        return {
            "metadata": {"name": name, "namespace": "default", "uid": name,
                         "labels": {"app": "web"},
                         "annotations": {"edgeplane.io/host-ports": f'{{"80/TCP": {host_port}}}'},
                         **meta},
            "spec": {"nodeName": host_ip,
                     "containers": [{"name": "c", "ports": [{"containerPort": 80}]}]},
            "status": {"phase": "Running", "hostIP": host_ip,
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
        }

    svc = service_object("web", "127.10.0.1", [("http", 80, "TCP")])
    svc["spec"]["selector"] = {"app": "web"}
    for port in svc["spec"]["ports"]:
        port["targetPort"] = 80
    pods = [
        pod("a", "127.0.1.1", 24001),
        pod("b", "127.0.1.2", 24002),
        pod("c", "127.0.1.2", 24003),
        pod("d", "127.0.1.1", 24004, ready=False),
        pod("e", "127.0.1.1", 24005, deletionTimestamp="2026-01-01T00:00:00Z"),
    ]
    [entry] = desired_entries([svc], [desired_endpoints(svc, pods)])
    assert entry.backends == (
        Backend("127.0.1.1", 24001), Backend("127.0.1.2", 24002), Backend("127.0.1.2", 24003))
