"""Masters started one by one: `master init`, `master join` (Raft membership change),
`master remove`, and a static group from `master secrets` + `master start`, restarted from its
data directory alone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest_cluster import edgectl, pid_alive

from cli._local import free_ports

pytestmark = pytest.mark.slow

# A master answers within a few seconds of starting (Python start-up, election).
READY_TIMEOUT_S = 60


class Masters:
    """Master processes started by a test; all are stopped at the end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def run(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen([sys.executable, "-m", "cli", "master", *args],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.procs[name] = proc
        return proc

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")


@pytest.fixture
def masters(tmp_path: Path) -> Iterator[Masters]:
    group = Masters(tmp_path)
    try:
        yield group
    finally:
        group.stop_all()
        assert not any(pid_alive(p.pid) for p in group.procs.values())


def wait_status(kubeconfig: Path, predicate, what: str) -> dict:
    deadline = time.monotonic() + READY_TIMEOUT_S
    last = None
    while time.monotonic() < deadline:
        proc = edgectl("cluster", "status", "-o", "json", "--kubeconfig", str(kubeconfig),
                       check=False)
        if proc.returncode == 0:
            last = json.loads(proc.stdout)
            if predicate(last):
                return last
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}; last status: {last}")


def member_names(status: dict) -> set[str]:
    return {m["name"] for m in status["members"]}


def test_init_join_and_remove_change_the_membership(tmp_path: Path, masters: Masters) -> None:
    ports = free_ports(6)
    addr = [f"127.0.0.1:{p}" for p in ports]
    d1 = tmp_path / "m1"
    masters.run("m1", "init", "--name", "m1", "--data-dir", str(d1),
                "--raft-addr", addr[0], "--api-addr", addr[1])
    kubeconfig = d1 / "kubeconfig"
    wait_status(kubeconfig, lambda s: s["leader"] == "m1", "m1 to lead")
    # init wrote the secrets owner-only and a kubeconfig kubectl-compatible clients can use.
    for secret in ("secret", "admin-token", "ca.key", "kubeconfig"):
        assert (d1 / secret).stat().st_mode & 0o077 == 0, secret
    token = (d1 / "admin-token").read_text().strip()

    for name, raft, api in (("m2", addr[2], addr[3]), ("m3", addr[4], addr[5])):
        masters.run(name, "join", "--server", f"https://{addr[1]}", "--token", token,
                    "--ca-cert-file", str(d1 / "ca.crt"), "--name", name,
                    "--data-dir", str(tmp_path / name), "--raft-addr", raft, "--api-addr", api)
        wait_status(kubeconfig, lambda s, n=name: n in member_names(s)
                    and all(m["lag"] == 0 for m in s["members"]), f"{name} to join and catch up")
    # The joined master got the cluster secret through the API, and serves the same data.
    assert (tmp_path / "m3" / "secret").read_text() == (d1 / "secret").read_text()
    m3_kubeconfig = tmp_path / "m3" / "kubeconfig"
    edgectl("apply", "-f", "-", "--kubeconfig", str(m3_kubeconfig),
            stdin="apiVersion: v1\nkind: ConfigMap\nmetadata: {name: joined}\ndata: {a: b}\n")
    got = edgectl("get", "configmap", "joined", "-o", "json", "--kubeconfig", str(kubeconfig))
    assert json.loads(got.stdout)["data"] == {"a": "b"}
    status = wait_status(kubeconfig, lambda s: len(s["members"]) == 3, "3 members")
    assert status["leader"] == "m1" and status["leaderDuties"]["holder"] == "m1"

    # The admin's kubeconfig from init knows only m1; a fresh one lists every member.
    fresh = tmp_path / "all.kubeconfig"
    edgectl("cluster", "kubeconfig", "-o", str(fresh), "--kubeconfig", str(kubeconfig))
    from controlplane.kubeconfig import load_kubeconfig

    assert load_kubeconfig(fresh).servers == tuple(f"https://{a}" for a in addr[1::2])

    # An unknown master is refused; removing m3 shrinks the group to two.
    refused = edgectl("master", "remove", "m9", "--kubeconfig", str(kubeconfig), check=False)
    assert refused.returncode != 0 and 'master "m9" not found' in refused.stderr
    edgectl("master", "remove", "m3", "--kubeconfig", str(kubeconfig))
    status = wait_status(kubeconfig, lambda s: member_names(s) == {"m1", "m2"}, "m3 removed")
    assert status["leader"] == "m1"


def start_static_group(tmp_path: Path, masters: Masters, n: int = 3,
                       ports: list[int] | None = None) -> tuple[Path, list[str]]:
    """``n`` masters m1..mn of a static group (`master secrets` + `master start`); returns a
    kubeconfig listing all of them and their API URLs."""
    shared = tmp_path / "site"
    edgectl("master", "secrets", "--dir", str(shared))
    ports = ports or free_ports(2 * n)
    raft = [f"127.0.0.1:{ports[2 * i]}" for i in range(n)]
    api = [f"127.0.0.1:{ports[2 * i + 1]}" for i in range(n)]
    for i in range(n):
        peers = [arg for j, r in enumerate(raft) if j != i for arg in ("--peer", r)]
        masters.run(f"m{i + 1}", "start", "--name", f"m{i + 1}",
                    "--data-dir", str(tmp_path / f"m{i + 1}"), "--raft-addr", raft[i],
                    "--api-addr", api[i], *peers,
                    "--secret-file", str(shared / "secret"),
                    "--admin-token-file", str(shared / "admin-token"),
                    "--ca-cert-file", str(shared / "ca.crt"), "--ca-key-file", str(shared / "ca.key"))
    kubeconfig = tmp_path / "kubeconfig"
    servers = [f"https://{a}" for a in api]
    write_servers_kubeconfig(kubeconfig, tmp_path, servers)
    return kubeconfig, servers


def write_servers_kubeconfig(path: Path, tmp_path: Path, servers: list[str]) -> Path:
    from controlplane.kubeconfig import write_kubeconfig

    shared = tmp_path / "site"
    write_kubeconfig(path, servers, token=(shared / "admin-token").read_text().strip(),
                     ca_data=(shared / "ca.crt").read_bytes())
    return path


def test_static_group_restarts_from_its_data_dir(tmp_path: Path, masters: Masters) -> None:
    kubeconfig, _ = start_static_group(tmp_path, masters)
    status = wait_status(kubeconfig, lambda s: s["leader"] and len(s["members"]) == 3,
                         "a leader of 3")
    edgectl("apply", "-f", "-", "--kubeconfig", str(kubeconfig),
            stdin="apiVersion: v1\nkind: ConfigMap\nmetadata: {name: durable}\ndata: {x: y}\n")

    # Stop a follower and restart it with nothing but its data directory (master.json).
    follower = next(m["name"] for m in status["members"] if m["role"] == "follower")
    masters.stop(follower)
    assert "shutting down" in masters.log(follower)
    masters.run(follower, "start", "--data-dir", str(tmp_path / follower))
    from controlplane.kubeconfig import load_kubeconfig, write_kubeconfig

    only_follower = tmp_path / "follower.kubeconfig"
    index = int(follower[1:]) - 1
    config = load_kubeconfig(kubeconfig)
    write_kubeconfig(only_follower, [config.servers[index]], token=config.token,
                     ca_data=config.ca_data)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        got = edgectl("get", "configmap", "durable", "-o", "json", "--kubeconfig",
                      str(only_follower), check=False)
        if got.returncode == 0:
            break
        assert time.monotonic() < deadline, got.stderr
        time.sleep(0.25)
    assert json.loads(got.stdout)["data"] == {"x": "y"}
    assert os.path.exists(tmp_path / follower / "raft")


def test_snapshot_count_is_kept_and_a_restart_reads_the_snapshot(tmp_path: Path,
                                                                  masters: Masters) -> None:
    """`--snapshot-count N`: the store snapshots after N log entries, the setting is kept in
    master.json, and a master restarted with only --data-dir comes back from the snapshot."""
    raft, api = (f"127.0.0.1:{p}" for p in free_ports(2))
    d1 = tmp_path / "m1"
    masters.run("m1", "init", "--name", "m1", "--data-dir", str(d1), "--raft-addr", raft,
                "--api-addr", api, "--snapshot-count", "100")
    kubeconfig = d1 / "kubeconfig"
    wait_status(kubeconfig, lambda s: s["leader"] == "m1", "m1 to lead")
    assert json.loads((d1 / "master.json").read_text())["snapshot_count"] == 100
    # 150 creates, each its own log entry: past the 100 entries of the setting.
    manifest = "".join(f"---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c{i}}}\n"
                       f"data: {{i: '{i}'}}\n" for i in range(150))
    edgectl("apply", "-f", "-", "--kubeconfig", str(kubeconfig), stdin=manifest)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not [f for f in (d1 / "raft").rglob("*snapshot*") if f.is_file() and f.stat().st_size]:
        assert time.monotonic() < deadline, sorted(p.name for p in (d1 / "raft").rglob("*"))
        time.sleep(0.2)

    masters.stop("m1")
    masters.run("m1", "start", "--data-dir", str(d1))
    wait_status(kubeconfig, lambda s: s["leader"] == "m1", "m1 to lead again")
    got = edgectl("get", "configmap", "c149", "-o", "json", "--kubeconfig", str(kubeconfig))
    assert json.loads(got.stdout)["data"] == {"i": "149"}
    assert json.loads((d1 / "master.json").read_text())["snapshot_count"] == 100


class ApiWriter:
    """Creates ConfigMaps one after another through the API (in a thread of its own) until
    stopped; records which were acknowledged and which failed, and how."""

    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig
        self.acked: list[str] = []
        self.retryable: list[str] = []  # 503/504 or no master answered: the usual failures
        self.other: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ApiWriter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        import trio

        from controlplane.client import ApiClient, ApiError, ClusterUnreachable
        from controlplane.kubeconfig import load_kubeconfig

        async def loop() -> None:
            async with ApiClient(load_kubeconfig(self.kubeconfig), retry_timeout=2.0) as client:
                i = 0
                while not self._stop.is_set():
                    name = f"load-{i}"
                    i += 1
                    try:
                        await client.create("configmaps", {"metadata": {"name": name},
                                                           "data": {"i": name}}, namespace="default")
                        self.acked.append(name)
                    except ApiError as exc:
                        (self.retryable if exc.code in (503, 504) else self.other).append(f"{name}: {exc}")
                    except ClusterUnreachable as exc:
                        self.retryable.append(f"{name}: {exc}")

        trio.run(loop)


def configmap(name: str, value: str) -> str:
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{v: '{value}'}}\n"


def test_removing_the_leader_hands_over_and_the_others_go_on(tmp_path: Path,
                                                             masters: Masters) -> None:
    """`master remove` of the current leader (as etcd's `member remove`): it hands its
    leadership to another master, which removes it; the data stays, writes go on with the
    two left. Then down to one master, and the last one cannot be removed."""
    kubeconfig, servers = start_static_group(tmp_path, masters)
    status = wait_status(kubeconfig, lambda s: s["leader"] and len(s["members"]) == 3
                         and all(m["lag"] == 0 for m in s["members"]), "a leader of 3")
    edgectl("apply", "-f", "-", "--kubeconfig", str(kubeconfig), stdin=configmap("before", "1"))
    old = status["leader"]
    rest = sorted({"m1", "m2", "m3"} - {old})
    two = write_servers_kubeconfig(tmp_path / "two.kubeconfig", tmp_path,
                                   [servers[int(n[1:]) - 1] for n in rest])

    # Writes through the two that stay go on while the leader hands over and is removed.
    with ApiWriter(two) as writer:
        deadline = time.monotonic() + 30
        while len(writer.acked) < 5:
            assert time.monotonic() < deadline and not writer.other, writer.other
            time.sleep(0.05)
        removed = edgectl("master", "remove", old, "--kubeconfig", str(kubeconfig))
        acked_at_removal = len(writer.acked)
        while len(writer.acked) < acked_at_removal + 5:
            assert time.monotonic() < deadline and not writer.other, writer.other
            time.sleep(0.05)
    assert removed.stdout.strip() == f"master {old} removed; members: {', '.join(rest)}"
    # Each write was acknowledged or failed the usual retryable way (none here so far: the
    # store retries a write the leader refused while handing over), and every acknowledged
    # one is there.
    assert not writer.other, writer.other
    assert len(writer.retryable) <= 2, writer.retryable
    listed = json.loads(edgectl("get", "configmaps", "-o", "json", "--kubeconfig", str(two)).stdout)
    names = {item["metadata"]["name"] for item in listed["items"]}
    assert set(writer.acked) <= names, sorted(set(writer.acked) - names)
    # The two left, asked directly (the removed master still runs until stopped, with its
    # own stale view): a new leader among them, and the removed one is no member any more.
    status = wait_status(two, lambda s: member_names(s) == set(rest) and s["leader"] in rest,
                         f"{old} removed and a leader among {rest}")
    assert [m["role"] for m in status["members"]].count("leader") == 1
    masters.stop(old)
    # What was written before is there; new writes succeed on both remaining masters (the two
    # of them are the whole membership now: the stopped one is not needed for a quorum).
    got = edgectl("get", "configmap", "before", "-o", "json", "--kubeconfig", str(two))
    assert json.loads(got.stdout)["data"] == {"v": "1"}
    for name in rest:
        one = write_servers_kubeconfig(tmp_path / f"{name}.kubeconfig", tmp_path,
                                       [servers[int(name[1:]) - 1]])
        edgectl("apply", "-f", "-", "--kubeconfig", str(one), stdin=configmap(f"after-{name}", name))
    for name in rest:
        got = edgectl("get", "configmap", f"after-{name}", "-o", "json", "--kubeconfig", str(two))
        assert json.loads(got.stdout)["data"] == {"v": name}

    # Remove the leader of the two: the last master leads alone and keeps everything.
    second = status["leader"]
    last = next(n for n in rest if n != second)
    edgectl("master", "remove", second, "--kubeconfig", str(two))
    only = tmp_path / f"{last}.kubeconfig"
    wait_status(only, lambda s: member_names(s) == {last} and s["leader"] == last,
                f"{last} alone and leading")
    masters.stop(second)
    edgectl("apply", "-f", "-", "--kubeconfig", str(only), stdin=configmap("alone", last))
    got = edgectl("get", "configmap", "before", "-o", "json", "--kubeconfig", str(only))
    assert json.loads(got.stdout)["data"] == {"v": "1"}
    # The last member cannot be removed: a clear error, and it still leads.
    refused = edgectl("master", "remove", last, "--kubeconfig", str(only), check=False)
    assert refused.returncode != 0
    assert f"{last} is the only master: the last member of a cluster cannot be removed" in refused.stderr
    assert "Traceback" not in refused.stderr
    status = wait_status(only, lambda s: s["leader"] == last, f"{last} still leading")
    assert member_names(status) == {last}
