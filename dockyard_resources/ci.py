"""`python -m dockyard_resources ci --stack-file FILE`: an ephemeral stack, tested, then gone.

Through Pulumi's Automation API: a uniquely named stack is made from the stack file, its
destroy is registered before `up` runs (an exit, an exception, Ctrl-C or SIGTERM all reach
it), then `up`, `preview --expect-no-changes`, the acceptance suite (`tests/acceptance`) and
always `destroy` plus `stack rm`. Exit 0 only when every step passed.

The stack lives in a work directory of its own under `${DOCKYARD_STATE}/ci/<stack>/` (paths.py) (see
`workdir.py`), so nothing in the checkout changes and relative paths in the stack file mean
what they mean for `validate`.
"""

from __future__ import annotations

import argparse
import contextlib
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
from typing import Any, TextIO

from pulumi import automation as auto

from dockyard_resources import paths, pulumi_env, workdir
from dockyard_resources.config import (
    ConfigError,
    StackFileError,
    load_stack_file,
    project_dir_of,
    validate_stack_config,
)
from dockyard_resources.errors import DockyardError

REPO_ROOT = workdir.REPO_ROOT
ACCEPTANCE_DIR = REPO_ROOT / "tests" / "acceptance"
SSH_KEY_ENV = "DOCKYARD_SSH_PRIVATE_KEY"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
_SECURE = "secure"
_SPINNER = re.compile(r"@ [a-z]+\.*")


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


def _secure_keys(config: dict[str, Any]) -> list[str]:
    return sorted(
        key for key, value in config.items() if isinstance(value, dict) and _SECURE in value
    )


def load_config(stack_file: Path) -> dict[str, Any]:
    """The stack file's `config:` mapping, validated offline; secrets cannot travel."""
    config = load_stack_file(str(stack_file))
    secure = _secure_keys(config)
    if secure:
        raise CiError(
            f"{stack_file}: {', '.join(secure)} are encrypted for that file's own stack and "
            "cannot be decrypted in a new one; remove them and give the values through the "
            f"environment instead ({SSH_KEY_ENV} for dockyard:sshPrivateKey, the cloud "
            "providers' own variables such as HCLOUD_TOKEN or AWS_* for their tokens)"
        )
    validate_stack_config(config, base_dir=project_dir_of(str(stack_file)))
    return config


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

    def create(self, config: dict[str, Any]) -> auto.Stack:
        config_dir = workdir.write_project(self.work_dir)
        workspace = self._workspace()
        stack = auto.Stack.create(self.name, workspace)
        self.stack = stack
        workdir.merge_stack_file(config_dir / f"Pulumi.{self.name}.yaml", {"config": config})
        ssh_key = self.environ.get(SSH_KEY_ENV)
        if ssh_key:
            stack.set_config("dockyard:sshPrivateKey", auto.ConfigValue(ssh_key, secret=True))
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
        argv = [
            sys.executable,
            "-m",
            "pytest",
            str(ACCEPTANCE_DIR),
            "--stack",
            self.name,
            "--project-dir",
            str(self.work_dir),
            "-p",
            "no:cacheprovider",
            *self.acceptance_args,
        ]
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
    def run(self, config: dict[str, Any]) -> int:
        failed: BaseException | None = None
        with interrupts_raise():
            try:
                self.log(f"stack {self.name} from {self.stack_file}")
                stack = self.create(config)
                # From here on the `finally` below destroys whatever `up` made.
                self.log("up")
                self.up(stack)
                self.log("preview --expect-no-changes")
                self.preview_no_changes(stack)
                self.acceptance()
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


def ci_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    log = Progress(out, time.monotonic())
    stack_file: Path = args.stack_file
    try:
        config = load_config(stack_file)
    except StackFileError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_USAGE
    except ConfigError as exc:
        print(f"{stack_file}: invalid, {len(exc.errors)} error(s):", file=err)
        for line in exc.errors:
            print(f"  {line}", file=err)
        return EXIT_FAILED
    except CiError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_USAGE
    run = CiRun(
        stack_file=stack_file,
        keep_on_failure=args.keep_on_failure,
        acceptance_args=args.acceptance_args,
        log=log,
        environ=pulumi_env.pulumi_environment(),
    )
    try:
        return run.run(config)
    except CiError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_FAILED
