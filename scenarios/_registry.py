"""Every scenario by its command name (module scenarios/<name with underscores>.py)."""

from __future__ import annotations

import importlib

from ._runner import Scenario

# The order `edgectl scenario list` shows: cheapest and most common faults first.
NAMES = ("leader-failover", "node-loss", "rolling-restart", "membership", "full-restart",
         "edge-autonomy", "partition")


class _Scenarios(dict[str, Scenario]):
    """Loads scenario modules on first use, so importing the package stays cheap."""

    def __missing__(self, name: str) -> Scenario:
        if name not in NAMES:
            raise KeyError(name)
        scenario = importlib.import_module(f"scenarios.{name.replace('-', '_')}").SCENARIO
        self[name] = scenario
        return scenario


SCENARIOS = _Scenarios()
