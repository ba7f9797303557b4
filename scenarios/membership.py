"""membership: grow the masters 3 -> 5 and shrink back to 3 while clients use the site.

Purpose: replacing or adding master hosts is a Raft membership change done online with
`edgectl master join` and `edgectl master remove`. Each new master catches up with the log,
the removed ones leave, the leader never changes hands, the API keeps acknowledging writes and
none is lost, and the data plane never notices.
"""

from __future__ import annotations

import sys

import trio

from ._harness import ScenarioError, load, wait_until
from ._runner import Param, Run, Scenario


async def _members(run: Run) -> list[str] | None:
    got = await run.site.leader()
    if got is None:
        return None
    return sorted(m.get("name") for m in got[1].get("members", []))


async def _edgectl(run: Run, *args: str) -> None:
    site = run.site
    argv = [sys.executable, "-m", "cli", *args, "--kubeconfig", str(site.kubeconfig_path)]
    done = await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False)
    if done.returncode != 0:
        raise ScenarioError(f"edgectl {' '.join(args)} failed: {done.stderr.decode().strip()[:300]}")


async def body(run: Run) -> None:
    site, report = run.site, run.report
    await site.deploy()
    original = sorted(site.master_names())
    leader, _ = await site.wait_leader(duties=True)
    target = len(original) + run["grow_by"]
    run.step(f"masters {', '.join(original)} (leader {leader}); starting traffic and writes")
    grow: dict[str, float] = {}
    shrink: dict[str, float] = {}
    added: list[str] = []
    async with load(site) as (traffic, writer):
        await trio.sleep(run["warmup"])
        for i in range(len(original) + 1, target + 1):
            name = f"m{i}"
            raft_port, api_port = site.free_ports(2)
            argv = [sys.executable, "-m", "cli", "master", "join", "--name", name,
                    "--data-dir", str(site.dir / name), "--raft-addr", f"127.0.0.1:{raft_port}",
                    "--api-addr", f"127.0.0.1:{api_port}", "--server", site.api_url(leader),
                    "--token-file", str(site.dir / "admin-token"),
                    "--ca-cert-file", str(site.dir / "ca.crt")]
            t0 = trio.current_time()
            site.spawn("master", name, argv, data_dir=str(site.dir / name),
                       raft_address=f"127.0.0.1:{raft_port}",
                       api_address=f"https://127.0.0.1:{api_port}")
            added.append(name)

            async def joined(name: str = name) -> bool:
                members = await _members(run)
                return members is not None and name in members

            await wait_until(f"{name} to become a member", joined, run["timeout"])
            await site.wait_caught_up(name, timeout=run["timeout"])
            grow[name] = trio.current_time() - t0
            run.step(f"{name} joined and caught up in {grow[name]:.2f}s")
        grown = await _members(run)
        await trio.sleep(run["pause"])
        for name in reversed(added):
            t0 = trio.current_time()
            await _edgectl(run, "master", "remove", name)
            await site.stop(name)

            async def left(name: str = name) -> bool:
                members = await _members(run)
                return members is not None and name not in members

            await wait_until(f"{name} to leave", left, run["timeout"])
            shrink[name] = trio.current_time() - t0
            run.step(f"{name} removed in {shrink[name]:.2f}s")
        await trio.sleep(run["observe"])
    final = await _members(run)
    after = await site.leader()
    lost = await writer.lost()
    for name, took in grow.items():
        report.figure(f"join_{name}_s", took, "s", f"{name} joined and caught up")
    for name, took in shrink.items():
        report.figure(f"remove_{name}_s", took, "s", f"{name} removed")
    report.figure("members_grown", len(grown or []), "", "members after growing")
    report.figure("members_final", len(final or []), "", "members at the end")
    report.figure("api_writes", writer.total, "", "API writes attempted")
    report.figure("api_writes_failed", len(writer.failed), "", "API writes failed")
    report.figure("api_longest_unavailable_s", writer.longest_gap(), "s",
                  "longest time without an acknowledged write")
    report.figure("acked_writes_lost", len(lost), "", "acknowledged writes lost")
    report.figure("vip_requests", traffic.total, "", "VIP requests")
    report.figure("vip_requests_failed", len(traffic.failures), "", "VIP requests failed")
    report.check(f"grew to {target} masters", grown is not None and len(grown) == target,
                 f"members {grown}")
    report.check(f"shrank back to {len(original)}", final == original, f"members {final}")
    report.check("leader kept its role", after is not None and after[0] == leader,
                 f"leader {leader} before, {after[0] if after else 'none'} after")
    report.check("API writes never failed", not writer.failed,
                 f"{len(writer.failed)} of {writer.total} failed"
                 + (f" (first: {writer.failed[0][1]})" if writer.failed else ""))
    report.check("no acknowledged write lost", not lost, f"{len(lost)} of {len(writer.acked)} missing")
    report.check("no failed VIP requests", not traffic.failures,
                 f"{len(traffic.failures)} of {traffic.total} failed")


SCENARIO = Scenario(
    name="membership",
    summary="grow the masters 3 -> 5 with `edgectl master join` and shrink back with "
            "`edgectl master remove`, under load.",
    body=body,
    params=[
        Param("grow_by", 2, 2, "How many masters to add (and remove again)."),
        Param("warmup", 3.0, 1.0, "Seconds of traffic before the first change."),
        Param("pause", 3.0, 1.0, "Seconds at the grown size."),
        Param("observe", 3.0, 1.0, "Seconds of traffic after the last change."),
        Param("timeout", 60.0, 45.0, "Seconds to wait for each step before failing."),
    ],
)

if __name__ == "__main__":
    sys.exit(SCENARIO.main())
