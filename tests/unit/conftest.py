"""Fixtures shared by the unit tests: `box` (the SysboxHost sandbox) and `host` (the instance
host of the behaviour tests), for tests outside the modules that define them, and `warnings`
(what the providers tell Pulumi's log as warnings)."""

import pulumi
import pytest

from tests.unit.test_behaviour_guards import host
from tests.unit.test_sysbox_behaviour import box

__all__ = ["box", "host", "warnings"]


@pytest.fixture
def warnings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    said: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda msg, *_a, **_k: said.append(msg))
    monkeypatch.setattr(pulumi.log, "info", lambda *_a, **_k: None)
    return said
