"""The scenario report: what a user reads (table) and what a script reads (one JSON object)."""

from __future__ import annotations

import json

from scenarios import Report


def test_a_failed_check_fails_the_report_and_shows_in_both_forms() -> None:
    report = Report("leader-failover", settings={"warmup": 2.0})
    report.figure("time_to_new_leader_s", 0.84, "s", "time to new leader")
    report.figure("vip_requests_failed", 3, "", "VIP requests failed")
    report.check("new leader elected", True, "m1 -> m2 in 0.84s")
    report.check("no failed VIP requests", False, "3 of 120 failed")
    assert not report.passed
    text = report.render()
    assert "leader-failover: FAIL" in text
    assert "time to new leader" in text and "0.84 s" in text
    assert "no failed VIP requests  FAIL" in text
    body = json.loads(report.dumps())
    assert body["passed"] is False
    assert body["figures"] == {"time_to_new_leader_s": 0.84, "vip_requests_failed": 3}
    assert body["units"] == {"time_to_new_leader_s": "s"}
    assert body["checks"][1] == {"name": "no failed VIP requests", "passed": False,
                                 "detail": "3 of 120 failed"}


def test_a_report_without_checks_has_not_passed() -> None:
    # A scenario that measured nothing proved nothing.
    assert not Report("x").passed


def test_a_skipped_scenario_says_why() -> None:
    report = Report("partition")
    report.skipped = "needs root"
    assert report.passed
    assert "SKIPPED" in report.render() and "needs root" in report.render()
    assert json.loads(report.dumps())["skipped"] == "needs root"


def test_recording_a_figure_again_replaces_it() -> None:
    report = Report("x")
    report.figure("lag", 3)
    report.figure("lag", 0)
    assert report.value("lag") == 0
    assert len(report.figures) == 1
