"""A deployed Dockyard stack as the acceptance suite sees it: outputs, URNs and SSH to hosts.

Everything comes from the `pulumi` CLI run in the stack's project directory: `stack output`
for what to check, `stack export --show-secrets` for each SysboxHost's connection (address,
pinned host key, login key), so the suite needs nothing but the stack's name.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockyard_resources.transport import SshTarget
from tests.engine.dockyard_stack import Run
from tests.hosts.checks import SshShell

# Marks a secret value in `stack export --show-secrets`.
SECRET_SIG = "4dabf18193072939515e22adb298388d"


class StackError(Exception):
    """The stack cannot be read (not found, no outputs yet, CLI failure)."""


def unwrap_secrets(value: Any) -> Any:
    if isinstance(value, dict):
        if SECRET_SIG in value and "plaintext" in value:
            return unwrap_secrets(json.loads(value["plaintext"]))
        return {k: unwrap_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap_secrets(v) for v in value]
    return value


@dataclass(frozen=True)
class Instance:
    host: str
    prefix: str
    root: str
    docker_host: str
    socket_path: str
    group: str
    service_name: str
    bridge_name: str
    networks: dict[str, Any]
    urn: str

    def docker(self, args: str) -> str:
        """A shell command running the instance's Docker CLI wrapper on its host."""
        return f"{shlex.quote(self.root + '/bin/docker')} {args}"

    @property
    def tag(self) -> str:
        return f"dockyard:{self.prefix}"


@dataclass(frozen=True)
class Host:
    name: str
    provision: str
    docker_version: str
    sysbox_version: str
    target: SshTarget
    sysbox_urn: str
    instances: list[Instance] = field(default_factory=list)

    @property
    def shell(self) -> SshShell:
        return SshShell(self.target)


@dataclass
class DeployedStack:
    name: str
    project_dir: Path
    env: dict[str, str]

    def pulumi(
        self, *args: str, check: bool = True, timeout: float = 3600
    ) -> subprocess.CompletedProcess[str]:
        argv = ["pulumi", *args, "--stack", self.name, "--non-interactive"]
        proc = subprocess.run(
            argv,
            cwd=self.project_dir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise StackError(
                f"`pulumi {' '.join(args)}` on stack {self.name} exited {proc.returncode}:\n"
                f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
            )
        return proc

    def outputs(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.pulumi("stack", "output", "--json").stdout)
        return result

    def resources(self) -> list[dict[str, Any]]:
        exported = json.loads(self.pulumi("stack", "export", "--show-secrets").stdout)
        resources = (exported.get("deployment") or {}).get("resources") or []
        return [unwrap_secrets(r) for r in resources]

    def resource_state(self, urn: str) -> dict[str, Any]:
        """The state entry (id, inputs, outputs; secrets unwrapped) of one resource."""
        for resource in self.resources():
            if resource["urn"] == urn:
                return resource
        raise StackError(f"no resource {urn} in the state of stack {self.name}")

    def hosts(self) -> list[Host]:
        outputs = self.outputs().get("hosts")
        if not outputs:
            raise StackError(
                f"stack {self.name} has no `hosts` output: run `pulumi up` on it first"
            )
        resources = self.resources()
        return [_host(name, out, resources) for name, out in sorted(outputs.items())]

    def destroy_targets(self, urns: list[str]) -> Run:
        """`pulumi destroy --target ...` with its engine events parsed."""
        args = ("destroy", "--yes", "--skip-preview", "--json")
        targets = tuple(arg for urn in urns for arg in ("--target", urn))
        proc = self.pulumi(*args, *targets)
        return Run((*args, *targets), proc.returncode, proc.stdout, proc.stderr)


def _by_name(resources: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """The resource whose URN ends in `::name` (resource names are unique in a stack)."""
    for resource in resources:
        if str(resource.get("urn", "")).endswith(f"::{name}"):
            return resource
    raise StackError(f"no resource named {name} in the stack's state")


def _target(connection: dict[str, Any]) -> SshTarget:
    key = connection.get("privateKey")
    return SshTarget(
        host=str(connection["host"]),
        port=int(connection.get("port") or 22),
        user=str(connection.get("user") or "root"),
        private_key=str(key) if key else None,
        passphrase=connection.get("privateKeyPassphrase") or None,
        password=connection.get("password") or None,
        host_key=str(connection["hostKey"]) if connection.get("hostKey") else None,
        use_agent=not key,
        look_for_keys=not key,
        connect_deadline=300.0,
    )


def _host(name: str, out: dict[str, Any], resources: list[dict[str, Any]]) -> Host:
    sysbox = _by_name(resources, f"{name}-sysbox")
    connection = dict(sysbox["outputs"]["connection"])
    connection.setdefault("hostKey", sysbox["outputs"].get("hostKey"))
    instances = [
        Instance(
            host=name,
            prefix=prefix,
            root=str(inst["root"]),
            docker_host=str(inst["dockerHost"]),
            socket_path=str(inst["socketPath"]),
            group=str(inst["group"]),
            service_name=str(inst["serviceName"]),
            bridge_name=str(inst["bridgeName"]),
            networks=dict(inst["networks"]),
            urn=str(_by_name(resources, f"{name}-{prefix}")["urn"]),
        )
        for prefix, inst in sorted((out.get("instances") or {}).items())
    ]
    return Host(
        name=name,
        provision=str(out.get("provision", "")),
        docker_version=str(out.get("dockerVersion", "")),
        sysbox_version=str(out.get("sysboxVersion", "")),
        target=_target(connection),
        sysbox_urn=str(sysbox["urn"]),
        instances=instances,
    )


def stack_from_options(name: str, project_dir: str | None) -> DeployedStack:
    directory = Path(project_dir or Path(__file__).resolve().parents[2]).resolve()
    if not (directory / "Pulumi.yaml").is_file():
        raise StackError(f"{directory} holds no Pulumi.yaml: pass --project-dir")
    return DeployedStack(name=name, project_dir=directory, env=dict(os.environ))
