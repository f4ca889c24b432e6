"""Run the jobs of a GitHub Actions workflow file on this machine, step by step, as a runner.

`run:` steps run as GitHub runs them on Linux: the script under `bash -e`, in the workspace,
with the job's and the step's `env:`, and what earlier steps wrote to `$GITHUB_ENV` and
`$GITHUB_PATH`. What cannot run here is the caller's `Rules`, in one place: a stand-in for
each `uses:` action, a reason for each step that is skipped, env values overridden, commands
added before a step. Every step lands in the job's report as ran, replaced, skipped or added.
A `uses:` step without a stand-in, a rule naming a step the file does not have, or a GitHub
expression (`${{ ... }}`) in a step that runs is an error: nothing is dropped silently.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.userpaths.bash import ScriptError, ids_of, run_bash

EXPRESSION = "${{"


class WorkflowError(AssertionError):
    """The workflow cannot be run as the rules say."""


@dataclass(frozen=True)
class Step:
    job: str
    name: str
    run: str | None
    uses: str | None
    env: Mapping[str, str]

    @property
    def action(self) -> str:
        """`owner/repo` of a `uses:` step, without the version."""
        return (self.uses or "").partition("@")[0]


@dataclass(frozen=True)
class Job:
    id: str
    env: Mapping[str, str]
    steps: tuple[Step, ...]


def _strings(mapping: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in (mapping or {}).items()}


def load_jobs(path: Path) -> dict[str, Job]:
    """The jobs of a workflow file, parsed with PyYAML."""
    document = yaml.safe_load(path.read_text())
    jobs = {}
    for job_id, job in document["jobs"].items():
        steps = []
        for number, raw in enumerate(job["steps"], start=1):
            run, uses = raw.get("run"), raw.get("uses")
            if (run is None) == (uses is None):
                raise WorkflowError(f"{path}: job {job_id} step {number}: one of run/uses")
            name = raw.get("name") or uses or str(run).strip().splitlines()[0]
            steps.append(Step(job_id, name, run, uses, _strings(raw.get("env"))))
        jobs[job_id] = Job(job_id, _strings(job.get("env")), tuple(steps))
    return jobs


@dataclass
class JobRun:
    """A job's state while it runs: what the stand-ins and the steps change."""

    job: Job
    workspace: Path
    temp: Path
    env: dict[str, str]
    user: str | None = None
    path: list[str] = field(default_factory=list)  # $GITHUB_PATH, newest first
    outputs: dict[str, str] = field(default_factory=dict)  # step name -> its output
    seconds: dict[str, float] = field(default_factory=dict)  # step name -> wall time (shown)
    report: list[str] = field(default_factory=list)


StandIn = tuple[str, Callable[[JobRun], None]]


@dataclass(frozen=True)
class Rules:
    """Everything a test changes about a workflow, each with the reason."""

    uses: Mapping[str, StandIn]  # action -> (what stands in for it, how)
    skip: Mapping[tuple[str, str], str] = field(default_factory=dict)  # (job, step) -> why
    # (job, name) -> (value, why): replaces the job's or a step's value of `name`
    env: Mapping[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    before: Mapping[tuple[str, str], tuple[str, str]] = field(default_factory=dict)

    def check(self, jobs: Mapping[str, Job]) -> None:
        names = {(s.job, s.name) for job in jobs.values() for s in job.steps}
        for key in (*self.skip, *self.before):
            if key[0] in jobs and key not in names:
                raise WorkflowError(f"a rule names step {key[1]!r} of job {key[0]}: not there")
        for job_id, name in self.env:
            job = jobs.get(job_id)
            if job and name not in job.env and all(name not in s.env for s in job.steps):
                raise WorkflowError(f"a rule sets env {name} of job {job_id}: not there")


def _step_env(run: JobRun, step: Step, rules: Rules) -> dict[str, str]:
    declared = {**run.job.env, **step.env}
    for (job, name), (value, _why) in rules.env.items():
        if job == step.job and name in declared:
            declared[name] = value
    for name, value in declared.items():
        if EXPRESSION in value:
            raise WorkflowError(
                f"step {step.name!r}: env {name} is a GitHub expression ({value}); give it a"
                " rule or skip the step"
            )
    env = {**run.env, **declared}
    env["PATH"] = os.pathsep.join([*run.path, run.env["PATH"]])
    return env


def _read_file_commands(path: Path) -> list[str]:
    lines = path.read_text().splitlines() if path.exists() else []
    for line in lines:
        if "<<" in line.partition("=")[0]:
            raise WorkflowError(f"multi-line values in {path.name} are not supported: {line}")
    return [line for line in lines if line]


def _run_script(run: JobRun, name: str, script: str, env: dict[str, str]) -> None:
    """The script as GitHub runs a `run:` step on Linux (`bash -e`); its output is kept."""
    number = len(run.outputs) + 1
    script_file = run.temp / f"step-{number}.sh"
    github_env, github_path = run.temp / f"env-{number}", run.temp / f"path-{number}"
    script_file.write_text(script)
    github_env.write_text("")
    github_path.write_text("")
    if run.user:
        for created in (script_file, github_env, github_path):
            os.chown(created, *ids_of(run.user))
    env = {**env, "GITHUB_ENV": str(github_env), "GITHUB_PATH": str(github_path)}
    log = run.temp / f"step-{number}.log"
    started = time.monotonic()
    try:
        run.outputs[name] = run_bash(
            script_file, cwd=run.workspace, env=env, log=log, user=run.user
        )
    except ScriptError as exc:
        raise WorkflowError(f"job {run.job.id}, step {name!r}: {exc}") from None
    run.seconds[name] = time.monotonic() - started
    for line in _read_file_commands(github_env):
        variable, _, value = line.partition("=")
        run.env[variable] = value
    run.path[:0] = reversed(_read_file_commands(github_path))


def run_job(
    job: Job,
    rules: Rules,
    *,
    workspace: Path,
    temp: Path,
    env: Mapping[str, str],
    user: str | None = None,
) -> JobRun:
    """Run `job` in `workspace` (as `user`, else as this process) under `rules`; raises
    WorkflowError when a step fails."""
    rules.check({job.id: job})
    temp.mkdir(parents=True, exist_ok=True)
    if user:
        os.chown(temp, *ids_of(user))
    runner_env = {"CI": "true", "GITHUB_ACTIONS": "true", "GITHUB_WORKSPACE": str(workspace)}
    run = JobRun(job, workspace, temp, {**env, **runner_env, "RUNNER_TEMP": str(temp)}, user)
    for (job_id, name), (value, why) in rules.env.items():
        if job_id == job.id:
            run.report.append(f"env {name}={value}: {why}")
    for step in job.steps:
        key = (job.id, step.name)
        if key in rules.skip:
            run.report.append(f"SKIPPED {step.name}: {rules.skip[key]}")
            continue
        if step.uses is not None:
            if step.action not in rules.uses:
                raise WorkflowError(f"job {job.id}: no stand-in for `uses: {step.uses}`")
            what, stand_in = rules.uses[step.action]
            stand_in(run)
            run.report.append(f"REPLACED {step.uses}: {what}")
            continue
        env = _step_env(run, step, rules)
        if key in rules.before:
            command, why = rules.before[key]
            _run_script(run, command, command, env)
            run.report.append(f"ADDED {command}: {why}")
        assert step.run is not None
        if EXPRESSION in step.run:
            raise WorkflowError(f"step {step.name!r} uses a GitHub expression in run:")
        _run_script(run, step.name, step.run, env)
        run.report.append(f"RAN {step.name}")
    return run
