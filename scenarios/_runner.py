"""Turning a scenario body into a command: options, CI settings, the report, the exit status.

Each scenario module defines ``SCENARIO = Scenario(...)`` and ends with
``if __name__ == "__main__": sys.exit(SCENARIO.main())``; ``edgectl scenario run NAME`` runs the
same click command.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import click
import trio

from controlplane.client import ApiError, ClusterUnreachable

from ._harness import ScenarioError, Site
from ._report import Report

__all__ = ["Param", "Run", "Scenario", "ci_mode"]

# Set to 1 to use every scenario's short CI settings (the same as --ci).
CI_ENV = "EDGEPLANE_SCENARIO_CI"
# Exit statuses: a check failed / the scenario could not run at all.
EXIT_FAILED = 1
EXIT_ERROR = 2


def ci_mode() -> bool:
    return os.environ.get(CI_ENV, "") not in ("", "0")


@dataclass(frozen=True)
class Param:
    """One tunable setting: the users' default and the shorter CI value."""

    name: str  # python name; the option is --name-with-dashes
    default: float | int
    ci: float | int
    help: str


@dataclass
class Run:
    """What a scenario body gets: the site, its settings, the report to fill, a progress printer."""

    site: Site
    settings: dict[str, Any]
    report: Report
    say: Callable[[str], None]
    started: float = field(default_factory=time.monotonic)

    def __getitem__(self, key: str) -> Any:
        return self.settings[key]

    def step(self, text: str) -> None:
        self.say(f"[{time.monotonic() - self.started:6.1f}s] {text}")


Body = Callable[[Run], Awaitable[None]]


@dataclass
class Scenario:
    name: str
    summary: str
    body: Body
    params: list[Param] = field(default_factory=list)
    masters: int = 3
    nodes: int = 2
    replicas: int = 3
    # Returns a reason when the scenario cannot run on this machine (e.g. needs root).
    precondition: Callable[[], str | None] | None = None
    # Builds the site itself (the partition scenario runs masters in network namespaces).
    make_site: Callable[..., Any] | None = None

    def run(self, *, kubeconfig: str | None = None, directory: str | None = None,
            keep: bool = False, ci: bool = False, quiet: bool = False,
            **overrides: Any) -> Report:
        """Run the scenario to the end (teardown included) and return its report."""
        settings: dict[str, Any] = {}
        for p in self.params:
            value = overrides.get(p.name)
            settings[p.name] = value if value is not None else (p.ci if ci else p.default)
        report = Report(self.name, settings=dict(settings))

        def say(text: str) -> None:
            if not quiet:
                print(text, file=sys.stderr, flush=True)

        reason = self.precondition() if self.precondition else None
        if reason:
            report.skipped = reason
            return report
        previous = previous_int = None
        if threading.current_thread() is threading.main_thread():
            # `kill PID` (SIGTERM, what timeout(1), systemd and CI runners send first) tears the
            # scenario down like Ctrl-C does: its masters run in sessions of their own and would
            # otherwise outlive it, with the partition scenario's namespaces.
            previous = signal.signal(signal.SIGTERM, _interrupt_self)
            if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
                # Started with SIGINT ignored (a background job of a script, nohup, some CI
                # runners): trio would then install no handler of its own, and the SIGINT the
                # SIGTERM handler sends would be ignored too (the run went on to its end).
                previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
        _terminated.clear()
        interrupted = False
        try:
            trio.run(self._run_async, kubeconfig, directory, keep, settings, report, say)
        except* KeyboardInterrupt:  # alone, or beside errors it caused on the way out
            interrupted = True
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
            if previous_int is not None:
                signal.signal(signal.SIGINT, previous_int)
        # SIGTERM also counts when its KeyboardInterrupt surfaced as another error (a process
        # or a request it cut short), which the body reported instead: seen once in CI.
        if interrupted or _terminated.is_set():
            report.check("scenario ran to the end", False, "interrupted")
        return report

    async def _run_async(self, kubeconfig: str | None, directory: str | None, keep: bool,
                         settings: dict[str, Any], report: Report, say: Callable[[str], None]) -> None:
        factory = self.make_site or Site
        site = None
        try:
            site = factory(kubeconfig=kubeconfig, directory=directory, masters=self.masters,
                           nodes=self.nodes, replicas=self.replicas, keep=keep, say=say)
            async with site:
                run = Run(site, settings, report, say)
                await self.body(run)
        except* (ScenarioError, ApiError, ClusterUnreachable) as group:
            for exc in _leaves(group):
                report.check("scenario ran to the end", False, str(exc).splitlines()[0][:300])
                say(f"error: {exc}")
                if os.environ.get("EDGEPLANE_SCENARIO_DEBUG"):
                    say("".join(traceback.format_exception(exc)))
        finally:
            # A cluster in a temporary directory of its own: gone after a pass; after a failure
            # (or an interrupt) its logs are what the user reads next.
            if site is not None and site._tmp is not None and not keep:
                if report.passed:
                    shutil.rmtree(site._tmp, ignore_errors=True)
                else:
                    say(f"logs of this run: {site.dir}")

    # ------------------------------------------------------------------ command line

    def command(self) -> click.Command:
        """The click command for this scenario (also `edgectl scenario run NAME`)."""
        params: list[click.Parameter] = [
            click.Option(["--kubeconfig"], default=None, metavar="FILE",
                         help="Use the cluster an `edgectl up` started (its cluster.json must be "
                              "next to this kubeconfig) instead of starting one."),
            click.Option(["--dir", "directory"], default=None, metavar="DIR",
                         help="Start the cluster in DIR (default: a new temporary directory)."),
            click.Option(["--keep"], is_flag=True, help="Leave the cluster running afterwards."),
            click.Option(["--json", "as_json"], is_flag=True,
                         help="Print only one JSON object with every figure and check."),
            click.Option(["--ci"], is_flag=True, default=ci_mode(),
                         help=f"Short settings for CI (also: {CI_ENV}=1)."),
        ]
        for p in self.params:
            kind = int if isinstance(p.default, int) and not isinstance(p.default, bool) else float
            params.append(click.Option([f"--{p.name.replace('_', '-')}"], type=kind, default=None,
                                       help=f"{p.help} [default: {p.default}; --ci: {p.ci}]"))

        def callback(kubeconfig: str | None, directory: str | None, keep: bool, as_json: bool,
                     ci: bool, **overrides: Any) -> None:
            if kubeconfig and directory:
                raise click.UsageError("--kubeconfig and --dir exclude each other")
            report = self.run(kubeconfig=kubeconfig, directory=directory, keep=keep, ci=ci,
                              **overrides)
            click.echo(report.dumps() if as_json else report.render())
            if not report.passed:
                failed_to_run = any(c.name == "scenario ran to the end" for c in report.checks
                                    if not c.passed)
                sys.exit(EXIT_ERROR if failed_to_run else EXIT_FAILED)

        return click.Command(self.name, callback=callback, params=params,
                             help=self.summary, short_help=self.summary.split(".")[0],
                             context_settings={"help_option_names": ["-h", "--help"]})

    def main(self, argv: list[str] | None = None) -> int:
        main_spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        if main_spec is not None and main_spec.name.startswith("scenarios."):
            prog = f"python -m scenarios.{self.name.replace('-', '_')}"
        else:
            prog = f"edgectl scenario run {self.name}"  # dispatched by the edgectl CLI
        try:
            self.command().main(args=argv, prog_name=prog, standalone_mode=True)
        except SystemExit as exc:
            return int(exc.code or 0) if not isinstance(exc.code, str) else 1
        return 0


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


# Set by the SIGTERM handler: the run was asked to stop, whatever error that then caused.
_terminated = threading.Event()


def _interrupt_self(signum: int, frame: Any) -> None:
    _terminated.set()
    # Re-sent as SIGINT: trio's own handler turns that into KeyboardInterrupt at a safe point.
    os.kill(os.getpid(), signal.SIGINT)
