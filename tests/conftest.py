"""Shared pytest configuration.

Markers (declared in pyproject.toml): ``slow`` (real multi-process clusters), ``docker`` (needs a
Docker engine), ``root`` (nftables, network namespaces), ``kubectl`` (kubectl on PATH). A test that
needs something the machine lacks skips with the reason, except under CI=true, where .ci/run has
installed everything and a missing prerequisite is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

IN_CI = os.environ.get("CI") == "true"


def _docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def require(condition: bool, reason: str) -> None:
    """Skip (or fail under CI) when a test's prerequisite is missing."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI is missing a prerequisite: {reason}")
    pytest.skip(reason)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("docker"):
        require(_docker_available(), "no Docker engine answers `docker info`")
    if item.get_closest_marker("root"):
        require(os.geteuid() == 0, "needs root")
    if item.get_closest_marker("kubectl"):
        require(shutil.which("kubectl") is not None, "kubectl is not on PATH")
