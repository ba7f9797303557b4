"""Security tests against real masters and agents (``edgectl up``); helpers in tests/conftest_cluster.py."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from conftest_cluster import (  # noqa: E402,F401 - fixtures
    module_tmp_path,
    tmp_path,  # overrides pytest's (see its docstring)
)
