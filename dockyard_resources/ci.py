"""`python -m dockyard_resources ci --stack-file FILE`: an ephemeral stack, tested, then gone.

Through Pulumi's Automation API: a uniquely named stack is made from the stack file, its
destroy is registered before `up` runs (an exit, an exception, Ctrl-C or SIGTERM all reach
it), then `up`, `preview --expect-no-changes`, the acceptance suite (`tests/acceptance`) and
always `destroy` plus `stack rm`. Exit 0 only when every step passed.

The stack lives in a work directory of its own under `${DOCKYARD_STATE}/ci/<stack>/` (paths.py) (see
`workdir.py`), so nothing in the checkout changes and relative paths in the stack file mean
what they mean for `validate`. It is created in the backend `pulumi` would use
(pulumi_env.py). Secrets come from the stack file as `pulumi config set --secret` left them:
its secrets provider's keys come along (stack_secrets.py), so they decrypt in the new stack
with the same passphrase or KMS.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TextIO, get_args

import yaml
from pulumi import automation as auto

from dockyard_resources import paths, pulumi_env, stack_secrets, workdir
from dockyard_resources.config import (
    AwsProvision,
    ConfigError,
    HcloudProvision,
    StackFileError,
    load_stack_document,
    project_dir_of,
    validate_stack_config,
)
from dockyard_resources.config.stackfile import NAMESPACE
from dockyard_resources.errors import DockyardError

REPO_ROOT = workdir.REPO_ROOT
ACCEPTANCE_DIR = REPO_ROOT / "tests" / "acceptance"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
_SPINNER = re.compile(r"@ [a-z]+\.*")
# The provision kinds with an SSH firewall, and the stack file key of its allowed sources.
_FIREWALLED = (HcloudProvision, AwsProvision)
_CIDRS_KEY = str(HcloudProvision.model_fields["allowed_ssh_cidrs"].alias)
# What the acceptance suite imports beyond the runtime (requirements-ci.txt).
SUITE_MODULES = {"pytest": "pytest", "docker": "docker-py"}
NO_PYTEST = (
    "the acceptance suite needs {what}, which {python} does not have: install the ci"
    " command's tools with `make setup-ci` (or `{python} -m pip install -r"
    " requirements-ci.txt`)"
)


class CiError(DockyardError):
    """A step of the ci run failed; the message names the step."""


@dataclass
class Progress:
    """Progress lines with the elapsed time, on one stream."""

    out: TextIO
    started: float

    def __call__(self, message: str) -> None:
        elapsed = int(time.monotonic() - self.started)
        for line in message.rstrip("\n").splitlines() or [""]:
            print(f"[ci {elapsed // 60:02d}:{elapsed % 60:02d}] {line}", file=self.out, flush=True)


def stack_name_for(stack_file: Path, now: float | None = None) -> str:
    """`ci-<file stem>-<UTC time>-<random>`: unique, and readable in a backend listing."""
    stem = stack_file.name.removeprefix("Pulumi.").removesuffix(".yaml")
    stem = re.sub(r"[^a-z0-9-]+", "-", stem.lower()).strip("-")[:20] or "stack"
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(now))
    return f"ci-{stem}-{stamp}-{secrets.token_hex(2)}"


def with_allowed_ssh_cidrs(config: dict[str, Any], cidrs: Sequence[str]) -> dict[str, Any]:
    """`config` with every cloud host's `allowedSshCidrs` replaced by `cidrs` (a CI job
    allows its own runner's address, known only when the job runs)."""
    kinds = {get_args(model.model_fields["kind"].annotation)[0] for model in _FIREWALLED}
    hosts = config.get(f"{NAMESPACE}:hosts")
    result, firewalled = [], 0
    for host in hosts if isinstance(hosts, list) else ():
        provision = host.get("provision") if isinstance(host, dict) else None
        if isinstance(provision, dict) and provision.get("kind") in kinds:
            host = {**host, "provision": {**provision, _CIDRS_KEY: list(cidrs)}}  # noqa: PLW2901
            firewalled += 1
        result.append(host)
    if not firewalled:
        raise CiError(
            f"--allowed-ssh-cidr: the stack file has no host with an SSH firewall"
            f" (kind {' or '.join(sorted(kinds))}); leave the option out"
        )
    return {**config, f"{NAMESPACE}:hosts": result}


def load_stack(stack_file: Path, allowed_ssh_cidrs: Sequence[str] = ()) -> dict[str, Any]:
    """What the new stack gets from the stack file: its `config:` (validated offline; with
    `allowed_ssh_cidrs` instead of the cloud hosts' own) and, when it holds secrets, its
    secrets provider's keys (stack_secrets.py)."""
    document = load_stack_document(stack_file)
    config = document.get("config") or {}
    if allowed_ssh_cidrs:
        config = with_allowed_ssh_cidrs(config, allowed_ssh_cidrs)
    try:
        provider = stack_secrets.portable_settings(document, str(stack_file))
    except stack_secrets.StackSecretsError as exc:
        raise CiError(str(exc)) from None
    validate_stack_config(config, base_dir=project_dir_of(str(stack_file)))
    return {**provider, "config": config}


@contextlib.contextmanager
def interrupts_raise() -> Iterator[None]:
    """SIGTERM (a CI runner cancelling the job) unwinds like Ctrl-C, so `finally` runs."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass
class CiRun:
    stack_file: Path
    keep_on_failure: bool
    acceptance_args: Sequence[str]
    log: Progress
    environ: dict[str, str]

    def __post_init__(self) -> None:
        self.name = stack_name_for(self.stack_file)
        self.work_dir = paths.ci_dir() / self.name
        self.stack: auto.Stack | None = None

    # --- steps --------------------------------------------------------------------------
    def _workspace(self) -> auto.LocalWorkspace:
        pulumi = pulumi_env.pulumi_binary(self.environ)
        if pulumi is None:
            raise CiError(pulumi_env.NO_PULUMI)
        return auto.LocalWorkspace(
            work_dir=str(self.work_dir),
            env_vars=self.environ,
            pulumi_command=auto.PulumiCommand(root=str(Path(pulumi).resolve().parent.parent)),
        )

    def create(self, stack_file: dict[str, Any]) -> auto.Stack:
        config_dir = workdir.write_project(self.work_dir)
        # Written before `stack init`, which then adopts the file's secrets provider (its
        # salt or KMS key) instead of making a new one: its secrets decrypt in this stack.
        target = config_dir / f"Pulumi.{self.name}.yaml"
        target.write_text(yaml.safe_dump(stack_file, sort_keys=False))
        try:
            stack = auto.Stack.create(self.name, self._workspace())
        except auto.errors.CommandError as exc:
            if "incorrect passphrase" in str(exc):
                raise CiError(
                    f"{self.stack_file}: its secrets were encrypted with another passphrase"
                    " than the one PULUMI_CONFIG_PASSPHRASE(_FILE) gives here; set the"
                    " passphrase of the stack they were set for"
                ) from None
            raise
        self.stack = stack
        return stack

    def _engine_output(self, step: str) -> Callable[[str], None]:
        def on_output(line: str) -> None:
            # The engine's "@ updating...." spinner lines say nothing a timestamp does not.
            if line.strip() and not _SPINNER.fullmatch(line.strip()):
                self.log(f"{step}: {line.rstrip()}")

        return on_output

    def up(self, stack: auto.Stack) -> None:
        stack.up(on_output=self._engine_output("up"), color="never")

    def preview_no_changes(self, stack: auto.Stack) -> None:
        stack.preview(
            expect_no_changes=True, on_output=self._engine_output("preview"), color="never"
        )

    def acceptance(self) -> None:
        argv = acceptance_command(self.name, self.work_dir, self.acceptance_args)
        self.log(f"acceptance: {' '.join(argv[1:])}")
        proc = subprocess.run(argv, cwd=REPO_ROOT, env=self.environ, check=False)
        if proc.returncode != 0:
            raise CiError(f"the acceptance suite failed (pytest exit {proc.returncode})")

    def destroy(self) -> None:
        stack = self.stack
        if stack is None:
            return
        self.log(f"destroy: stack {self.name}")
        stack.destroy(on_output=self._engine_output("destroy"), color="never")
        stack.workspace.remove_stack(self.name)
        shutil.rmtree(self.work_dir, ignore_errors=True)
        self.stack = None

    def keep_message(self) -> str:
        return (
            f"kept stack {self.name} for inspection (--keep-on-failure); remove it with:\n"
            f"  cd {self.work_dir} && pulumi destroy --stack {self.name} --yes"
            f" && pulumi stack rm --stack {self.name} --yes"
        )

    # --- the run ------------------------------------------------------------------------
    def run(self, stack_file: dict[str, Any]) -> int:
        failed: BaseException | None = None
        with interrupts_raise():
            try:
                self.log(f"stack {self.name} from {self.stack_file}")
                stack = self.create(stack_file)
                # From here on the `finally` below destroys whatever `up` made.
                self.log("up")
                self.up(stack)
                self.log("preview --expect-no-changes")
                self.preview_no_changes(stack)
                if (stack_file.get("config") or {}).get("dockyard:hosts"):
                    self.acceptance()
                else:  # the suite checks hosts and instances: a stack without any has none
                    self.log("acceptance: skipped, the stack has no hosts to check")
            except (CiError, auto.errors.CommandError, KeyboardInterrupt) as exc:
                failed = exc
                self.log(f"FAILED: {_short(exc)}")
            finally:
                if failed is not None and self.keep_on_failure:
                    self.log(self.keep_message())
                else:
                    try:
                        self.destroy()
                    except auto.errors.CommandError as exc:
                        self.log(f"FAILED to destroy stack {self.name}: {_short(exc)}")
                        self.log(self.keep_message())
                        failed = failed or exc
        self.log("passed" if failed is None else "failed")
        return EXIT_OK if failed is None else EXIT_FAILED


def acceptance_command(stack: str, project_dir: Path, extra: Sequence[str] = ()) -> list[str]:
    """The acceptance suite's pytest run against the deployed stack `stack` (run it in
    REPO_ROOT with the stack's Pulumi environment)."""
    return [
        sys.executable,
        "-m",
        "pytest",
        str(ACCEPTANCE_DIR),
        "--stack",
        stack,
        "--project-dir",
        str(project_dir),
        "-p",
        "no:cacheprovider",
        *extra,
    ]


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    lines = text.splitlines()
    return "\n".join(lines[-40:])


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "ci",
        help="create a throw-away stack from a stack file, test it, and always destroy it",
        description=(
            "Create a uniquely named stack from FILE through the Automation API, then run up,"
            " preview --expect-no-changes and the acceptance suite (tests/acceptance), and"
            " always destroy the stack and remove it. Exit 0 only when everything passed."
        ),
    )
    parser.add_argument("--stack-file", required=True, metavar="FILE", type=Path)
    parser.add_argument(
        "--allowed-ssh-cidr",
        action="append",
        default=[],
        metavar="CIDR",
        help="allow SSH to the stack's cloud hosts from CIDR only, instead of their"
        " allowedSshCidrs (repeatable; e.g. the CI runner's own address/32)",
    )
    parser.add_argument(
        "--keep-on-failure",
        action="store_true",
        help="leave the stack deployed when a step fails (prints how to destroy it)",
    )
    parser.add_argument(
        "acceptance_args",
        nargs="*",
        metavar="PYTEST_ARG",
        help="extra arguments for the acceptance suite's pytest (after --)",
    )


def _cannot_start() -> str | None:
    """Why `ci` cannot run here at all, before anything exists."""
    try:
        workdir.require_checkout("ci")
    except StackFileError as exc:
        return str(exc)
    # The acceptance step runs pytest with this Python.
    for module, what in SUITE_MODULES.items():
        if importlib.util.find_spec(module) is None:
            return NO_PYTEST.format(what=what, python=sys.executable)
    return None


def ci_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    log = Progress(out, time.monotonic())
    stack_file: Path = args.stack_file
    problem = _cannot_start()
    if problem:
        print(f"error: {problem}", file=err)
        return EXIT_USAGE
    try:
        document = load_stack(stack_file, args.allowed_ssh_cidr)
        environ = pulumi_env.pulumi_environment()
    except ConfigError as exc:
        print(f"{stack_file}: invalid, {len(exc.errors)} error(s):", file=err)
        for line in exc.errors:
            print(f"  {line}", file=err)
        return EXIT_FAILED
    except DockyardError as exc:  # an unreadable file, secrets that cannot travel, a backend
        print(f"error: {exc}", file=err)
        return EXIT_USAGE
    run = CiRun(
        stack_file=stack_file,
        keep_on_failure=args.keep_on_failure,
        acceptance_args=args.acceptance_args,
        log=log,
        environ=environ,
    )
    try:
        return run.run(document)
    except CiError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_FAILED
