"""Provision kinds: how each host comes to exist and how Dockyard connects to it.

Every kind ends in the same `ProvisionedHost`: the `connection` input of the host's
resources (architecture.md, "Connection properties"), the address shown in the stack
outputs, and the resources the SysboxHost has to wait for.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pulumi

from dockyard_resources.cloud import CloudServer
from dockyard_resources.cloud.keys import LoginKey
from dockyard_resources.config.models import (
    AwsProvision,
    ExistingProvision,
    HcloudProvision,
    JumpHost,
    QemuProvision,
)
from dockyard_resources.config.spec import HostSpec
from dockyard_resources.vm.local_vm import LocalVm


@dataclass(frozen=True)
class ProvisionedHost:
    # camelCase connection dict; `privateKey` and `privateKeyPassphrase` (when present) are
    # secret Outputs.
    connection: dict[str, Any]
    address: pulumi.Input[str]
    port: pulumi.Input[int]
    user: pulumi.Input[str]
    # Resources that must exist before anything connects (VM, cloud-init wait).
    ready: list[pulumi.Resource] = field(default_factory=list)


def provision_existing(
    provision: ExistingProvision,
    ssh_private_key: pulumi.Output[str] | None,
    passphrase: pulumi.Output[str] | None = None,
) -> ProvisionedHost:
    """An existing machine: connect as configured, with `dockyard:sshPrivateKey` if set and
    the provision's `privateKeyFile` (only its path), then ssh-agent and ~/.ssh keys; an
    encrypted key is opened with `dockyard:sshPrivateKeyPassphrase`."""
    connection: dict[str, Any] = dict(provision.connection_props())
    if ssh_private_key is not None:
        connection["privateKey"] = pulumi.Output.secret(ssh_private_key)
    if passphrase is not None:
        connection["privateKeyPassphrase"] = pulumi.Output.secret(passphrase)
    return ProvisionedHost(
        connection=connection,
        address=provision.address,
        port=provision.ssh_port,
        user=provision.user,
    )


def local_vm_name(stack: str, host_name: str) -> str:
    """The VM's directory name: stack and host, so two stacks never share a VM."""
    stack_part = re.sub(r"[^a-z0-9-]+", "-", stack.lower()).strip("-") or "stack"
    return f"{stack_part}-{host_name}"[:63].rstrip("-")


def provision_qemu(
    host_name: str, provision: QemuProvision, parent: pulumi.Resource
) -> ProvisionedHost:
    """A local QEMU VM: LocalVm generates the login key and the host key to pin."""
    vm = LocalVm(
        f"{host_name}-vm",
        vm_name=local_vm_name(pulumi.get_stack(), host_name),
        memory_mb=provision.memory_mb,
        cpus=provision.cpus,
        disk_gb=provision.disk_gb,
        suite=provision.suite,
        opts=pulumi.ResourceOptions(parent=parent),
    )
    return ProvisionedHost(
        connection={
            "host": vm.host,
            "port": vm.port,
            "user": vm.user,
            "privateKey": pulumi.Output.secret(vm.privateKey),
            "hostKey": vm.hostKey,
        },
        address=vm.host,
        port=vm.port,
        user=vm.user,
        ready=[vm],
    )


def from_cloud_server(
    server: CloudServer, login: LoginKey, jump: JumpHost | None = None
) -> ProvisionedHost:
    connection: dict[str, Any] = {
        "host": server.address,
        "port": 22,
        "user": server.user,
        "privateKey": login.private_key,
        # Never trusted on first use: the user-data key, then the key the host rotated to
        # over a connection pinned to it (cloud/hardening.py).
        "hostKey": server.pinned_host_key,
    }
    if login.passphrase is not None:
        connection["privateKeyPassphrase"] = login.passphrase
    if jump is not None:
        connection["jumpHost"] = jump.connection_props()
    return ProvisionedHost(
        connection=connection,
        address=server.address,
        port=22,
        user=server.user,
        ready=[server.ready],
    )


# The cloud SDKs are large (pulumi-aws alone is about 270 MB): each is an extra of the
# package (`pip install 'dockyard[aws]'`), imported only when a stack has a host of its kind.
CLOUD_EXTRAS = {"hcloud": ("pulumi_hcloud", "pulumi-hcloud"), "aws": ("pulumi_aws", "pulumi-aws")}
# What every cloud kind needs besides its own SDK (keys, the cloud-init wait).
CLOUD_COMMON = (("pulumi_tls", "pulumi-tls"), ("pulumi_command", "pulumi-command"))


def cloud_module(kind: str, host_name: str) -> Any:
    """`dockyard_resources.cloud.<kind>`, or a message saying what to install."""
    needed = (CLOUD_EXTRAS[kind], *CLOUD_COMMON)
    missing = [dist for module, dist in needed if importlib.util.find_spec(module) is None]
    if missing:
        raise pulumi.RunError(
            f"host {host_name} uses provision kind {kind}, which needs {', '.join(missing)}:"
            f" install them with `pip install 'dockyard[{kind}]'` (or `pip install"
            f" {' '.join(missing)}`) in the program's virtualenv"
        )
    return importlib.import_module(f"dockyard_resources.cloud.{kind}")


def provision_host(
    spec: HostSpec,
    parent: pulumi.Resource,
    *,
    ssh_private_key: pulumi.Output[str] | None,
    login_key: Callable[[], LoginKey],
    passphrase: pulumi.Output[str] | None = None,
) -> ProvisionedHost:
    """Create whatever `spec.provision` asks for; `login_key` gives the stack's cloud key,
    `passphrase` opens an encrypted `ssh_private_key` or key file."""
    provision = spec.provision
    if isinstance(provision, ExistingProvision):
        return provision_existing(provision, ssh_private_key, passphrase)
    if isinstance(provision, QemuProvision):
        return provision_qemu(spec.name, provision, parent)
    if isinstance(provision, HcloudProvision):
        hcloud = cloud_module("hcloud", spec.name)
        login = login_key()
        server = hcloud.provision_hcloud(spec.name, provision, login, parent)
        return from_cloud_server(server, login, provision.jump_host)
    if isinstance(provision, AwsProvision):
        aws = cloud_module("aws", spec.name)
        login = login_key()
        server = aws.provision_aws(spec.name, provision, login, parent)
        return from_cloud_server(server, login, provision.jump_host)
    raise TypeError(f"unknown provision kind {provision!r}")  # pragma: no cover


def output_of(resource: pulumi.Resource, key: str) -> pulumi.Output[Any]:
    """A declared output property of a dynamic resource (camelCase key)."""
    value = getattr(resource, key, None)
    if not isinstance(value, pulumi.Output):
        raise AttributeError(
            f"{type(resource).__name__} declares no output {key!r}"
            " (dynamic resources must list their outputs in their props)"
        )
    return value
