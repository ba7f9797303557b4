"""`make demo`: edgeplane end to end on one machine, in under three minutes.

Installs what is missing (as root: Docker engine and busybox-static from apt), builds the
offline demo image, starts a local cluster (3 masters, 2 edge nodes) with `edgectl up`, applies
the sample app (scenarios/manifests/demo-app.yaml), shows `kubectl get` and traffic through
the Service's virtual IP, tears that cluster down, then runs the leader-failover and node-loss
scenarios with short settings and prints their reports.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter

import yaml

from ._harness import MANIFEST
from ._registry import SCENARIOS

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Requests sent through the VIP to show the load balancing (enough to see every pod answer).
VIP_REQUESTS = 12
# The demo cluster's node names: unlike the default n1, n2 they cannot be mistaken for (or
# clean up the containers of) another local cluster's nodes.
NODE_PREFIX = "demo-n"
# Nodes of the demo cluster get 127.0.9.N (a /24 no default cluster uses).
NODE_NET = "127.0.9"
STEPS = 8


class DemoError(Exception):
    pass


def header(step: int, text: str) -> None:
    print(f"\n==> [{step}/{STEPS}] {text}", flush=True)


def run(argv: list[str], *, env: dict[str, str] | None = None, check: bool = True,
        timeout: float = 120.0, show: bool = True) -> subprocess.CompletedProcess[str]:
    if show:
        print("$ " + " ".join(a if " " not in a else repr(a) for a in argv), flush=True)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=ROOT)
    if show and done.stdout.strip():
        print(done.stdout.rstrip(), flush=True)
    if check and done.returncode != 0:
        raise DemoError(f"`{' '.join(argv)}` exited {done.returncode}:\n{done.stderr.strip()}")
    return done


def edgectl(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "cli", *args], **kwargs)  # type: ignore[arg-type]


def docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


def prerequisites() -> None:
    missing = []
    if shutil.which("dockerd") is None:
        missing.append("docker.io")
    if not os.access("/bin/busybox", os.X_OK):
        missing.append("busybox-static")
    if missing:
        if os.geteuid() != 0:
            raise DemoError(f"missing {', '.join(missing)}: run `make demo` as root to install "
                            f"them, or: apt-get install -y {' '.join(missing)}")
        print(f"installing {', '.join(missing)} with apt-get", flush=True)
        run(["apt-get", "update", "-q"], timeout=600, show=False)
        run(["apt-get", "install", "-y", "-q", *missing], timeout=900, show=False,
            env={"DEBIAN_FRONTEND": "noninteractive"})
    if not docker_answers():
        if os.geteuid() != 0:
            raise DemoError("the Docker engine does not answer; start it (as root: "
                            "bash .ci/start-dockerd.sh) or run `make demo` as root")
        print("starting the Docker engine", flush=True)
        run(["bash", str(ROOT / ".ci" / "start-dockerd.sh")], timeout=120)
    print("Docker engine, busybox-static: ok" + ("" if shutil.which("kubectl") else
                                                 " (kubectl not found: using edgectl get)"))


def show_get(kubeconfig: pathlib.Path) -> None:
    env = {"KUBECONFIG": str(kubeconfig)}
    kubectl = shutil.which("kubectl")
    for args in (["get", "nodes", "-o", "wide"], ["get", "pods", "-o", "wide"], ["get", "services"],
                 ["get", "endpoints"]):
        if kubectl:
            run([kubectl, *args], env=env)
        else:
            edgectl(*args, env=env)
        print()


def wait_ready(kubeconfig: pathlib.Path, replicas: int, timeout: float = 90.0) -> None:
    edgectl("rollout", "status", "deployment/web", "--timeout", str(int(timeout)),
            env={"KUBECONFIG": str(kubeconfig)}, timeout=timeout + 10, check=False)
    deadline = time.monotonic() + timeout
    import json

    while time.monotonic() < deadline:
        out = edgectl("get", "endpoints", "web", "-o", "json", env={"KUBECONFIG": str(kubeconfig)},
                      check=False, show=False)
        if out.returncode == 0:
            subsets = json.loads(out.stdout).get("subsets") or []
            if sum(len(s.get("addresses") or []) for s in subsets) >= replicas:
                return
        time.sleep(0.5)
    raise DemoError(f"the sample app did not get {replicas} ready endpoints in {timeout:.0f}s")


def vip_traffic(vip: str, port: int) -> Counter[str]:
    import trio

    from ._harness import vip_get

    async def main() -> Counter[str]:
        seen: Counter[str] = Counter()
        deadline = trio.current_time() + 30
        while sum(seen.values()) < VIP_REQUESTS:
            try:
                seen[await vip_get(vip)] += 1
            except (OSError, trio.BrokenResourceError, trio.TooSlowError):
                if trio.current_time() > deadline:
                    raise
                await trio.sleep(0.2)
        return seen

    return trio.run(main)


def main() -> int:
    started = time.monotonic()
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="edgeplane-demo-"))
    cluster_dir = workdir / "cluster"
    proxy: subprocess.Popen[bytes] | None = None
    results: list[tuple[str, bool]] = []
    try:
        header(1, "Prerequisites")
        prerequisites()
        header(2, "Building the offline demo image (busybox httpd, no registry needed)")
        edgectl("image", "build-demo", timeout=300)
        header(3, "Starting a local cluster: 3 masters, 2 edge nodes")
        edgectl("up", "--dir", str(cluster_dir), "--masters", "3", "--nodes", "2",
                "--node-prefix", NODE_PREFIX, "--node-net", NODE_NET, timeout=180)
        kubeconfig = cluster_dir / "kubeconfig"
        env = {"KUBECONFIG": str(kubeconfig)}
        edgectl("cluster", "status", env=env)
        header(4, "Applying the sample app (Deployment + Service)")
        docs = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
        service = next(d for d in docs if d["kind"] == "Service")
        deployment = next(d for d in docs if d["kind"] == "Deployment")
        vip, port = service["spec"]["clusterIP"], int(service["spec"]["ports"][0]["port"])
        edgectl("apply", "-f", str(MANIFEST.relative_to(ROOT)), env=env)
        # The node-side proxy that maps the Service's virtual IP to the pods (as on every node).
        with open(cluster_dir / "netproxy.log", "ab") as log:
            proxy = subprocess.Popen(
                [sys.executable, "-m", "netproxy", "--kubeconfig", str(kubeconfig),
                 "--table", "edgeplane-demo", "--cache", str(cluster_dir / "netproxy.cache")],
                stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
        wait_ready(kubeconfig, int(deployment["spec"]["replicas"]))
        header(5, "kubectl get")
        show_get(kubeconfig)
        header(6, f"Traffic through the Service's virtual IP {vip}:{port}")
        seen = vip_traffic(vip, port)
        for pod, count in sorted(seen.items()):
            print(f"  {pod:32} answered {count:2} of {VIP_REQUESTS} requests")
        print("Tearing the sample cluster down (each scenario builds its own).", flush=True)
        proxy.send_signal(signal.SIGTERM)
        proxy.wait(timeout=15)
        proxy = None
        edgectl("down", "--dir", str(cluster_dir), timeout=120, show=False)
        for step, name in ((7, "leader-failover"), (8, "node-loss")):
            header(step, f"Scenario {name} (short settings): {SCENARIOS[name].summary}")
            report = SCENARIOS[name].run(ci=True, directory=str(workdir / name))
            print(report.render(), flush=True)
            results.append((name, report.passed))
    except (DemoError, subprocess.TimeoutExpired) as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        if proxy is not None:
            proxy.send_signal(signal.SIGTERM)
            try:
                proxy.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proxy.kill()
        if (cluster_dir / "cluster.json").exists():
            subprocess.run([sys.executable, "-m", "cli", "down", "--dir", str(cluster_dir)],
                           capture_output=True, cwd=ROOT, timeout=120)
    elapsed = time.monotonic() - started
    print(f"\n==> Done in {elapsed:.0f}s: " + ", ".join(
        f"{name} {'PASS' if ok else 'FAIL'}" for name, ok in results))
    print(f"Logs and data: {workdir}")
    return 0 if all(ok for _, ok in results) else 1


if __name__ == "__main__":
    sys.exit(main())
