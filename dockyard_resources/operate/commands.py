"""The `status`, `tunnel` and `logs` commands of `python -m dockyard_resources`."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from dockyard_resources.errors import DockyardError
from dockyard_resources.operate import logs, status, tunnel
from dockyard_resources.operate.deployed import Host, Instance, open_stack

DEFAULT_STACK = "local"
COMMANDS = ("status", "tunnel", "logs")


def _stack_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stack", default=DEFAULT_STACK, help=f"the stack (default: {DEFAULT_STACK})"
    )
    parser.add_argument(
        "--project-dir",
        default=None,
        help="directory of the stack's Pulumi.yaml (default: the stack's own project directory"
        " under ~/.cache/dockyard/stacks, else this checkout)",
    )


def add_parsers(commands: Any) -> None:
    shown = commands.add_parser(
        "status",
        help="hosts and instances of a deployed stack: services, versions, containers, hints",
    )
    _stack_options(shown)
    shown.add_argument("--json", action="store_true", help="print JSON instead of a table")

    tunneled = commands.add_parser(
        "tunnel", help="an instance's Docker socket on a local unix socket, over the stack's SSH"
    )
    _stack_options(tunneled)
    tunneled.add_argument("instance", metavar="HOST/PREFIX")
    tunneled.add_argument("--socket", type=Path, default=None, help="local socket path")

    logged = commands.add_parser("logs", help="an instance's journal and daemon logs")
    _stack_options(logged)
    logged.add_argument("instance", metavar="HOST/PREFIX")
    logged.add_argument("-f", "--follow", action="store_true", help="follow until Ctrl-C")
    logged.add_argument("--lines", type=int, default=50, help="lines of each log (default 50)")


def _stop(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _stop_on_ctrl_c_and_sigterm() -> None:
    """Ctrl-C and SIGTERM both end the command. Set explicitly: a process started in the
    background by a shell inherits SIGINT ignored, and Python then leaves it ignored."""
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)


@contextlib.contextmanager
def _events_to(err: TextIO) -> Iterator[None]:
    """The tunnel's and the transport's events (a client without a channel, a lost
    connection replaced) on stderr while the tunnel runs; their messages hold no secrets."""
    handler = logging.StreamHandler(err)
    handler.setFormatter(logging.Formatter("# tunnel: %(message)s"))
    loggers = [logging.getLogger(f"dockyard_resources.{name}") for name in ("operate", "transport")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


def _tunnel(args: argparse.Namespace, out: TextIO, err: TextIO, host: Host, inst: Instance) -> int:
    path = args.socket or tunnel.default_socket(args.stack, host.name, inst.prefix)
    served = tunnel.Tunnel(host, inst, path)
    served.open()
    print(f"export DOCKER_HOST=unix://{path}", file=out, flush=True)
    print(f"# {inst.prefix} on {host.name} until Ctrl-C", file=out, flush=True)
    _stop_on_ctrl_c_and_sigterm()
    try:
        with _events_to(err):
            served.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        served.close()
    return 0


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        stack = open_stack(args.stack, args.project_dir)
        if args.command == "status":
            return status.print_status(stack, out, as_json_output=args.json)
        host, inst = stack.instance(args.instance)
    except DockyardError as exc:
        print(f"error: {exc}", file=err)
        return 1
    where = f"stack {stack.name}, host {host.name} ({host.target.label})"
    try:
        if args.command == "tunnel":
            return _tunnel(args, out, err, host, inst)
        return logs.print_logs(host, inst, out, lines=args.lines, follow=args.follow)
    except DockyardError as exc:
        print(f"error: {where}, instance {inst.prefix}: {exc}", file=err)
        return 1
