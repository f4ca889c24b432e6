"""The acceptance suite split in two runs against one stack (by hand: docs/ci.md): its
`--skip-destructive` run and its `--destructive-only` run must together run every check
once."""

from __future__ import annotations

import inspect
import subprocess

from dockyard_resources import ci
from tests.acceptance import test_acceptance as suite
from tests.fixtures.pulumi_cli import REPO_ROOT

DESTRUCTIVE = {
    "test_parking_an_instance_keeps_its_data_and_brings_it_back",
    "test_destroy_under_load_twice_leaves_the_others_healthy",
    "test_reboot_brings_back_instances_and_dind",
    "test_full_destroy_leaves_no_trace",
}


def collected(*options: str) -> set[str]:
    argv = ci.acceptance_command("no-such-stack", REPO_ROOT, ("--collect-only", "-q", *options))
    proc = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {line.rsplit("::", 1)[1] for line in proc.stdout.splitlines() if "::" in line}


def test_the_two_parts_run_every_check_once() -> None:
    # --skip-destructive skips at run time the checks that take the `destructive` fixture;
    # --destructive-only selects exactly those: together, every check runs once.
    taking = {
        name
        for name, check in vars(suite).items()
        if name.startswith("test_") and "destructive" in inspect.signature(check).parameters
    }
    assert taking == DESTRUCTIVE
    assert collected("--destructive-only") == DESTRUCTIVE
    assert len(collected()) >= 17


def test_both_options_at_once_are_refused() -> None:
    argv = ci.acceptance_command(
        "no-such-stack", REPO_ROOT, ("--collect-only", "--skip-destructive", "--destructive-only")
    )
    proc = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode != 0 and "exclude each other" in proc.stderr
