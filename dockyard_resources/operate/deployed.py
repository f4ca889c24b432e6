"""A deployed stack seen from outside: its hosts, instances and how to reach them over SSH.

Read through Pulumi's Automation API in the backend the `pulumi` CLI itself would use
(pulumi_env.py: `PULUMI_BACKEND_URL`, else the current login, else `make up`'s default):
the stack outputs for the hosts and instances, the exported deployment for each SysboxHost's
`connection` (address, pinned host key, login key). Used by `status`, `tunnel`, `logs` and
the acceptance suite.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pulumi import automation as auto

from dockyard_resources import paths, pulumi_env, workdir
from dockyard_resources.errors import DockyardError
from dockyard_resources.transport import SshTarget

# Marks a secret value in `stack export --show-secrets`.
SECRET_SIG = "4dabf18193072939515e22adb298388d"  # noqa: S105 - Pulumi's marker, no secret


class StackError(DockyardError):
    """The stack cannot be read (not found, no outputs yet, the CLI failed)."""


class UnknownInstance(DockyardError):
    """`HOST/PREFIX` names nothing in the stack."""


def unwrap_secrets(value: Any) -> Any:
    """`{SECRET_SIG: ..., "plaintext": "<json>"}` (an export with --show-secrets) -> value."""
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

    def instance(self, prefix: str) -> Instance:
        for inst in self.instances:
            if inst.prefix == prefix:
                return inst
        known = ", ".join(i.prefix for i in self.instances) or "none"
        raise UnknownInstance(f"host {self.name} has no instance {prefix!r} (instances: {known})")


@dataclass
class DeployedStack:
    name: str
    project_dir: Path
    env: dict[str, str]
    backend: str = ""  # for messages: where the stack was looked for, and why there

    def _pulumi_path(self) -> str:
        pulumi = pulumi_env.pulumi_binary(self.env)
        if pulumi is None:
            raise StackError(pulumi_env.NO_PULUMI)
        return pulumi

    def _not_found(self) -> StackError:
        return StackError(
            f"stack {self.name} not found in {self.backend or 'the current backend'}"
            f" (project {self.project_dir}); `pulumi stack ls` there lists the stacks,"
            f" `pulumi up --stack {self.name}` (or `make up STACK={self.name}`) makes one"
        )

    def stack(self) -> auto.Stack:
        """The stack through the Automation API (selected, never created)."""
        root = str(Path(self._pulumi_path()).resolve().parent.parent)
        options = auto.LocalWorkspaceOptions(
            work_dir=str(self.project_dir),
            env_vars=self.env,
            pulumi_command=auto.PulumiCommand(root=root, skip_version_check=True),
        )
        try:
            return auto.select_stack(self.name, work_dir=str(self.project_dir), opts=options)
        except auto.errors.StackNotFoundError:
            raise self._not_found() from None
        except auto.errors.CommandError as exc:
            raise self._failed("stack select", exc) from None

    def _failed(self, what: str, exc: auto.errors.CommandError) -> StackError:
        detail = str(exc).strip()[-1500:]
        if "no stack named" in detail:
            return self._not_found()
        return StackError(f"stack {self.name}: `pulumi {what}` failed: {detail}")

    def pulumi(self, *args: str, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
        """Any other `pulumi` command on the stack, in its project and backend (raises
        StackError when it fails)."""
        argv = [self._pulumi_path(), *args, "--stack", self.name, "--non-interactive"]
        proc = subprocess.run(
            argv,
            cwd=self.project_dir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if proc.returncode != 0:
            detail = proc.stderr.strip()[-1500:] or proc.stdout.strip()[-1500:]
            if "no stack named" in detail:
                raise self._not_found()
            raise StackError(
                f"stack {self.name}: `pulumi {' '.join(args)}` exited {proc.returncode}: {detail}"
            )
        return proc

    def outputs(self) -> dict[str, Any]:
        stack = self.stack()
        try:
            return {key: output.value for key, output in stack.outputs().items()}
        except auto.errors.CommandError as exc:
            raise self._failed("stack output", exc) from None

    def resources(self) -> list[dict[str, Any]]:
        stack = self.stack()
        try:
            deployment = stack.export_stack().deployment or {}
        except auto.errors.CommandError as exc:
            raise self._failed("stack export", exc) from None
        resources = deployment.get("resources") or []
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
                f"stack {self.name} has no `hosts` output yet: deploy it first (make up"
                f" STACK={self.name})"
            )
        resources = self.resources()
        return [host_of(name, out, resources) for name, out in sorted(outputs.items())]

    def instance(self, address: str) -> tuple[Host, Instance]:
        """`HOST/PREFIX` -> the host and the instance."""
        host_name, sep, prefix = address.partition("/")
        if not sep or not host_name or not prefix:
            raise UnknownInstance(
                f"{address!r}: name an instance as HOST/PREFIX, e.g. local-1/dy1_"
            )
        hosts = {host.name: host for host in self.hosts()}
        if host_name not in hosts:
            known = ", ".join(sorted(hosts)) or "none"
            raise UnknownInstance(f"stack {self.name} has no host {host_name!r} (hosts: {known})")
        host = hosts[host_name]
        return host, host.instance(prefix)


def _by_name(resources: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """The resource whose URN ends in `::name` (resource names are unique in a stack)."""
    for resource in resources:
        if str(resource.get("urn", "")).endswith(f"::{name}"):
            return resource
    raise StackError(f"no resource named {name} in the stack's state")


def target_of(connection: dict[str, Any]) -> SshTarget:
    """An SSH target from a resource's `connection` output: the connection the resources
    used (key text or file, passphrase, ~/.ssh/config, jump host), host key pinned."""
    target = SshTarget.from_props(connection)
    key = target.private_key is not None
    # A key in the state is the login key: the agent and ~/.ssh keys are not offered to
    # the host (a jump host still gets them, as it may not know the stack's key).
    return dataclasses.replace(
        target,
        use_agent=not key,
        look_for_keys=not key,
        connect_deadline=float(connection.get("connectDeadline") or 60),
    )


def host_of(name: str, out: dict[str, Any], resources: list[dict[str, Any]]) -> Host:
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
        target=target_of(connection),
        sysbox_urn=str(sysbox["urn"]),
        instances=instances,
    )


def open_stack(name: str, project_dir: str | Path | None = None) -> DeployedStack:
    """The stack `name` in the backend `pulumi` would use, read in `project_dir`; else in its
    `make up` project directory (workdir.py) when that holds this stack; else in the current
    directory when it is a Pulumi project (a program using the installed package); else in
    this checkout (where plain `pulumi stack init` in the checkout puts it)."""
    if project_dir is not None:
        directory = Path(project_dir)
    elif (paths.stacks_dir() / name / "Pulumi.yaml").is_file():
        directory = paths.stacks_dir() / name
    elif (Path.cwd() / "Pulumi.yaml").is_file():
        directory = Path.cwd()
    else:
        directory = workdir.REPO_ROOT
    directory = directory.expanduser().resolve()
    if not (directory / "Pulumi.yaml").is_file():
        raise StackError(f"{directory} holds no Pulumi.yaml: pass the stack's --project-dir")
    backend = pulumi_env.describe_backend(os.environ)
    env = pulumi_env.pulumi_environment()
    return DeployedStack(name=name, project_dir=directory, env=env, backend=backend)
