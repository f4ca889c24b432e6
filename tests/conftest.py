"""Fixture modules shared by every test package (each starts what it needs)."""

pytest_plugins = [
    "tests.fixtures.sshd",
    "tests.fixtures.vm",
    "tests.fixtures.pulumi_cli",
]
