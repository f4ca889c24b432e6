"""What the acceptance suite adds to `dockyard_resources.operate.deployed`: a shell on a
host, and destroys through the engine with their events parsed."""

from __future__ import annotations

from dockyard_resources.operate.deployed import DeployedStack, Host
from tests.engine.dockyard_stack import Run
from tests.hosts.checks import SshShell


def shell_of(host: Host) -> SshShell:
    return SshShell(host.target)


def destroy_targets(stack: DeployedStack, urns: list[str]) -> Run:
    """`pulumi destroy --target ...`: exactly these resources, with the engine's events."""
    args = ("destroy", "--yes", "--skip-preview", "--json")
    targets = tuple(arg for urn in urns for arg in ("--target", urn))
    proc = stack.pulumi(*args, *targets)
    return Run((*args, *targets), proc.returncode, proc.stdout, proc.stderr)
