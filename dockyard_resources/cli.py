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

from dockyard_resources import ci, deploy, workdir
from dockyard_resources.config import (
    ConfigError,
    HostSpec,
    StackFileError,
    load_stack_file,
    project_dir_of,
    validate_stack_config,
)
from dockyard_resources.config.spec import ResolvedInstance
from dockyard_resources.operate import commands as operate

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_UNREADABLE = 2


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _provision_text(host: HostSpec) -> str:
    p = host.provision
    if p.kind == "existing":
        return f"existing {p.user}@{p.address}:{p.ssh_port}"
    if p.kind == "qemu":
        return f"qemu {p.suite} {p.cpus}cpu {p.memory_mb}MB {p.disk_gb}GB"
    if p.kind == "hcloud":
        return f"hcloud {p.server_type} {p.location} {p.image}"
    return f"aws {p.region} {p.instance_type}"


def _artifact_text(host: HostSpec, which: str) -> str:
    artifact = host.docker if which == "docker" else host.sysbox
    archs = ",".join(artifact.pinned()) or "no arch pinned"
    return f"{artifact.version} ({archs})"


def _mark(instance: ResolvedInstance, key: str, text: str) -> str:
    return f"{text}*" if key in instance.allocated else text


def render_report(hosts: Sequence[HostSpec]) -> list[str]:
    """The tables printed for a valid stack file."""
    if not hosts:
        return ["no hosts"]
    host_rows = [["HOST", "PROVISION", "DOCKER", "SYSBOX", "ARTIFACTS", "SYSBOX RESTART"]]
    for host in hosts:
        host_rows.append(
            [
                host.name,
                _provision_text(host),
                _artifact_text(host, "docker"),
                _artifact_text(host, "sysbox"),
                host.artifacts,
                "allowed" if host.allow_sysbox_restart else "refused",
            ]
        )
    lines = _table(host_rows)
    instance_rows = [["HOST", "PREFIX", "ROOT", "BRIDGE", "FIXED", "POOL", "SIZE", "MEMBERS"]]
    for host in hosts:
        for inst in host.instances:
            instance_rows.append(
                [
                    host.name,
                    inst.prefix,
                    inst.root,
                    _mark(inst, "bridgeCidr", str(inst.bridge_cidr)),
                    _mark(inst, "fixedCidr", str(inst.fixed_cidr)),
                    _mark(inst, "poolBase", str(inst.pool_base)),
                    _mark(inst, "poolSize", str(inst.pool_size)),
                    ",".join(inst.members) or "-",
                ]
            )
    lines.append("")
    if len(instance_rows) == 1:
        lines.append("no instances")
    else:
        lines.extend(_table(instance_rows))
        lines.append("* allocated (omitted in the stack file) as on an empty host; a host chooses")
        lines.append("  free ones at create and an instance keeps its own (docs/configuration.md)")
    return lines


def validate_command(path: str, out: TextIO, err: TextIO) -> int:
    try:
        config = load_stack_file(path)
        hosts = validate_stack_config(config, base_dir=project_dir_of(path))
    except StackFileError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_UNREADABLE
    except ConfigError as exc:
        count = len(exc.errors)
        print(f"{path}: invalid, {count} error{'s' if count != 1 else ''}:", file=err)
        for line in exc.errors:
            print(f"  {line}", file=err)
        return EXIT_INVALID
    n_instances = sum(len(h.instances) for h in hosts)
    print(f"{path}: valid, {len(hosts)} host(s), {n_instances} instance(s)", file=out)
    print("", file=out)
    for line in render_report(hosts):
        print(line, file=out)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dockyard_resources",
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
    # Listed for --help only: main() hands `bench ...` to tools/bench before parsing.
    commands.add_parser(
        "bench",
        add_help=False,
        help="provisioning benchmark on the QEMU test host (from a checkout; see"
        " docs/performance.md; `bench --help` for its options)",
    )
    return parser


def bench_command(args: Sequence[str]) -> int:
    try:
        from tools.bench.run import main as bench_main  # noqa: PLC0415 - a checkout-only tool
    except ImportError as exc:
        print(f"error: the benchmark runs from a Dockyard checkout (tools/bench): {exc}",
              file=sys.stderr)  # fmt: skip
        return EXIT_UNREADABLE
    return bench_main(list(args))


def workdir_command(file: Path) -> int:
    try:
        print(workdir.prepare(file))
    except StackFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    if given[:1] == ["bench"]:  # its options are its own: argparse would claim them
        return bench_command(given[1:])
    args = build_parser().parse_args(given)
    if args.command in operate.COMMANDS:
        return operate.run(args, sys.stdout, sys.stderr)
    handlers: dict[str, Callable[[], int]] = {
        "validate": lambda: validate_command(args.file, sys.stdout, sys.stderr),
        "ci": lambda: ci.ci_command(args, sys.stdout, sys.stderr),
        "deploy": lambda: deploy.deploy_command(args, sys.stderr),
        "workdir": lambda: workdir_command(args.file),
    }
    return handlers[args.command]()
