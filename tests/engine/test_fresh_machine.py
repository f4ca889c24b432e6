"""The first commands on a machine with no Dockyard or Pulumi state at all.

Each test runs the commands a new user starts with, as the README prints them, in an
environment with an empty state root (`DOCKYARD_STATE`), an empty `PULUMI_HOME` (no login)
and none of the Pulumi variables the Makefile once exported: the case that failed on every
new machine (`unable to read PULUMI_CONFIG_PASSPHRASE_FILE`). The `ci` command's own
fresh-machine run is the acceptance step of `make test`, which starts from such a state
every time (scripts/test.sh).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.pulumi_cli import REPO_ROOT, PulumiCli

pytestmark = pytest.mark.engine

_PULUMI_VARS = (
    "PULUMI_BACKEND_URL",
    "PULUMI_CONFIG_PASSPHRASE",
    "PULUMI_CONFIG_PASSPHRASE_FILE",
    "PULUMI_ACCESS_TOKEN",
)


@pytest.fixture
def new_machine(pulumi_cli: PulumiCli, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _PULUMI_VARS}
    env.update(
        {
            "DOCKYARD_STATE": str(tmp_path / "state"),
            "PULUMI_HOME": str(tmp_path / "pulumi-home"),
            "PATH": f"{pulumi_cli.bin_dir}{os.pathsep}{env.get('PATH', '')}",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        }
    )
    env.pop("YES", None)
    return env


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900, check=False
    )


def test_make_preview_then_status_work_from_nothing(
    new_machine: dict[str, str], tmp_path: Path
) -> None:
    state = tmp_path / "state"
    assert not state.exists()
    preview = _run(["make", "preview", "STACK=testbed"], new_machine)
    output = preview.stdout + preview.stderr
    assert preview.returncode == 0, output[-6000:]
    assert "PULUMI_CONFIG_PASSPHRASE" not in output, output[-3000:]
    # The default backend and its passphrase were made where the state root says.
    assert (state / "passphrase").is_file()
    assert (state / "stacks" / "testbed" / "Pulumi.yaml").is_file()
    stacks = state / "state" / ".pulumi" / "stacks" / "dockyard"
    assert (stacks / "testbed.json").is_file() or any(stacks.glob("testbed.json*")), output
    assert "Dockyard's default" in output
    assert "dy1_" in output and "SysboxHost" in output  # the real program previewed

    status = _run(
        [str(REPO_ROOT / ".venv/bin/python"), "-m", "dockyard_resources", "status",
         "--stack", "testbed"],
        new_machine,
    )  # fmt: skip
    assert status.returncode == 1
    assert "has no `hosts` output yet" in status.stderr, status.stderr
    assert "PASSPHRASE" not in status.stderr


def test_status_before_anything_says_what_to_do(
    new_machine: dict[str, str], tmp_path: Path
) -> None:
    status = _run(
        [str(REPO_ROOT / ".venv/bin/python"), "-m", "dockyard_resources", "status",
         "--stack", "prod"],
        new_machine,
    )  # fmt: skip
    assert status.returncode == 1
    assert "stack prod not found" in status.stderr, status.stderr
    assert "PASSPHRASE" not in status.stderr
    assert (tmp_path / "state" / "passphrase").is_file()


def test_ci_under_the_makefiles_environment_works_from_nothing(
    new_machine: dict[str, str], tmp_path: Path
) -> None:
    """`ci` as `make test` runs it (the Makefile's exports around it) on a new machine: the
    step that failed in its first second. A stack without hosts keeps it quick (and `ci`
    says there is nothing for the acceptance suite to check)."""
    stack_file = tmp_path / "Pulumi.empty.yaml"
    stack_file.write_text("config:\n  dockyard:hosts: []\n")
    recipe = tmp_path / "extra.mk"
    recipe.write_text(
        f"fresh-ci:\n\t.venv/bin/python -m dockyard_resources ci --stack-file {stack_file}\n"
    )
    proc = _run(["make", "-s", "-f", "Makefile", "-f", str(recipe), "fresh-ci"], new_machine)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    for step in ("] up", "] preview --expect-no-changes", "] destroy: stack"):
        assert step in output, output[-4000:]
    assert "] acceptance: skipped, the stack has no hosts to check" in output
    assert "] passed" in output
    assert (tmp_path / "state" / "passphrase").is_file()
    # `ci` removed its stack and work dir: nothing left in the fresh state but the backend.
    assert not list((tmp_path / "state" / "ci").glob("ci-*"))
