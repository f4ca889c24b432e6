"""The acceptance suite (tests/acceptance) run by an engine test against the stack it deployed,
with the command `ci` uses. Its report streams to the terminal as it runs (pytest's capture
is off for it) and its tail goes into the failure message."""

from __future__ import annotations

import subprocess
import sys
from collections import deque

import pytest

from dockyard_resources import ci
from tests.engine.dockyard_stack import DockyardStack
from tests.fixtures.pulumi_cli import REPO_ROOT

TAIL_LINES = 200


def run_acceptance(stack: DockyardStack, capsys: pytest.CaptureFixture[str], *args: str) -> None:
    argv = ci.acceptance_command(stack.name, stack.work_dir, args)
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    with capsys.disabled():
        print(f"\n[acceptance] {' '.join(argv[1:])}", flush=True)
        proc = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env=stack.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            tail.append(line)
        code = proc.wait()
    assert code == 0, f"the acceptance suite failed (pytest exit {code}):\n{''.join(tail)}"
