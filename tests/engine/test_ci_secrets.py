"""`ci` hands the SSH key to Pulumi on stdin, never as an argument.

Every local user can read a running process's arguments (`/proc/PID/cmdline`), so a key
passed to `pulumi config set` as an argument is public while that command runs. The test
puts a recording `pulumi` first on PATH (it logs its arguments, then runs the real CLI) and
lets `ci` create its stack through it: no recorded argument may hold the key, while the
stack's config holds it, encrypted.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest

from dockyard_resources import ci
from tests.fixtures.pulumi_cli import PulumiCli
from tests.program.harness import new_ed25519_key

pytestmark = pytest.mark.engine
CONFIG_KEY = "dockyard:sshPrivateKey"


def recording_pulumi(real: Path, bin_dir: Path, log: Path) -> Path:
    """`bin_dir/pulumi`: appends its arguments to `log` (one line per argument, a blank line
    per run), then execs the real CLI with the same arguments and stdin."""
    bin_dir.mkdir(parents=True)
    wrapper = bin_dir / "pulumi"
    wrapper.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" '' >>'{log}'\nexec '{real}' \"$@\"\n")
    wrapper.chmod(0o755)
    return wrapper


def test_ci_sets_the_ssh_key_without_putting_it_in_any_argv(
    pulumi_backend: PulumiCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    private_key, _public = new_ed25519_key()
    # The lines between the armour: what would show up in an argv that held the key.
    key_body = [line for line in private_key.splitlines() if line and "-----" not in line]
    log = tmp_path / "argv.log"
    recording_pulumi(pulumi_backend.executable, tmp_path / "wrapper" / "bin", log)
    monkeypatch.setenv("DOCKYARD_STATE", str(tmp_path / "state"))
    environ = pulumi_backend.env | {
        "PATH": f"{tmp_path / 'wrapper' / 'bin'}{os.pathsep}{pulumi_backend.env['PATH']}",
        ci.SSH_KEY_ENV: private_key,
    }
    run = ci.CiRun(
        stack_file=Path("Pulumi.argv-test.yaml"),
        keep_on_failure=False,
        acceptance_args=(),
        log=ci.Progress(io.StringIO(), time.monotonic()),
        environ=environ,
    )
    stack = run.create({})
    try:
        calls = log.read_text()
        # The recorder saw the CLI do the work (the Automation API and `config set`).
        assert "stack\ninit\n" in calls, calls[:2000]
        leaked = [line for line in key_body if line in calls]
        assert not leaked, "the private key was passed to `pulumi` as an argument"
        assert f"config\nset\n--secret\n{CONFIG_KEY}\n" in calls, calls[:2000]

        value = stack.get_config(CONFIG_KEY)
        assert value.secret
        assert value.value.strip() == private_key.strip()
        (found,) = run.work_dir.rglob(f"Pulumi.{run.name}.yaml")
        stack_file = found.read_text()
        assert "secure:" in stack_file
        assert not [line for line in key_body if line in stack_file]
    finally:
        stack.workspace.remove_stack(run.name)
