"""Provision kinds: how each host comes to exist and how Dockyard connects to it.

Every kind ends in the same `ProvisionedHost`: the `connection` input of the host's
resources (architecture.md, "Connection properties"), the address shown in the stack
outputs, and the resources the SysboxHost has to wait for.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pulumi

from dockyard_resources.cloud import CloudServer
from dockyard_resources.cloud.aws import provision_aws
from dockyard_resources.cloud.hcloud import provision_hcloud
from dockyard_resources.cloud.keys import LoginKey
from dockyard_resources.config.models import (
    AwsProvision,
    ExistingProvision,
    HcloudProvision,
    QemuProvision,
)
from dockyard_resources.config.spec import HostSpec
from dockyard_resources.vm.local_vm import LocalVm


@dataclass(frozen=True)
class ProvisionedHost:
    # camelCase connection dict; `privateKey` (when present) is a secret Output.
    connection: dict[str, Any]
    address: pulumi.Input[str]
    port: pulumi.Input[int]
    user: pulumi.Input[str]
    # Resources that must exist before anything connects (VM, cloud-init wait).
    ready: list[pulumi.Resource] = field(default_factory=list)


def provision_existing(
    provision: ExistingProvision, ssh_private_key: pulumi.Output[str] | None
) -> ProvisionedHost:
    """An existing machine: connect as configured, with `dockyard:sshPrivateKey` if set
    (else the transport falls back to ssh-agent and ~/.ssh keys)."""
    connection: dict[str, Any] = dict(provision.connection_props())
    if ssh_private_key is not None:
        connection["privateKey"] = pulumi.Output.secret(ssh_private_key)
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


def from_cloud_server(server: CloudServer, login: LoginKey) -> ProvisionedHost:
    return ProvisionedHost(
        connection={
            "host": server.address,
            "port": 22,
            "user": server.user,
            "privateKey": login.private_key,
            # Never trusted on first use: the user-data key, then the key the host rotated to
            # over a connection pinned to it (cloud/hardening.py).
            "hostKey": server.pinned_host_key,
        },
        address=server.address,
        port=22,
        user=server.user,
        ready=[server.ready],
    )


def provision_host(
    spec: HostSpec,
    parent: pulumi.Resource,
    *,
    ssh_private_key: pulumi.Output[str] | None,
    login_key: Callable[[], LoginKey],
) -> ProvisionedHost:
    """Create whatever `spec.provision` asks for; `login_key` gives the stack's cloud key."""
    provision = spec.provision
    if isinstance(provision, ExistingProvision):
        return provision_existing(provision, ssh_private_key)
    if isinstance(provision, QemuProvision):
        return provision_qemu(spec.name, provision, parent)
    if isinstance(provision, HcloudProvision):
        login = login_key()
        return from_cloud_server(provision_hcloud(spec.name, provision, login, parent), login)
    if isinstance(provision, AwsProvision):
        login = login_key()
        return from_cloud_server(provision_aws(spec.name, provision, login, parent), login)
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
