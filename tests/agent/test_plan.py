"""Pure decision and status functions of the pod syncer (no Docker, no clock)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from edge_agent import BackoffPolicy, ContainerInfo, ContainerRecord, ProbeState, plan_pod
from edge_agent._plan import Finalize, Kill, Remove, Start, Wait
from edge_agent._podspec import PodConfigError, container_spec, image_registry, pull_policy
from edge_agent._status import compute_pod_status, host_ports

from .conftest import pod

NOW = 1_800_000_000.0
POLICY = BackoffPolicy(base=10, cap=300)


def container(cid: str, *, state: str = "running", restart: int = 0, exit_code: int | None = None,
              finished: float | None = None, started: float = NOW - 100, uid: str = "u1",
              name: str = "web", image: str = "edgeplane/demo:latest", **kw) -> ContainerInfo:
    return ContainerInfo(id=cid, pod_namespace="default", pod_name="p", pod_uid=uid,
                         container_name=name, restart_count=restart, grace_seconds=30,
                         image=image, image_id="sha256:abc", state=state, exit_code=exit_code,
                         started_at=started, finished_at=finished, created_at=started - 1,
                         ip="172.17.0.5", **kw)


def test_new_pod_starts_each_container_once():
    p = pod("p", uid="u1")
    assert plan_pod(p, [], {}, {}, NOW, POLICY) == [Start("web", 0, 0.0)]


def test_running_container_is_left_alone():
    assert plan_pod(pod("p", uid="u1"), [container("c1")], {}, {}, NOW, POLICY) == []


@pytest.mark.parametrize("policy,exit_code,restarts", [
    ("Always", 0, True), ("Always", 137, True), ("OnFailure", 1, True),
    ("OnFailure", 0, False), ("Never", 1, False), ("Never", 0, False)])
def test_restart_policy_decides_whether_an_exited_container_restarts(policy, exit_code, restarts):
    # Kubernetes: restartPolicy applies to every container of the pod.
    p = pod("p", uid="u1", restart_policy=policy)
    exited = container("c1", state="exited", exit_code=exit_code, finished=NOW - 1)
    actions = plan_pod(p, [exited], {}, {}, NOW, POLICY)
    assert actions == ([Start("web", 1, 10.0)] if restarts else [])


def test_crash_loop_backs_off_doubling_up_to_the_cap():
    # kubelet: first restart immediate, then 10 s, 20 s, 40 s ... capped at 5 minutes.
    p = pod("p", uid="u1")
    rec = {"web": ContainerRecord(backoff=20.0)}
    exited = container("c3", state="exited", exit_code=1, restart=2, finished=NOW - 5)
    [wait] = plan_pod(p, [exited], rec, {}, NOW, POLICY)
    assert isinstance(wait, Wait) and wait.reason == "CrashLoopBackOff"
    assert "back-off 20s" in wait.message
    assert wait.until == NOW - 5 + 20  # the agent wakes the pod then, not at some relist
    assert plan_pod(p, [exited], rec, {}, NOW + 15.1, POLICY) == [Start("web", 3, 40.0)]
    rec["web"].backoff = 300.0
    assert plan_pod(p, [exited], rec, {}, NOW + 300, POLICY) == [Start("web", 3, 300.0)]


def test_backoff_is_forgotten_after_a_long_quiet_period():
    p = pod("p", uid="u1")
    rec = {"web": ContainerRecord(backoff=160.0)}
    exited = container("c3", state="exited", exit_code=1, restart=5, finished=NOW - 601)
    assert plan_pod(p, [exited], rec, {}, NOW, POLICY) == [Start("web", 6, 10.0)]


def test_image_pull_failure_backs_off_as_image_pull_backoff():
    p = pod("p", uid="u1")
    rec = {"web": ContainerRecord(failed_at=NOW - 3, fail_backoff=10.0,
                                  fail_reason="ImagePullBackOff",
                                  fail_message='Back-off pulling image "edgeplane/demo:latest"',
                                  waiting=("ErrImagePull", "x"))}
    [wait] = plan_pod(p, [], rec, {}, NOW, POLICY)
    assert (wait.reason, wait.message) == (
        "ImagePullBackOff", 'Back-off pulling image "edgeplane/demo:latest"')
    assert wait.until == NOW - 3 + 10
    assert plan_pod(p, [], rec, {}, NOW + 7.5, POLICY) == [Start("web", 0, 0.0)]


def test_liveness_failure_kills_with_the_probe_grace_else_the_pod_grace():
    p = pod("p", uid="u1", grace=12)
    c = container("c1")
    assert plan_pod(p, [c], {}, {"c1": None}, NOW, POLICY) == [
        Kill("c1", 12, "liveness probe failed")]
    assert plan_pod(p, [c], {}, {"c1": 3}, NOW, POLICY) == [Kill("c1", 3, "liveness probe failed")]


def test_deleted_pod_is_stopped_gracefully_then_removed_then_finalized():
    p = pod("p", uid="u1", grace=7)
    p["metadata"]["deletionTimestamp"] = "2027-01-15T08:00:00Z"
    running = container("c1")
    assert plan_pod(p, [running], {}, {}, NOW, POLICY) == [Kill("c1", 7, "deleted")]
    stopped = container("c1", state="exited", exit_code=0, finished=NOW)
    assert plan_pod(p, [stopped], {}, {}, NOW, POLICY) == [Remove("c1"), Finalize()]
    # deletionGracePeriodSeconds (set by the API server on DELETE) wins over the spec.
    p["metadata"]["deletionGracePeriodSeconds"] = 2
    assert plan_pod(p, [running], {}, {}, NOW, POLICY) == [Kill("c1", 2, "deleted")]


def test_orphaned_containers_are_stopped_with_their_labelled_grace():
    c = container("c9")
    assert plan_pod(None, [c], {}, {}, NOW, POLICY) == [Kill("c9", 30, "orphaned")]
    assert plan_pod(None, [], {}, {}, NOW, POLICY) == [Finalize()]


def test_only_the_latest_and_previous_containers_are_kept():
    old = [container(f"c{i}", state="exited", exit_code=1, restart=i, finished=NOW - 50 + i)
           for i in range(3)]
    actions = plan_pod(pod("p", uid="u1"), [*old, container("c3", restart=3)], {}, {}, NOW,
                       POLICY)
    assert sorted(a.container_id for a in actions if isinstance(a, Remove)) == ["c0", "c1"]


def test_status_of_a_running_ready_pod():
    p = pod("p", uid="u1")
    c = container("c1", host_ports={"80/TCP": 32770})
    st = compute_pod_status(p, [c], {}, {"c1": ProbeState(ready=True, started=True)},
                            node_address="127.0.1.5", scheme="docker", now=NOW)
    assert st["phase"] == "Running"
    assert (st["hostIP"], st["podIP"]) == ("127.0.1.5", "172.17.0.5")
    conds = {c["type"]: c["status"] for c in st["conditions"]}
    assert conds == {"PodScheduled": "True", "Initialized": "True",
                     "ContainersReady": "True", "Ready": "True"}
    [cs] = st["containerStatuses"]
    assert cs["containerID"] == "docker://c1" and cs["ready"] and cs["restartCount"] == 0
    assert cs["state"] == {"running": {"startedAt": "2027-01-15T07:58:20Z"}}
    assert json.loads(host_ports([c])) == {"80/TCP": 32770}


def test_status_not_ready_until_readiness_passes():
    p = pod("p", uid="u1")
    st = compute_pod_status(p, [container("c1")], {}, {"c1": ProbeState(False, True)},
                            node_address="127.0.1.5", scheme="docker", now=NOW)
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "ContainersNotReady"
    assert ready["message"] == "containers with unready status: [web]"


def test_status_waiting_reasons_and_phases():
    p = pod("p", uid="u1")
    st = compute_pod_status(p, [], {"web": ContainerRecord(waiting=("ErrImagePull", "boom"))},
                            {}, node_address="a", scheme="docker", now=NOW)
    assert st["phase"] == "Pending"
    assert st["containerStatuses"][0]["state"] == {
        "waiting": {"reason": "ErrImagePull", "message": "boom"}}
    # A crash-looping container is waiting, with the last termination; the pod is Running.
    exited = container("c1", state="exited", exit_code=2, finished=NOW - 1)
    st = compute_pod_status(p, [exited], {"web": ContainerRecord(waiting=("CrashLoopBackOff", "m"))},
                            {}, node_address="a", scheme="docker", now=NOW)
    cs = st["containerStatuses"][0]
    assert st["phase"] == "Running"
    assert cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert cs["lastState"]["terminated"]["exitCode"] == 2
    assert cs["lastState"]["terminated"]["reason"] == "Error"


@pytest.mark.parametrize("policy,exit_code,phase", [
    ("Never", 0, "Succeeded"), ("Never", 3, "Failed"), ("OnFailure", 0, "Succeeded")])
def test_terminal_phases(policy, exit_code, phase):
    p = pod("p", uid="u1", restart_policy=policy)
    c = container("c1", state="exited", exit_code=exit_code, finished=NOW)
    st = compute_pod_status(p, [c], {}, {}, node_address="a", scheme="docker", now=NOW)
    assert st["phase"] == phase
    assert st["containerStatuses"][0]["state"]["terminated"]["reason"] == (
        "Completed" if exit_code == 0 else "Error")


def test_unchanged_pod_computes_an_identical_status():
    # Status is written only when it changed: transition times must not drift.
    p = pod("p", uid="u1")
    args = ([container("c1")], {}, {"c1": ProbeState(True, True)})
    first = compute_pod_status(p, *args, node_address="a", scheme="docker", now=NOW)
    again = compute_pod_status(p, *args, node_address="a", scheme="docker", now=NOW + 60,
                               old_status=first)
    assert first == again


def test_container_spec_maps_kubernetes_fields_to_docker():
    p = pod("p", uid="u1", command=["sh", "-c"], args=["echo $(A)"],
            env=[{"name": "A", "value": "1"}, {"name": "B", "value": "x$(A)"},
                 {"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            workingDir="/tmp", resources={"limits": {"cpu": "500m", "memory": "64Mi"}},
            ports=[{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP",
                                           "hostPort": 23053}])
    spec = container_spec(p, p["spec"]["containers"][0], node_name="n1",
                          node_address="127.0.1.3", restart_count=2)
    assert spec.command == ["sh", "-c"] and spec.args == ["echo $(A)"]
    assert spec.env == {"A": "1", "B": "x1", "N": "p"}
    assert (spec.nano_cpus, spec.mem_limit) == (500_000_000, 64 * 1024 * 1024)
    assert [(q.container_port, q.protocol, q.host_ip, q.host_port) for q in spec.ports] == [
        (80, "TCP", "127.0.1.3", None), (53, "UDP", "127.0.1.3", 23053)]
    assert spec.labels()["io.edgeplane.container.restart-count"] == "2"


def test_host_network_pod_uses_the_node_ports_and_address():
    p = pod("h", uid="u1", ports=[{"containerPort": 8080}, {"containerPort": 53,
                                                            "protocol": "UDP"}])
    p["spec"]["hostNetwork"] = True
    spec = container_spec(p, p["spec"]["containers"][0], node_name="n1",
                          node_address="127.0.1.3", restart_count=0)
    assert spec.host_network and spec.hostname == ""  # the node's hostname, as in Kubernetes
    assert [(q.container_port, q.host_port) for q in spec.ports] == [(8080, 8080), (53, 53)]
    # A host-network container has no address nor port mapping of its own.
    c = replace(container("c1"), ip="", host_ports={})
    st = compute_pod_status(p, [c], {}, {"c1": ProbeState(ready=True, started=True)},
                            node_address="127.0.1.3", scheme="docker", now=NOW)
    assert st["podIP"] == st["hostIP"] == "127.0.1.3"
    assert json.loads(host_ports([c], p)) == {"8080/TCP": 8080, "53/UDP": 53}
    p["spec"]["containers"][0]["ports"][0]["hostPort"] = 9090
    with pytest.raises(PodConfigError, match="hostPort must match containerPort"):
        container_spec(p, p["spec"]["containers"][0], node_name="n1",
                       node_address="127.0.1.3", restart_count=0)


def test_bad_resource_quantity_is_a_config_error():
    p = pod("p", uid="u1", resources={"limits": {"memory": "lots"}})
    with pytest.raises(PodConfigError, match="invalid resource quantity"):
        container_spec(p, p["spec"]["containers"][0], node_name="n", node_address="a",
                       restart_count=0)


def test_pull_policy_defaults_and_registry_names():
    assert pull_policy({"image": "nginx"}) == "Always"
    assert pull_policy({"image": "nginx:latest"}) == "Always"
    assert pull_policy({"image": "nginx:1.25"}) == "IfNotPresent"
    assert pull_policy({"image": "127.0.0.1:5000/a:latest", "imagePullPolicy": "Never"}) == "Never"
    assert image_registry("nginx") == "docker.io"
    assert image_registry("127.0.0.1:5000/a/b:1") == "127.0.0.1:5000"
    assert image_registry("edgeplane/demo:latest") == "docker.io"


def test_log_request_targets():
    from edge_agent._logs import LogLookupError, parse_log_target

    r = parse_log_target("/api/v1/namespaces/ns1/pods/p1/log?container=c&follow=true&tailLines=5")
    assert (r.namespace, r.pod, r.container, r.follow, r.tail_lines) == ("ns1", "p1", "c", True, 5)
    r = parse_log_target("/containerLogs/ns1/p1/c2?previous=1")
    assert (r.container, r.previous, r.follow) == ("c2", True, False)
    with pytest.raises(LogLookupError) as bad:
        parse_log_target("/api/v1/namespaces/ns1/pods/p1/log?tailLines=ten")
    assert bad.value.code == 400 and "tailLines" in bad.value.message
    with pytest.raises(LogLookupError) as missing:
        parse_log_target("/etc/passwd")
    assert missing.value.code == 404


def test_agent_command_line_rejects_bad_input_clearly():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "edge_agent", "--name", "n", "--data-dir", "/tmp/x",
                          "--labels", "novalue", "--runtime", "hollow"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "labels must be k=v" in out.stderr and "Traceback" not in out.stderr


# ---- safety invariants of plan_pod (property tests) ----------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_containers = st.lists(st.builds(
    lambda i, state, restart, code, age: container(
        f"c{i}", state=state, restart=restart, exit_code=code if state == "exited" else None,
        finished=NOW - age if state == "exited" else None),
    st.integers(0, 50), st.sampled_from(["running", "exited", "created"]),
    st.integers(0, 5), st.sampled_from([0, 1, 137]), st.floats(0, 700)),
    max_size=6, unique_by=lambda c: c.id)


@settings(max_examples=300, deadline=None)
@given(_containers, st.sampled_from(["Always", "OnFailure", "Never"]), st.booleans(),
       st.floats(0, 300), st.sets(st.sampled_from([f"c{i}" for i in range(51)]), max_size=3))
def test_plan_never_starts_beside_a_running_container_or_reuses_a_restart_count(
        containers, policy, deleting, backoff, unhealthy):
    p = pod("p", uid="u1", restart_policy=policy)
    if deleting:
        p["metadata"]["deletionTimestamp"] = "2027-01-15T08:00:00Z"
    actions = plan_pod(p, containers, {"web": ContainerRecord(backoff=backoff)},
                       dict.fromkeys(unhealthy), NOW, POLICY)
    starts = [a for a in actions if isinstance(a, Start)]
    assert len(starts) <= 1
    if deleting:
        assert not starts  # a pod being deleted is never (re)started
    if starts:
        assert not any(c.running for c in containers)
        assert starts[0].restart_count > max((c.restart_count for c in containers), default=-1) \
            or not containers
    ids = {c.id for c in containers}
    for a in actions:
        if isinstance(a, Kill):
            assert a.container_id in ids and next(c for c in containers
                                                  if c.id == a.container_id).running
        if isinstance(a, Remove):
            assert not next(c for c in containers if c.id == a.container_id).running
