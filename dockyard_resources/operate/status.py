"""`python -m dockyard_resources status [--stack NAME] [--json]`: what runs, host by host.

From the stack outputs plus one SSH round trip per host (hosts in parallel): the shared
sysbox service, and per instance its service state, Docker version, containers, socket,
address pools and what looks wrong. A host that does not answer shows as such; the others
are still shown.
"""

from __future__ import annotations

import json
import shlex
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table

from dockyard_resources.errors import DockyardError
from dockyard_resources.operate.deployed import DeployedStack, Host, Instance
from dockyard_resources.transport import session

READ_TIMEOUT_S = 120


@dataclass
class InstanceStatus:
    prefix: str
    active: str = ""
    enabled: str = ""
    socket: str = ""
    docker_version: str = ""
    running: int | None = None
    containers: int | None = None
    pool: str = ""
    bridge: str = ""
    hints: list[str] = field(default_factory=list)


@dataclass
class HostStatus:
    name: str
    address: str
    reachable: bool
    error: str = ""
    sysbox_service: str = ""
    sysbox_version: str = ""
    docker_version_expected: str = ""
    instances: list[InstanceStatus] = field(default_factory=list)


def status_script() -> str:
    return resources.files("dockyard_resources.operate").joinpath("status.sh").read_text()


def _number(text: Any) -> int | None:
    return int(text) if isinstance(text, str) and text.strip().isdigit() else None


def hints(inst: Instance, seen: dict[str, Any], docker_version: str) -> list[str]:
    """What looks wrong, in words (empty for a healthy running instance)."""
    found: list[str] = []
    enabled = seen.get("enabled") == "enabled"
    if seen.get("active") != "active":
        if seen.get("enabled") in (None, "", "not-found"):
            found.append("service missing")
        elif not enabled:
            found.append("disabled")  # parked (enabled: false), or stopped by hand
        else:
            found.append(f"service {seen.get('active') or 'unknown'}")
        return found
    if not enabled:
        found.append("running but not enabled at boot")
    if seen.get("socket") != f"root:{inst.group}:660":
        found.append(f"socket {seen.get('socket') or 'missing'} (want root:{inst.group}:660)")
    if docker_version and seen.get("dockerVersion") not in ("", docker_version):
        found.append(f"runs Docker {seen.get('dockerVersion')}, host has {docker_version}")
    if not seen.get("dockerVersion"):
        found.append("Docker API does not answer")
    if _number(seen.get("forwardRules")) == 0:
        found.append("no iptables rules")
    return found


def parse(host: Host, stdout: str) -> HostStatus:
    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    status = HostStatus(host.name, host.target.label, True, "", "", "", host.docker_version)
    by_prefix: dict[str, dict[str, Any]] = {}
    for line in lines:
        if line.get("kind") == "host":
            status.sysbox_service = str(line.get("sysboxService", ""))
            status.sysbox_version = str(line.get("sysboxVersion", ""))
        elif line.get("kind") == "instance":
            by_prefix[str(line["prefix"])] = line
    for inst in host.instances:
        seen = by_prefix.get(inst.prefix, {})
        status.instances.append(
            InstanceStatus(
                prefix=inst.prefix,
                active=str(seen.get("active", "")),
                enabled=str(seen.get("enabled", "")),
                socket=str(seen.get("socket", "")),
                docker_version=str(seen.get("dockerVersion", "")),
                running=_number(seen.get("running")),
                containers=_number(seen.get("containers")),
                pool=f"{inst.networks.get('poolBase', '')}/{inst.networks.get('poolSize', '')}",
                bridge=str(inst.networks.get("bridge", "")),
                hints=hints(inst, seen, host.docker_version),
            )
        )
    return status


def host_status(host: Host) -> HostStatus:
    args = " ".join(shlex.quote(x) for inst in host.instances for x in (inst.prefix, inst.root))
    script = f"set -- {args}\n{status_script()}"
    try:
        result = session(host.target).run(script, step="status", timeout=READ_TIMEOUT_S)
    except DockyardError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return HostStatus(host.name, host.target.label, False, first, "", "", "")
    return parse(host, result.stdout)


def collect(stack: DeployedStack) -> list[HostStatus]:
    hosts = stack.hosts()
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(hosts)))) as pool:
        return list(pool.map(host_status, hosts))


def as_json(statuses: list[HostStatus]) -> str:
    return json.dumps([asdict(s) for s in statuses], indent=2)


def table(stack_name: str, statuses: list[HostStatus]) -> Table:
    grid = Table(title=f"stack {stack_name}")
    for column in ("host", "sysbox", "instance", "service", "docker", "containers", "socket"):
        grid.add_column(column)
    grid.add_column("bridge / pool")
    grid.add_column("hints")
    for host in statuses:
        where = f"{host.name}\n{host.address}"
        if not host.reachable:
            grid.add_row(where, "", "", "", "", "", "", "", f"unreachable: {host.error}")
            continue
        sysbox = f"{host.sysbox_service}\n{host.sysbox_version}"
        for inst in host.instances:
            containers = (
                f"{inst.running}/{inst.containers} running" if inst.containers is not None else ""
            )
            grid.add_row(
                where,
                sysbox,
                inst.prefix,
                f"{inst.active or '-'} ({inst.enabled or '-'})",
                inst.docker_version,
                containers,
                inst.socket,
                f"{inst.bridge}\n{inst.pool}",
                "; ".join(inst.hints) or "ok",
            )
            where, sysbox = "", ""
    return grid


def print_status(stack: DeployedStack, out: TextIO, *, as_json_output: bool) -> int:
    """Print the status; exit 0 when every host answered and nothing looks wrong, else 1."""
    statuses = collect(stack)
    if as_json_output:
        print(as_json(statuses), file=out)
    else:
        Console(file=out, width=160).print(table(stack.name, statuses))
    healthy = all(h.reachable and not any(i.hints for i in h.instances) for h in statuses)
    return 0 if healthy else 1
