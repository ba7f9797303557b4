"""Fixtures for tests against a real local cluster (``edgectl up``); see tests/conftest_cluster.py."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from conftest_cluster import LocalClusterHandle, start_cluster  # noqa: E402


@pytest.fixture(scope="module")
def cluster3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalClusterHandle]:
    """A 3-master cluster shared by one test module (tests that kill masters start their own)."""
    with start_cluster(tmp_path_factory.mktemp("cluster3"), masters=3) as cluster:
        yield cluster
