"""Command line: `python -m dockyard_resources validate FILE` and `... ci --stack-file FILE`.

`validate` checks a stack file offline (no Pulumi, no host) and prints its hosts and instances
with their networks; `ci` runs a throw-away stack through its whole life (see `ci.py`).
Exit codes: 0 valid/passed, 1 invalid configuration or a failed step, 2 unreadable file or
bad usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from dockyard_resources import ci, deploy, stack_report, workdir
from dockyard_resources.config import ConfigError, StackFileError, check_stack_file
from dockyard_resources.operate import commands as operate

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_UNREADABLE = 2


def validate_command(path: str, out: TextIO, err: TextIO) -> int:
    try:
        checked = check_stack_file(path)
    except StackFileError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_UNREADABLE
    except ConfigError as exc:
        count = len(exc.errors)
        print(f"{path}: invalid, {count} error{'s' if count != 1 else ''}:", file=err)
        for line in exc.errors:
            print(f"  {line}", file=err)
        return EXIT_INVALID
    for line in checked.warnings:
        print(f"warning: {line}", file=err)
    hosts = checked.hosts
    n_instances = sum(len(h.instances) for h in hosts)
    print(f"{path}: valid, {len(hosts)} host(s), {n_instances} instance(s)", file=out)
    print("", file=out)
    stack_report.print_report(hosts, out)
    return EXIT_OK


def build_parser(prog: str = "python -m dockyard_resources") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Dockyard's command line: offline validation, ephemeral CI stacks, and day-2"
            " operations on a deployed stack (status, tunnel, logs)."
        ),
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    validate = commands.add_parser(
        "validate",
        help="check a stack file offline and show its hosts, instances and networks",
        description=(
            "Check stacks/Pulumi.<stack>.yaml offline and print hosts and instances with"
            " their (allocated) networks. Exit 0 when valid, 1 when invalid, 2 when the file"
            " cannot be read."
        ),
    )
    validate.add_argument(
        "file", metavar="FILE", help="the stack file, e.g. stacks/Pulumi.local.yaml"
    )
    ci.add_parser(commands)
    deploy.add_parser(commands)
    prepared = commands.add_parser(
        "workdir",
        help="prepare the out-of-checkout project directory of a stack and print it",
        description=(
            "Write ${DOCKYARD_STATE}/stacks/<stack>/ (a Pulumi project running this checkout)"
            " with FILE's config merged in, and print its path: run `pulumi` there, and the"
            " checkout's stack files stay as shipped."
        ),
    )
    prepared.add_argument("file", metavar="FILE", type=Path, help="stacks/Pulumi.<stack>.yaml")
    operate.add_parsers(commands)
    return parser


def workdir_command(file: Path) -> int:
    try:
        print(workdir.prepare(file))
    except StackFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    return EXIT_OK


def main(argv: Sequence[str] | None = None, prog: str = "python -m dockyard_resources") -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(prog).parse_args(given)
    if args.command in operate.COMMANDS:
        return operate.run(args, sys.stdout, sys.stderr)
    handlers: dict[str, Callable[[], int]] = {
        "validate": lambda: validate_command(args.file, sys.stdout, sys.stderr),
        "ci": lambda: ci.ci_command(args, sys.stdout, sys.stderr),
        "deploy": lambda: deploy.deploy_command(args, sys.stderr),
        "workdir": lambda: workdir_command(args.file),
    }
    return handlers[args.command]()


def entry_point() -> None:
    """The `dockyard` console script of the installed package."""
    raise SystemExit(main(prog="dockyard"))
