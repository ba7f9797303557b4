"""A scenario's result: measured figures and pass/fail checks, printed as a table or one JSON object."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Check", "Figure", "Report"]


@dataclass
class Figure:
    key: str
    value: float | int | str | None
    unit: str
    label: str

    def text(self) -> str:
        if self.value is None:
            return "n/a"
        if isinstance(self.value, float):
            return f"{self.value:.2f} {self.unit}".strip()
        return f"{self.value} {self.unit}".strip()


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


@dataclass
class Report:
    """What a scenario measured and what it checked; ``passed`` is every check passing."""

    scenario: str
    settings: dict[str, Any] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None  # why the scenario could not run here (e.g. needs root)

    def figure(self, key: str, value: float | int | str | None, unit: str = "", label: str = "") -> None:
        """Record (or overwrite) one figure; ``label`` is its human name in the table."""
        for existing in self.figures:
            if existing.key == key:
                existing.value, existing.unit = value, unit
                return
        self.figures.append(Figure(key, value, unit, label or key.replace("_", " ")))

    def check(self, name: str, passed: bool, detail: str = "") -> bool:
        self.checks.append(Check(name, bool(passed), detail))
        return bool(passed)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def value(self, key: str) -> Any:
        return next((f.value for f in self.figures if f.key == key), None)

    @property
    def passed(self) -> bool:
        return self.skipped is not None or (bool(self.checks) and all(c.passed for c in self.checks))

    def as_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "passed": self.passed,
            "skipped": self.skipped,
            "settings": self.settings,
            "figures": {f.key: f.value for f in self.figures},
            "units": {f.key: f.unit for f in self.figures if f.unit},
            "checks": [{"name": c.name, "passed": c.passed, "detail": c.detail} for c in self.checks],
            "notes": self.notes,
        }

    def dumps(self) -> str:
        return json.dumps(self.as_json(), indent=2, sort_keys=False, default=str)

    def render(self) -> str:
        """A readable report: a figures table, a checks table, notes, and the verdict."""
        lines = []
        verdict = "SKIPPED" if self.skipped is not None else ("PASS" if self.passed else "FAIL")
        lines.append(f"=== scenario {self.scenario}: {verdict} ===")
        if self.skipped is not None:
            lines.append(f"skipped: {self.skipped}")
        if self.settings:
            lines.append("settings: " + ", ".join(f"{k}={v}" for k, v in self.settings.items()))
        if self.figures:
            width = max(len(f.label) for f in self.figures)
            lines.append("")
            lines.append(f"{'FIGURE'.ljust(width)}  VALUE")
            lines.extend(f"{f.label.ljust(width)}  {f.text()}" for f in self.figures)
        if self.checks:
            width = max(len(c.name) for c in self.checks)
            lines.append("")
            lines.append(f"{'CHECK'.ljust(width)}  RESULT  DETAIL")
            lines.extend(f"{c.name.ljust(width)}  {'pass' if c.passed else 'FAIL':6}  {c.detail}"
                         for c in self.checks)
        if self.notes:
            lines.append("")
            lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)
