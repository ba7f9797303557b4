"""edgectl tests start real processes: give them a temporary directory pytest never rotates."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from conftest_cluster import tmp_path  # noqa: E402,F401 - a fixture, overriding pytest's
