"""Inside Pulumi's dynamic-provider server, expected failures lose their traceback."""

from __future__ import annotations

import importlib.util
import sys
import traceback
import types
from pathlib import Path
from typing import Any

import pytest

from dockyard_resources.errors import DockyardError
from dockyard_resources.providers import quiet_errors
from dockyard_resources.transport import CommandFailed


class FakeContext:
    def __init__(self) -> None:
        self.aborted: tuple[Any, str] | None = None

    def abort(self, code: Any, details: str) -> None:
        self.aborted = (code, details)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Pulumi's real provider server code, loaded as `__main__` as when it runs, without
    its last line (which starts serving)."""
    spec = importlib.util.find_spec("pulumi.dynamic.__main__")
    assert spec is not None and spec.origin is not None
    source = Path(spec.origin).read_text()
    assert source.rstrip().endswith("main()")
    module = types.ModuleType("__main__")
    module.__file__ = spec.origin
    exec(compile(source.rstrip()[: -len("main()")], spec.origin, "exec"), module.__dict__)  # noqa: S102
    monkeypatch.setitem(sys.modules, "__main__", module)
    assert module.traceback is traceback
    assert quiet_errors.install() is True
    return module


def abort_details(server: Any, error: Exception) -> str:
    def method(_self: Any, _request: Any, _context: Any) -> None:
        raise error

    context = FakeContext()
    server._abort_with_traceback(method)(None, None, context)
    assert context.aborted is not None
    return context.aborted[1]


def test_dockyard_errors_reach_the_engine_as_their_message(server: Any) -> None:
    failure = CommandFailed("install instance dy1_", 3, "root /srv/x already exists", "")
    details = abort_details(server, failure)
    assert details == str(failure)
    assert "Traceback" not in details
    assert abort_details(server, DockyardError("plain")) == "plain"


def test_bugs_keep_their_traceback(server: Any) -> None:
    details = abort_details(server, KeyError("oops"))
    assert details.startswith("Traceback (most recent call last):")
    assert "KeyError: 'oops'" in details


def test_outside_the_provider_server_nothing_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    assert quiet_errors.install() is False
