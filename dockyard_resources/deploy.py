"""`python -m dockyard_resources deploy up|preview|destroy|refresh FILE`: what `make up` runs.

Validates the stack file offline, prepares the stack's project directory outside the
checkout (workdir.py), picks the backend the `pulumi` CLI would use (pulumi_env.py: the
user's own, else the default local one with its generated passphrase), creates the stack on
first use, then hands over to `pulumi OP`. On a terminal Pulumi shows the preview and asks
before `up`/`destroy`/`refresh` change anything; `--yes` (`make up YES=1`) or no terminal
(CI) skips the question.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from dockyard_resources import pulumi_env, stack_secrets, workdir
from dockyard_resources.config import (
    ConfigError,
    StackFileError,
    check_stack_file,
    load_stack_document,
)
from dockyard_resources.errors import DockyardError

OPERATIONS = ("up", "preview", "destroy", "refresh")
EXIT_FAILED = 1
EXIT_USAGE = 2


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "deploy",
        help="run pulumi up/preview/destroy/refresh on a stack file (what make up runs)",
        description=(
            "Validate FILE offline, prepare the stack's project directory outside the"
            " checkout, create the stack on first use in the backend `pulumi` would use"
            " (PULUMI_BACKEND_URL, else the current login, else a local file backend with a"
            " generated passphrase), then run `pulumi OP`. On a terminal Pulumi shows the"
            " preview and asks first, unless --yes."
        ),
    )
    parser.add_argument("operation", choices=OPERATIONS)
    parser.add_argument("file", metavar="FILE", type=Path, help="stacks/Pulumi.<stack>.yaml")
    parser.add_argument(
        "--yes", action="store_true", help="no question before changes (also without a terminal)"
    )
    parser.add_argument(
        "pulumi_args", nargs="*", metavar="PULUMI_ARG", help="more arguments for pulumi (after --)"
    )


def _validate(file: Path, err: TextIO) -> bool:
    try:
        checked = check_stack_file(file)
    except StackFileError as exc:
        print(f"error: {exc}", file=err)
        return False
    except ConfigError as exc:
        print(f"{file}: invalid, {len(exc.errors)} error(s):", file=err)
        for line in exc.errors:
            print(f"  {line}", file=err)
        return False
    for line in checked.warnings:
        print(f"warning: {line}", file=err)
    return True


def operation_argv(
    pulumi: str, operation: str, stack: str, *, ask: bool, extra: Sequence[str] = ()
) -> list[str]:
    """argv of `pulumi OP`: changes are confirmed by Pulumi's own question when `ask`."""
    argv = [pulumi, operation, "--stack", stack]
    if operation != "preview" and not ask:
        argv.append("--yes")
    return [*argv, *extra]


def should_ask(yes: bool, stdin: TextIO, environ: Mapping[str, str]) -> bool:
    """Ask only a person: on a terminal, unless told yes (flag or YES=1)."""
    return not yes and environ.get("YES", "") not in ("1", "true", "yes") and stdin.isatty()


def _quiet_run(
    argv: list[str], work_dir: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=work_dir, env=env, capture_output=True, text=True, check=False)


def _cannot_decrypt(file: Path, stack: str, detail: str) -> DockyardError:
    return DockyardError(
        f"the secrets in {file} do not decrypt for stack {stack} here ({detail}): they were"
        " set in another backend or with another passphrase. Use the `pulumi login` (or"
        " PULUMI_BACKEND_URL) and the PULUMI_CONFIG_PASSPHRASE(_FILE) they were set with, or"
        " set them again:"
        f" pulumi config set --secret dockyard:sshPrivateKey --stack {stack} < KEY"
    )


def _decryption_failed(stderr: str) -> str | None:
    """Pulumi's reason when a secret did not decrypt, else None."""
    for marker in ("incorrect passphrase", "message authentication failed", "could not decrypt"):
        if marker in stderr:
            return marker
    return None


def _ensure_stack(pulumi: str, stack: str, work_dir: Path, env: dict[str, str], file: Path) -> None:
    if _quiet_run([pulumi, "stack", "select", stack], work_dir, env).returncode == 0:
        return
    init = [pulumi, "stack", "init", stack]
    if env.get("PULUMI_CONFIG_PASSPHRASE_FILE") or env.get("PULUMI_CONFIG_PASSPHRASE"):
        init += ["--secrets-provider", "passphrase"]
    proc = _quiet_run(init, work_dir, env)
    if proc.returncode != 0:
        reason = _decryption_failed(proc.stderr)
        if reason:
            raise _cannot_decrypt(file, stack, reason)
        raise DockyardError(f"`pulumi stack init {stack}` failed: {proc.stderr.strip()[-1500:]}")


def _check_secrets(
    pulumi: str, stack: str, work_dir: Path, env: dict[str, str], file: Path
) -> None:
    """Secrets that cannot be decrypted here fail now, with the way out, rather than as
    Pulumi's "message authentication failed" in the middle of the run (values not shown)."""
    if not stack_secrets.secure_keys(load_stack_document(file)):
        return
    argv = [pulumi, "config", "--show-secrets", "--json", "--stack", stack]
    proc = _quiet_run(argv, work_dir, env)
    reason = _decryption_failed(proc.stderr)
    if proc.returncode != 0 and reason:
        raise _cannot_decrypt(file, stack, reason)


def deploy_command(args: argparse.Namespace, err: TextIO) -> int:
    file: Path = args.file
    if not _validate(file, err):
        return EXIT_FAILED
    try:
        env = pulumi_env.pulumi_environment()
        pulumi = pulumi_env.pulumi_binary(env)
        if pulumi is None:
            raise DockyardError(pulumi_env.NO_PULUMI)
        stack = workdir.stack_name_of(file)
        work_dir = workdir.prepare(file)
        print(
            f"dockyard: stack {stack} in {pulumi_env.describe_backend(os.environ)},"
            f" project directory {work_dir}",
            file=err,
            flush=True,
        )
        _ensure_stack(pulumi, stack, work_dir, env, file)
        _check_secrets(pulumi, stack, work_dir, env, file)
    except (DockyardError, StackFileError) as exc:
        print(f"error: {exc}", file=err)
        return EXIT_FAILED
    ask = should_ask(args.yes, sys.stdin, os.environ)
    argv = operation_argv(pulumi, args.operation, stack, ask=ask, extra=args.pulumi_args)
    sys.stdout.flush()
    return subprocess.run(argv, cwd=work_dir, env=env, check=False).returncode
