"""Every scenario, with its short CI settings, against real clusters (Docker pods, netproxy).

Each runs as a user runs it (``python -m scenarios.<name> --ci --json``): stdout must be one
JSON object, every check in it must pass, and the exit status must say so. Every scenario
starts and tears down its own cluster, so they take 20-40 s each.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from conftest_cluster import pid_alive, start_cluster  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent.parent
# One scenario with CI settings takes well under a minute; a loaded CI host may be slower.
SCENARIO_TIMEOUT_S = 240
# Time a scenario sent SIGTERM gets to stop its processes and remove its namespaces.
TEARDOWN_TIMEOUT_S = 60

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.root]


def run_scenario(module: str, *args: str, debug: bool = True) -> tuple[int, dict[str, Any], str]:
    # Debug: a harness error comes with its traceback on stderr, for the failure message.
    env = {**os.environ, "EDGEPLANE_SCENARIO_DEBUG": "1" if debug else ""}
    proc = subprocess.Popen(
        [sys.executable, "-m", module, "--ci", "--json", *args], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env,
    )
    try:
        stdout, stderr = proc.communicate(timeout=SCENARIO_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        # SIGTERM first: the scenario tears its cluster (and namespaces) down, as for Ctrl-C.
        proc.terminate()
        try:
            stdout, stderr = proc.communicate(timeout=TEARDOWN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        pytest.fail(f"{module} did not finish within {SCENARIO_TIMEOUT_S} s\n"
                    f"stderr:\n{stderr[-4000:]}")
    try:
        report = json.loads(stdout)
    except ValueError:
        pytest.fail(f"{module} stdout is not one JSON object:\n{stdout[-2000:]}\n"
                    f"stderr:\n{stderr[-4000:]}")
    return proc.returncode, report, stderr


def assert_passed(code: int, report: dict[str, Any], stderr: str) -> None:
    failed = [c for c in report["checks"] if not c["passed"]]
    assert not failed and report["passed"] and code == 0, (
        f"exit {code}; failed checks: {json.dumps(failed, indent=1)}\n"
        f"figures: {json.dumps(report['figures'], indent=1)}\nstderr:\n{stderr[-4000:]}")


def test_leader_failover() -> None:
    code, report, stderr = run_scenario("scenarios.leader_failover")
    assert_passed(code, report, stderr)
    figures = report["figures"]
    assert figures["vip_requests_failed"] == 0
    assert figures["acked_writes_lost"] == 0
    assert figures["vip_requests"] > 0 and figures["api_writes"] > 0
    assert 0 < figures["time_to_new_leader_s"] <= figures["time_to_controllers_act_s"]


def test_node_loss() -> None:
    code, report, stderr = run_scenario("scenarios.node_loss")
    assert_passed(code, report, stderr)
    figures = report["figures"]
    assert 0 < figures["time_to_not_ready_s"] <= figures["time_to_replaced_s"]
    assert figures["pods_on_lost_node"] >= 1


def test_edge_autonomy() -> None:
    code, report, stderr = run_scenario("scenarios.edge_autonomy")
    assert_passed(code, report, stderr)
    figures = report["figures"]
    assert figures["vip_requests_during_outage"] > 0
    assert figures["pods_recreated"] == 0 and figures["containers_replaced"] == 0


def test_rolling_restart() -> None:
    code, report, stderr = run_scenario("scenarios.rolling_restart")
    assert_passed(code, report, stderr)
    assert report["figures"]["vip_requests_failed"] == 0
    assert report["figures"]["elections"] == 1  # only the leader's restart costs one


def test_full_restart() -> None:
    code, report, stderr = run_scenario("scenarios.full_restart")
    assert_passed(code, report, stderr)
    figures = report["figures"]
    assert figures["objects_missing"] == 0 and figures["pods_recreated_or_moved"] == 0
    assert figures["acked_writes"] > 0


def test_membership() -> None:
    code, report, stderr = run_scenario("scenarios.membership")
    assert_passed(code, report, stderr)
    assert report["figures"]["members_grown"] == 5 and report["figures"]["members_final"] == 3


def test_partition() -> None:
    code, report, stderr = run_scenario("scenarios.partition")
    assert report["skipped"] is None  # root is required here (pytest's root marker)
    assert_passed(code, report, stderr)
    figures = report["figures"]
    assert figures["writes_acked_while_partitioned"] > 0
    assert figures["acked_writes_lost"] == 0
    # Nothing of this run's network is left behind (other runs may be going on the machine).
    named = re.search(r"masters up in namespaces (ep\w+?)m1\b", stderr)
    assert named, stderr[-2000:]
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not [line for line in left.splitlines() if line.startswith(named.group(1))], left


@pytest.mark.parametrize(("stop_at", "sigint_ignored"),
                         [("masters up", False), ("holding the partition", False),
                          ("masters up", True)])
def test_partition_scenario_stopped_with_sigterm_removes_its_network(
        stop_at: str, sigint_ignored: bool) -> None:
    """`kill PID` of a running scenario: it tears down (masters, namespaces) as Ctrl-C does,
    and reports the interruption - also while the partition holds (the interrupt then ended
    several tasks at once, and the run died with a traceback and no report), and when it was
    started with SIGINT ignored, as a background job of a script is (it ran on to its end)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "scenarios.partition", "--ci", "--json"], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, cwd=ROOT,
        preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored else None,
    )
    prefix = None
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # ends when the scenario exits
            named = re.search(r"masters up in namespaces (ep\w+?)m1\b", line)
            if named:
                prefix = named.group(1)
            if prefix and stop_at in line:
                break
        assert prefix, "the scenario never reported its masters up"
        proc.terminate()
        stdout, stderr = proc.communicate(timeout=TEARDOWN_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    report = json.loads(stdout)
    assert not report["passed"]
    assert any(c["detail"] == "interrupted" for c in report["checks"] if not c["passed"]), report
    # Gone: the teardown deletes a namespace only once no process (a master) is left in it.
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not [line for line in left.splitlines() if line.startswith(prefix)], left
    # And its node agents (on this host, named <tag>n<i>), even one started as the signal came.
    agents = subprocess.run(["pgrep", "-f", f"cli node join --name {prefix[2:]}n"],
                            capture_output=True, text=True)
    assert agents.returncode == 1, f"agents left running: {agents.stdout}"
    # The interrupted run's logs stay, and the user is told where.
    logs = re.search(r"logs of this run: (\S+)", stderr)
    assert logs and (Path(logs.group(1)) / "m1.log").is_file(), stderr[-2000:]
    shutil.rmtree(logs.group(1))


def test_existing_cluster_through_edgectl(tmp_path: Path) -> None:
    """`edgectl scenario run NAME --kubeconfig` on a user's cluster: it gets its processes back."""
    with start_cluster(tmp_path / "c", masters=3, nodes=2, node_prefix=f"sx{os.getpid() % 1000}n",
                       node_net="127.0.7") as cluster:
        proc = subprocess.run(
            [sys.executable, "-m", "cli", "scenario", "run", "leader-failover", "--ci", "--json",
             "--kubeconfig", str(cluster.kubeconfig)],
            capture_output=True, text=True, timeout=SCENARIO_TIMEOUT_S, cwd=ROOT)
        report = json.loads(proc.stdout)
        assert_passed(proc.returncode, report, proc.stderr)
        processes = cluster.processes()
        assert all(pid_alive(p["pid"]) for p in processes if p["role"] in ("master", "node"))
        # The scenario's workload and writes are gone again.
        left = cluster.kubectl("get", "deployments,services,configmaps", "-l",
                               "edgeplane.io/scenario", "-o", "name").stdout
        assert left.strip() == ""


def test_a_missing_kubeconfig_is_a_clear_error() -> None:
    code, report, stderr = run_scenario("scenarios.node_loss", "--kubeconfig", "/nonexistent/kubeconfig",
                                        debug=False)
    assert code == 2
    assert report["checks"] == [{"name": "scenario ran to the end", "passed": False,
                                 "detail": "/nonexistent/kubeconfig does not exist"}]
    assert "Traceback" not in stderr


def test_leader_frozen_then_resumed() -> None:
    # SIGSTOP: the old leader wakes up believing it leads; it must follow the new term.
    code, report, stderr = run_scenario("scenarios.leader_failover", "--freeze", "1")
    assert_passed(code, report, stderr)
    assert any(c["name"].startswith("resumed old leader") for c in report["checks"])
    assert report["figures"]["vip_requests_failed"] == 0
