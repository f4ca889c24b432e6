"""Fixture modules shared by every test package, and how `make test` splits the suite."""

import pytest

pytest_plugins = [
    "tests.fixtures.sshd",
    "tests.fixtures.vm",
    "tests.fixtures.pulumi_cli",
]

# `make test` runs two pytest-xdist workers with --dist loadgroup. Tests that share
# the session-scoped `test_host` VM must stay on one worker (a second worker would
# boot a second test host and hold both VM slots); the tests that boot VMs of their
# own one module at a time go to the other worker. Everything else spreads freely.
_TEST_HOST_GROUP = ("tests/vm/", "tests/hosts/test_sysbox_host.py")
_OWN_VM_GROUP = ("tests/hosts/test_instances.py", "tests/engine/")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = item.path.as_posix()
        if any(part in path for part in _TEST_HOST_GROUP):
            item.add_marker(pytest.mark.xdist_group("test-host-vm"))
        elif any(part in path for part in _OWN_VM_GROUP):
            item.add_marker(pytest.mark.xdist_group("own-vms"))
