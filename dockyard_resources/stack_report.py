"""The tables `validate` prints for a valid stack file: hosts, then instances with networks.

Rendered with rich, as `status` renders a deployed stack.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, TextIO

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from dockyard_resources.config import HostSpec
from dockyard_resources.config.spec import ResolvedInstance

# Wide enough for a host row without folding when the output is a file or a pipe (CI logs);
# a terminal uses its own width.
FILE_WIDTH: Final = 160
ALLOCATED_MARK: Final = "*"
ALLOCATED_NOTE: Final = (
    f"{ALLOCATED_MARK} allocated (omitted in the stack file) as on an empty host; a host chooses"
    " free ones at create and an instance keeps its own (docs/configuration.md)"
)


def provision_text(host: HostSpec) -> str:
    p = host.provision
    if p.kind == "existing":
        return f"existing {p.user}@{p.address}:{p.ssh_port}"
    if p.kind == "qemu":
        return f"qemu {p.suite} {p.cpus}cpu {p.memory_mb}MB {p.disk_gb}GB"
    if p.kind == "hcloud":
        return f"hcloud {p.server_type} {p.location} {p.image}"
    return f"aws {p.region} {p.instance_type}"


def artifact_text(host: HostSpec, which: str) -> str:
    artifact = host.docker if which == "docker" else host.sysbox
    arches = ", ".join(artifact.pinned()) or "no arch pinned"
    return f"{artifact.version} ({arches})"


def _network(instance: ResolvedInstance, key: str, value: object) -> str:
    return f"{value}{ALLOCATED_MARK}" if key in instance.allocated else str(value)


def hosts_table(hosts: Sequence[HostSpec]) -> Table:
    table = Table(title="hosts", title_justify="left")
    for column in ("host", "provision", "arch", "docker", "sysbox", "artifacts"):
        table.add_column(column)
    table.add_column("sysbox restart")
    for host in hosts:
        table.add_row(
            host.name,
            provision_text(host),
            host.arch or "at connect",
            artifact_text(host, "docker"),
            artifact_text(host, "sysbox"),
            host.artifacts,
            "allowed" if host.allow_sysbox_restart else "refused",
        )
    return table


def instances_table(hosts: Sequence[HostSpec]) -> Table:
    table = Table(title="instances", title_justify="left")
    for column in ("host", "prefix", "root", "bridge", "fixed", "pool", "size", "members"):
        table.add_column(column)
    for host in hosts:
        for inst in host.instances:
            table.add_row(
                host.name,
                inst.prefix,
                inst.root,
                _network(inst, "bridgeCidr", inst.bridge_cidr),
                _network(inst, "fixedCidr", inst.fixed_cidr),
                _network(inst, "poolBase", inst.pool_base),
                _network(inst, "poolSize", inst.pool_size),
                ", ".join(inst.members) or "-",
            )
    return table


def report(hosts: Sequence[HostSpec]) -> RenderableType:
    """What `validate` shows below its one-line verdict."""
    if not hosts:
        return Text("no hosts")
    if not any(host.instances for host in hosts):
        return Group(hosts_table(hosts), Text("no instances"))
    return Group(hosts_table(hosts), instances_table(hosts), Text(ALLOCATED_NOTE))


def print_report(hosts: Sequence[HostSpec], out: TextIO) -> None:
    console = Console(file=out, width=None if out.isatty() else FILE_WIDTH, highlight=False)
    console.print(report(hosts))
