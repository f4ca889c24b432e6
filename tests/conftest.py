"""Fixture modules shared by every test package (each starts what it needs)."""

import importlib.util

_FIXTURE_MODULES = ["tests.fixtures.sshd", "tests.fixtures.vm", "tests.fixtures.pulumi_cli"]

# TEMPORARY while the fixture modules are being written in parallel.
pytest_plugins = [m for m in _FIXTURE_MODULES if importlib.util.find_spec(m) is not None]
