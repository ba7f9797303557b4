"""Running a benchmark's command line as a user would, for the tests of its argument checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def refused(bench: str, *args: str) -> str:
    """Run ``python -m bench.<bench> args``; assert it refused them as a usage error (exit 2,
    no traceback) and return its stderr."""
    proc = subprocess.run([sys.executable, "-m", f"bench.{bench}", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, (args, proc.stderr)
    assert "Traceback" not in proc.stderr
    return proc.stderr
