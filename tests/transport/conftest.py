"""Transport tests run against the real sshd of tests/fixtures/sshd.py."""

from collections.abc import Iterator

import pytest

from dockyard_resources.transport import close_all


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/transport/" in str(item.path):
            item.add_marker(pytest.mark.sshd)


@pytest.fixture(autouse=True)
def _empty_pool() -> Iterator[None]:
    """Each test starts and ends with an empty connection pool."""
    close_all()
    yield
    close_all()
