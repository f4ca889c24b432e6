"""The workflow runner of the recipe tests (tests/userpaths/github_actions.py) keeps GitHub's
semantics and refuses to drop anything silently: small workflows, real bash steps."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.userpaths.github_actions import Job, JobRun, Rules, WorkflowError, load_jobs, run_job

WORKFLOW = """
name: t
on: [push]
jobs:
  one:
    runs-on: ubuntu-24.04
    env:
      WHERE: users-value
    steps:
      - uses: actions/checkout@v4
      - name: First
        run: |
          echo "FROM_FIRST=carried" >> "$GITHUB_ENV"
          tool="$RUNNER_TEMP/tool" && mkdir -p "$tool"
          printf '#!/bin/sh\\necho tool-ran\\n' > "$tool/tool" && chmod +x "$tool/tool"
          echo "$tool" >> "$GITHUB_PATH"
      - name: Second
        env:
          OWN: step-value
        run: echo "$WHERE $FROM_FIRST $OWN $(tool)" > seen
      - name: Cloud
        env:
          TOKEN: ${{ secrets.TOKEN }}
        run: echo cloud > cloud-ran
"""


def _job(tmp_path: Path, text: str = WORKFLOW) -> Job:
    path = tmp_path / "wf.yml"
    path.write_text(text)
    return load_jobs(path)["one"]


def _run(tmp_path: Path, job: Job, rules: Rules) -> JobRun:
    workspace = tmp_path / "ws"
    workspace.mkdir(exist_ok=True)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    return run_job(job, rules, workspace=workspace, temp=tmp_path / "temp", env=env)


CHECKOUT = {"actions/checkout": ("the workspace", lambda run: None)}
SKIP_CLOUD = {("one", "Cloud"): "needs a token"}


def test_env_path_and_overrides_carry_as_on_github(tmp_path: Path) -> None:
    rules = Rules(uses=CHECKOUT, skip=SKIP_CLOUD, env={("one", "WHERE"): ("test-value", "why")})
    run = _run(tmp_path, _job(tmp_path), rules)
    assert (tmp_path / "ws" / "seen").read_text() == "test-value carried step-value tool-ran\n"
    assert not (tmp_path / "ws" / "cloud-ran").exists()
    assert run.report == [
        "env WHERE=test-value: why",
        "REPLACED actions/checkout@v4: the workspace",
        "RAN First",
        "RAN Second",
        "SKIPPED Cloud: needs a token",
    ]


def test_a_command_added_before_a_step_runs_in_its_environment(tmp_path: Path) -> None:
    rules = Rules(
        uses=CHECKOUT, skip=SKIP_CLOUD, before={("one", "Second"): ("echo $WHERE > b", "y")}
    )
    run = _run(tmp_path, _job(tmp_path), rules)
    assert (tmp_path / "ws" / "b").read_text() == "users-value\n"
    assert run.report.index("ADDED echo $WHERE > b: y") == run.report.index("RAN Second") - 1


def test_a_failing_step_stops_the_job_with_its_output(tmp_path: Path) -> None:
    text = WORKFLOW.replace(
        'echo "FROM_FIRST', 'echo broken-here; false\n          echo "FROM_FIRST'
    )
    with pytest.raises(
        WorkflowError, match=r"step 'First': step-1.sh exited 1 \(log .*\):\nbroken-here"
    ):
        _run(tmp_path, _job(tmp_path, text), Rules(uses=CHECKOUT, skip=SKIP_CLOUD))
    assert not (tmp_path / "ws" / "seen").exists()


def test_a_uses_step_without_a_stand_in_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(WorkflowError, match="no stand-in for `uses: actions/checkout@v4`"):
        _run(tmp_path, _job(tmp_path), Rules(uses={}, skip=SKIP_CLOUD))


def test_an_expression_in_a_step_that_runs_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(WorkflowError, match="env TOKEN is a GitHub expression"):
        _run(tmp_path, _job(tmp_path), Rules(uses=CHECKOUT))


def test_a_rule_for_a_step_the_file_lacks_is_an_error(tmp_path: Path) -> None:
    rules = Rules(uses=CHECKOUT, skip={**SKIP_CLOUD, ("one", "Renamed"): "gone"})
    with pytest.raises(WorkflowError, match="names step 'Renamed' of job one: not there"):
        _run(tmp_path, _job(tmp_path), rules)
