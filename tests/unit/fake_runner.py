"""A fake of the SSH session the host operations run their scripts through (`Runner`).

`FakeRunner` records every script with its step name and answers from a table the test
writes: a step that starts with a given text gets a recorded result (stdout made of fact
lines, an exit code), or is handed to a function that runs the script (e.g. by bash in a
sandbox, tests/unit/sysbox_sandbox.py). A step the table does not know fails the test, so
a decision that runs a step it should not (or skips one it should) shows.

`connect(monkeypatch, runner)` makes every provider and host operation that would open an
SSH session get the fake instead: the providers' create/update/read/delete run as Pulumi
calls them, down to the scripts they send.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import dockyard_resources.hostops
import dockyard_resources.providers
from dockyard_resources import transport
from dockyard_resources.render import facts
from dockyard_resources.transport import CommandFailed, Result

# A well-formed ed25519 key line (32 bytes 0..31), and a fingerprint that is only a label.
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f"
FINGERPRINT = "SHA256:fake-host"

Answer = Result | Callable[[str], Result]


def answer(*fact_lines: tuple[str, Any], stdout: str = "", exit_code: int = 0) -> Result:
    """A recorded result: the given facts (name, value) as the host prints them, then
    `stdout`."""
    lines = [facts.line(name, value) for name, value in fact_lines]
    return Result(exit_code, "".join(f"{line}\n" for line in lines) + stdout, "")


@dataclass(frozen=True)
class Call:
    step: str
    script: str
    secrets: tuple[str, ...] = ()


@dataclass
class FakeRunner:
    """Runs nothing: records each script and answers it from `answers` (first step prefix
    that matches wins)."""

    answers: list[tuple[str, Answer]] = field(default_factory=list)
    upload_to: Callable[[bytes, str, int, str | None], None] | None = None
    host_key: str = HOST_KEY
    fingerprint: str = FINGERPRINT
    calls: list[Call] = field(default_factory=list)
    uploads: list[str] = field(default_factory=list)
    targets: list[Any] = field(default_factory=list)  # what `connect` was asked to reach

    def on(self, step_prefix: str, result: Answer) -> FakeRunner:
        self.answers.append((step_prefix, result))
        return self

    @property
    def steps(self) -> list[str]:
        return [call.step for call in self.calls]

    def script(self, step_prefix: str) -> str:
        """The script of the one step that starts with `step_prefix`."""
        [found] = [call.script for call in self.calls if call.step.startswith(step_prefix)]
        return found

    def run(
        self,
        script: str,
        *,
        step: str,
        sudo: bool = True,
        timeout: float | None = None,
        check: bool = True,
        on_line: Callable[[str, str], None] | None = None,
        secrets: Iterable[str] = (),
        env: object = None,
    ) -> Result:
        del sudo, timeout, env
        self.calls.append(Call(step, script, tuple(secrets)))
        found = next((a for prefix, a in self.answers if step.startswith(prefix)), None)
        if found is None:
            raise AssertionError(f"the fake host has no answer for step {step!r}: {self.steps}")
        result = found(script) if callable(found) else found
        if on_line is not None:
            for line in result.stdout.splitlines():
                on_line("stdout", line)
        if check and result.exit_code:
            raise CommandFailed(step, result.exit_code, result.stderr, result.stdout)
        return result

    def upload(self, data: bytes | Path, remote_path: str, *args: Any, **options: Any) -> None:
        """Records the path; with `upload_to`, hands on the bytes (and mode, owner)."""
        self.uploads.append(remote_path)
        if self.upload_to is not None:
            mode = args[0] if args else options.get("mode", 0o644)
            owner = args[1] if len(args) > 1 else options.get("owner")
            payload = data.read_bytes() if isinstance(data, Path) else data
            self.upload_to(payload, remote_path, mode, owner)


def _modules() -> Iterable[Any]:
    for package in (dockyard_resources.hostops, dockyard_resources.providers):
        yield package
        for info in pkgutil.iter_modules(package.__path__, f"{package.__name__}."):
            yield importlib.import_module(info.name)


def connect(monkeypatch: pytest.MonkeyPatch, runner: FakeRunner) -> None:
    """Every module of `hostops` and `providers` that opens SSH sessions gets `runner`
    instead (the targets they ask for land in `runner.targets`)."""

    def fake_session(target: Any) -> FakeRunner:
        runner.targets.append(target)
        return runner

    patched = [m for m in _modules() if getattr(m, "session", None) is transport.session]
    assert patched, "no module opens a session through transport.session any more"
    for module in patched:
        monkeypatch.setattr(module, "session", fake_session)


def sandbox_answer(run: Callable[[str], Any]) -> Callable[[str], Result]:
    """An answer that runs the script with `run` (a sandbox's `run`, returning something
    with `code`, `out` and `err`)."""

    def ran(script: str) -> Result:
        done = run(script)
        return Result(done.code, done.out, getattr(done, "err", ""))

    return ran
