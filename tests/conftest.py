"""Fixture modules shared by every test package (each starts what it needs), and the time of
each test group (unit, program, transport, vm, hosts, engine, and acceptance: the tests
marked `acceptance`, whose run holds the acceptance suite: docs/ci.md's Locally recipe) printed
at the end: wall time, or under pytest-xdist the sum over the workers."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import pytest

pytest_plugins = [
    "tests.fixtures.sshd",
    "tests.fixtures.vm",
    "tests.fixtures.pulumi_cli",
    "tests.fixtures.artifacts",
    "tests.fixtures.s3",
]

_GROUP_SECONDS: defaultdict[str, float] = defaultdict(float)
_STARTED = time.monotonic()


def _group(report: pytest.TestReport) -> str:
    if "acceptance" in report.keywords:
        return "acceptance"
    parts = report.nodeid.split("/")
    return parts[1] if len(parts) > 2 and parts[0] == "tests" else parts[0]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # setup + call + teardown: a group's VM boots and teardowns count for that group.
    _GROUP_SECONDS[_group(report)] += report.duration


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _GROUP_SECONDS:
        return
    workers = getattr(terminalreporter.config.option, "numprocesses", None)
    if workers:  # pytest-xdist: the groups' tests ran side by side
        terminalreporter.section(f"test time per group, summed over {workers} workers")
    else:
        terminalreporter.section("wall time per test group")
    for group, seconds in _GROUP_SECONDS.items():
        terminalreporter.write_line(f"{group:12s} {seconds / 60:6.1f} min")
    total = time.monotonic() - _STARTED
    terminalreporter.write_line(f"{'pytest total':12s} {total / 60:6.1f} min")
    vm_fixtures = terminalreporter.config.pluginmanager.get_plugin("tests.fixtures.vm")
    waited = sum(vm_fixtures.slot_waits) if vm_fixtures else 0.0
    if waited >= 60:
        terminalreporter.write_line(
            f"(of which {waited / 60:.1f} min waiting for a VM slot held by other processes)"
        )
