"""The GitHub Actions workflows users copy (docs/examples/github-actions/*.yml), parsed with
PyYAML and run step by step in a fresh clone on this machine (tests/userpaths/github_actions.py
keeps GitHub's step semantics).

RULES below is everything this test changes about the users' files, each with its reason:
the `uses:` actions get stand-ins, the QEMU job deploys the offline testbed stack instead of
one that downloads from the internet, and the Hetzner job's cloud steps are skipped (no
token, no internet here). Each job's report lists every step as ran, replaced, skipped or
added, and the test asserts that report, so a step cannot disappear unnoticed.

- The QEMU job runs as root (this machine's user): its `make setup-ci`, then its sudo step
  with `ci` on a stack without hosts (up, no-change preview, destroy, in seconds). The same
  `ci` command's full run (a VM, three instances, the acceptance suite) is the "Locally"
  recipe of docs/ci.md, which tests/engine/test_recipe_ci_locally.py runs as printed: one
  deployment for both, as the suite's time allows.
- The Hetzner job runs as an unprivileged user (nobody) with `sudo`, `apt-get` and
  `dpkg-query` replaced by recording stand-ins that report every package missing: its setup
  must ask for no package and never call sudo. Its skipped `ci` step's command line is still
  read by the `ci` command's own parser, with the address the skipped step would have found.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard_resources import ci, cli
from tests.userpaths.bash import ids_of
from tests.userpaths.fresh_clone import clone, hand_to, new_machine_env
from tests.userpaths.github_actions import JobRun, Rules, load_jobs, run_job

pytestmark = pytest.mark.engine

WORKFLOWS = Path("docs") / "examples" / "github-actions"  # read from the fresh clone
UP_STEP = "Up, check, destroy"
FIND_ADDRESS_STEP = "Find this runner's public IPv4 address"
DOC_ADDRESS = "203.0.113.7"  # what the skipped address step stands for (a documentation one)
UNPRIVILEGED = "nobody"
NO_HOSTS = "stacks/Pulumi.nohosts.yaml"
SETUP_STEP = "Set up (the stack's Debian packages, .venv with the acceptance suite)"


def _checkout(run: JobRun) -> None:
    assert (run.workspace / ".git").is_dir(), "the fresh clone is the workspace"


def _pulumi_cli(run: JobRun) -> None:
    bin_dir = subprocess.run(
        [str(run.workspace / "scripts" / "pulumi-cli.sh")],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    run.path.insert(0, bin_dir)


# ---- The substitution rules: everything this test changes about the workflow files. ----
RULES = Rules(
    uses={
        "actions/checkout": ("the workspace is a fresh `git clone` of this checkout", _checkout),
        "pulumi/actions": (
            "scripts/pulumi-cli.sh's Pulumi CLI goes on PATH (no Pulumi download here)",
            _pulumi_cli,
        ),
    },
    env={
        ("qemu-host", "STACK_FILE"): (
            NO_HOSTS,
            "a stack without hosts: the job's own steps run, the full deployment of the same"
            " ci command is the Locally recipe's test",
        ),
    },
    before={
        ("qemu-host", SETUP_STEP): (
            f"printf 'config:\\n  dockyard:hosts: []\\n' > {NO_HOSTS}",
            "writes that stack file",
        ),
    },
    skip={
        ("hcloud-host", FIND_ADDRESS_STEP): "asks api.ipify.org: no internet on this machine",
        ("hcloud-host", UP_STEP): (
            "creates a Hetzner Cloud server: needs HCLOUD_TOKEN, Hetzner's API and the S3"
            " backend; its command line is checked by the ci parser instead"
        ),
    },
)


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A directory every user can enter (pytest's tmp_path is root's only); removed after."""
    path = Path(tempfile.mkdtemp(prefix="dockyard-recipe-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _recording_stubs(bin_dir: Path, calls: Path) -> None:
    """sudo and apt-get record their argv; dpkg-query says no package is installed."""
    bin_dir.mkdir(parents=True)
    for name, body in {
        "sudo": f'echo "sudo $*" >>{calls}',
        "apt-get": f'echo "apt-get $*" >>{calls}',
        "dpkg-query": f'echo "dpkg-query $*" >>{calls}; exit 1',
    }.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    calls.write_text("")


def test_the_hcloud_job_sets_up_without_root_or_packages(scratch: Path) -> None:
    workspace, home, temp = scratch / "workspace", scratch / "home", scratch / "runner-temp"
    stubs, calls = scratch / "stubs", scratch / "calls"
    clone(workspace)
    job = load_jobs(workspace / WORKFLOWS / "dockyard-hcloud.yml")["hcloud-host"]
    _recording_stubs(stubs, calls)
    for directory in (home, temp, scratch / "state"):
        directory.mkdir()
    hand_to(UNPRIVILEGED, workspace, home, temp, scratch / "state", calls)
    env = new_machine_env(home=home, state=scratch / "state", caches=False)
    env["PATH"] = f"{stubs}:{env['PATH']}"
    run = run_job(job, RULES, workspace=workspace, temp=temp, env=env, user=UNPRIVILEGED)
    assert run.report == [
        "REPLACED actions/checkout@v4: the workspace is a fresh `git clone` of this checkout",
        "REPLACED pulumi/actions@v6: scripts/pulumi-cli.sh's Pulumi CLI goes on PATH"
        " (no Pulumi download here)",
        f"RAN {job.steps[2].name}",
        f"SKIPPED {FIND_ADDRESS_STEP}: {RULES.skip[('hcloud-host', FIND_ADDRESS_STEP)]}",
        f"SKIPPED {UP_STEP}: {RULES.skip[('hcloud-host', UP_STEP)]}",
    ]
    assert calls.read_text() == "", "a cloud stack's setup must not ask for packages or sudo"
    # What setup-ci made is what `ci` needs: its pytest check passes in this venv.
    probe = subprocess.run(
        [".venv/bin/python", "-c", "import importlib.util as u; print(u.find_spec('pytest'))"],
        cwd=workspace, env=env, user=UNPRIVILEGED, group=ids_of(UNPRIVILEGED)[1],
        extra_groups=[], capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert probe.stdout.strip() != "None"

    _check_skipped_ci_step(job.steps[-1].run or "", job.env["STACK_FILE"], workspace)


def _check_skipped_ci_step(command: str, stack_file: str, workspace: Path) -> None:
    """The skipped step's command line, as bash would expand it, is one `ci` accepts, and its
    firewall override reaches the stack's config."""
    expanded = subprocess.run(
        ["bash", "-c", f"for a in {command}; do printf '%s\\0' \"$a\"; done"],
        env={"STACK_FILE": stack_file, "RUNNER_IPV4": DOC_ADDRESS, "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, check=True,
    ).stdout.rstrip("\0").split("\0")  # fmt: skip
    assert expanded[:3] == [".venv/bin/python", "-m", "dockyard_resources"], expanded
    args = cli.build_parser().parse_args(expanded[3:])
    assert args.command == "ci"
    config = ci.load_stack(workspace / args.stack_file, args.allowed_ssh_cidr)["config"]
    (host,) = config["dockyard:hosts"]
    assert host["provision"]["allowedSshCidrs"] == [f"{DOC_ADDRESS}/32"], shlex.join(expanded)


@pytest.mark.timeout(1800)
def test_the_qemu_job_sets_up_and_runs_ci(tmp_path: Path) -> None:
    workspace, state = tmp_path / "workspace", tmp_path / "state"
    clone(workspace)
    job = load_jobs(workspace / WORKFLOWS / "dockyard-qemu.yml")["qemu-host"]
    env = new_machine_env(home=Path.home(), state=state, caches=True)
    try:
        run = run_job(job, RULES, workspace=workspace, temp=tmp_path / "runner-temp", env=env)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)  # its .venv is large
    print("\n".join(run.report))
    print("\n".join(f"{seconds / 60:5.1f} min  {name}" for name, seconds in run.seconds.items()))
    print(run.outputs[UP_STEP][-3000:])
    assert run.report == [
        f"env STACK_FILE={RULES.env[('qemu-host', 'STACK_FILE')][0]}:"
        f" {RULES.env[('qemu-host', 'STACK_FILE')][1]}",
        "REPLACED actions/checkout@v4: the workspace is a fresh `git clone` of this checkout",
        "REPLACED pulumi/actions@v6: scripts/pulumi-cli.sh's Pulumi CLI goes on PATH"
        " (no Pulumi download here)",
        "ADDED {}: {}".format(*RULES.before[("qemu-host", SETUP_STEP)]),
        f"RAN {SETUP_STEP}",
        f"RAN {UP_STEP}",
    ]
    output = run.outputs[UP_STEP]
    for line in (
        "] up",
        "] preview --expect-no-changes",
        "] acceptance: skipped, the stack has no hosts to check",
        "] destroy: stack",
    ):
        assert line in output, output[-6000:]
    assert output.rstrip().endswith("] passed"), output[-6000:]
    # Destroyed and forgotten: no ci work directory is left in the fresh state root.
    assert not list((state / "dockyard" / "ci").glob("ci-*"))
