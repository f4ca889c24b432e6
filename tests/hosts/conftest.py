"""Fixtures the host suites share: each module gets a VM of its own (its tests reboot it,
leave users behind or change its firewall), one SSH shell on it and one provider."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dockyard_resources.providers.instance import DockyardInstanceProvider
from tests.fixtures.vm import TestHost, booted_vm
from tests.hosts.checks import SshShell


@pytest.fixture(scope="module")
def host() -> Iterator[TestHost]:
    with booted_vm() as booted:
        yield booted


@pytest.fixture(scope="module")
def sh(host: TestHost) -> SshShell:
    return SshShell(host.target)


@pytest.fixture(scope="module")
def provider() -> DockyardInstanceProvider:
    return DockyardInstanceProvider()
