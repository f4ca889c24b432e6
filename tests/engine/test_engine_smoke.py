"""Smoke test of the whole engine path: CLI -> language host -> program -> dynamic provider.

Runs a one-resource program through the real `pulumi` on a local file backend:
`up` must create the marker file, `preview --expect-no-changes` must see nothing to
do (and must see a change once config changes), `destroy` must remove the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from pulumi import automation as auto

from tests.fixtures.pulumi_cli import REPO_ROOT, PulumiCli, copy_program, unique_stack_name

pytestmark = pytest.mark.engine

SMOKE_PROGRAM = Path(__file__).parent / "smoke_program"
VENV = REPO_ROOT / ".venv"
TOKEN = "s3cr3t!"


def _prepare_program(dest: Path) -> Path:
    """Copy the program out of the repo and pin the repo's virtualenv by absolute path."""
    program = copy_program(SMOKE_PROGRAM, dest)
    project_file = program / "Pulumi.yaml"
    project = yaml.safe_load(project_file.read_text())
    project["runtime"]["options"]["virtualenv"] = str(VENV)
    project_file.write_text(yaml.safe_dump(project, sort_keys=False))
    return program


def _outputs(cli: PulumiCli, program: Path) -> dict[str, Any]:
    proc = cli.run("stack", "output", "--json", "--show-secrets", cwd=program)
    outputs: dict[str, Any] = json.loads(proc.stdout)
    return outputs


def test_up_preview_destroy_round_trip(pulumi_backend: PulumiCli, tmp_path: Path) -> None:
    if not (VENV / "bin" / "python").is_file():
        pytest.fail(f"the repo virtualenv {VENV} is missing; create it first", pytrace=False)
    cli = pulumi_backend
    program = _prepare_program(tmp_path / "program")
    marker_dir = tmp_path / "markers"
    marker_dir.mkdir()
    marker = marker_dir / "marker.txt"
    stack = unique_stack_name("smoke")

    cli.run("stack", "init", stack, cwd=program)
    try:
        cli.run("config", "set", "markerDir", str(marker_dir), cwd=program)
        cli.run("config", "set", "--secret", "token", TOKEN, cwd=program)
        # The passphrase provider must have encrypted the secret in the stack file.
        stack_file = (program / f"Pulumi.{stack}.yaml").read_text()
        assert TOKEN not in stack_file
        assert "secure:" in stack_file

        up = cli.run("up", "--yes", "--skip-preview", cwd=program)
        assert "2 created" in up.stdout, up.stdout  # the stack and the marker
        assert marker.read_text() == "hello from dockyard"

        outputs = _outputs(cli, program)
        assert outputs["markerPath"] == str(marker)
        # Numbers and booleans keep their JSON types through the engine.
        assert outputs["bytesWritten"] == len("hello from dockyard")
        assert type(outputs["bytesWritten"]) is int
        assert outputs["stats"] == {"count": 3, "ratio": 0.5, "enabled": True}
        assert type(outputs["stats"]["count"]) is int
        assert type(outputs["stats"]["ratio"]) is float
        # The secret config value reached the program decrypted.
        assert outputs["tokenLength"] == len(TOKEN)

        cli.run("preview", "--expect-no-changes", cwd=program)

        # The same check must fail once an input changes, or the step above proves nothing.
        cli.run("config", "set", "content", "changed", cwd=program)
        changed = cli.run("preview", "--expect-no-changes", cwd=program, check=False)
        assert changed.returncode != 0, changed.stdout
        assert "replace" in changed.stdout, changed.stdout
        # A preview changes nothing on disk.
        assert marker.read_text() == "hello from dockyard"

        cli.run("destroy", "--yes", "--skip-preview", cwd=program)
        assert not marker.exists()
        assert _outputs(cli, program) == {}
    finally:
        cli.run("stack", "rm", "--yes", "--force", stack, cwd=program, check=False)


def test_automation_api_uses_the_built_cli(pulumi_backend: PulumiCli, tmp_path: Path) -> None:
    """pulumi.automation with the fixture's workspace options reaches the same engine."""
    cli = pulumi_backend
    program = _prepare_program(tmp_path / "program")
    marker_dir = tmp_path / "markers"
    marker_dir.mkdir()
    stack = auto.create_stack(
        unique_stack_name("auto"), work_dir=str(program), opts=cli.workspace_options(program)
    )
    try:
        stack.set_config("markerDir", auto.ConfigValue(str(marker_dir)))
        stack.set_config("token", auto.ConfigValue(TOKEN, secret=True))

        result = stack.up()
        assert result.summary.result == "succeeded"
        assert (marker_dir / "marker.txt").is_file()
        assert result.outputs["bytesWritten"].value == len("hello from dockyard")
        # Derived from a secret config value, so the engine keeps it secret.
        assert result.outputs["tokenLength"].secret
        assert result.outputs["tokenLength"].value == len(TOKEN)

        assert stack.preview(expect_no_changes=True).change_summary == {"same": 2}

        assert stack.destroy().summary.result == "succeeded"
        assert not (marker_dir / "marker.txt").exists()
    finally:
        stack.workspace.remove_stack(stack.name, force=True)
