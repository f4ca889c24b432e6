"""Run a user's shell commands as a user would: `bash -e` of a script file, output to a log.

A step that hangs, or a test that is interrupted, ends the script as a CI runner cancels a
job: SIGTERM to its process group, so `ci` still destroys what it created, then SIGKILL
after a grace period. Only the process group this module started is signalled.
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path

# Hang guards, not expectations: the longest step (`ci` of the testbed stack) takes ~13 min.
SCRIPT_TIMEOUT_S = 3000
CANCEL_GRACE_S = 900


class ScriptError(AssertionError):
    """The script failed or was cancelled; the message carries its output's tail."""


def ids_of(user: str) -> tuple[int, int]:
    account = pwd.getpwnam(user)
    return account.pw_uid, account.pw_gid


def run_bash(
    script: Path, *, cwd: Path, env: Mapping[str, str], log: Path, user: str | None = None
) -> str:
    """`bash -e SCRIPT` in `cwd` (as `user` when given); its output, or ScriptError."""
    gid = ids_of(user)[1] if user else None
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["bash", "-e", str(script)],
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            user=user,
            group=gid,
            extra_groups=[] if user else None,
        )
        try:
            returncode = proc.wait(timeout=SCRIPT_TIMEOUT_S)
        finally:
            if proc.poll() is None:
                _cancel(proc)
    output = log.read_text(errors="replace")
    if returncode != 0:
        raise ScriptError(f"{script.name} exited {returncode} (log {log}):\n{output[-6000:]}")
    return output


def _cancel(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=CANCEL_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
