"""`dockyard:index:Host`: one host's resources grouped so a preview reads as a tree.

Inside a host the order is provision -> SysboxHost -> DockyardInstances: the SysboxHost
depends on the provisioned machine, every instance on the SysboxHost, and the instances of a
host do not depend on each other, so Pulumi creates them in parallel and destroys everything
in reverse. An instance gets the networks the stack file writes; the others it keeps, or,
when new, its host chooses (hostops/network_claims.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import pulumi

from dockyard_resources.cloud.keys import LoginKey, stack_login_key
from dockyard_resources.config import ConfigError, validate_hosts
from dockyard_resources.config.networks import NETWORK_KEYS
from dockyard_resources.config.spec import HostSpec, ResolvedInstance
from dockyard_resources.providers.instance import DockyardInstance
from dockyard_resources.providers.sysbox_host import SysboxHost
from dockyard_resources.provisioning import ProvisionedHost, output_of, provision_host

HOST_TYPE: Final = "dockyard:index:Host"

# SysboxHost outputs copied into the `hosts.<name>` stack output.
HOST_OUTPUT_KEYS: Final = (
    "distro",
    "kernel",
    "arch",
    "dockerVersion",
    "sysboxVersion",
    "hostKey",
    "hostKeyFingerprint",
)
# DockyardInstance outputs copied into `hosts.<name>.instances.<prefix>`.
INSTANCE_OUTPUT_KEYS: Final = (
    "dockerHost",
    "socketPath",
    "group",
    "serviceName",
    "bridgeName",
    "networks",
    "sshForward",
)


def owner_id(resource_name: str) -> str:
    """Who a resource's pieces on a host belong to (on-host markers, checked before changes)."""
    return f"{pulumi.get_project()}/{pulumi.get_stack()}/{resource_name}"


def instance_resource_name(host_name: str, prefix: str) -> str:
    # The prefix keeps its "_": host names never contain one, so no clash with "-sysbox".
    return f"{host_name}-{prefix}"


def invalid_config_message(errors: list[str], where: str) -> str:
    count = f"{len(errors)} problem{'s' if len(errors) != 1 else ''}"
    lines = [f"invalid configuration of {where} ({count}):", *(f"  - {e}" for e in errors)]
    return "\n".join(lines)


class LazyLoginKey:
    """The stack's cloud login key, created on first use only (no cloud host: no key)."""

    def __init__(
        self, configured: pulumi.Input[str] | None, passphrase: pulumi.Input[str] | None = None
    ) -> None:
        self._configured = None if configured is None else pulumi.Output.from_input(configured)
        self._passphrase = None if passphrase is None else pulumi.Output.from_input(passphrase)
        self._key: LoginKey | None = None

    def __call__(self) -> LoginKey:
        if self._key is None:
            self._key = stack_login_key(self._configured, self._passphrase)
        return self._key


class DockyardHost(pulumi.ComponentResource):
    """A host, the Docker + sysbox install on it, and its instances.

    In another Pulumi program: `DockyardHost.from_config({...})` with one host entry of the
    stack file's `dockyard:hosts` (docs/library.md)."""

    provisioned: ProvisionedHost
    sysbox: SysboxHost
    instances: dict[str, DockyardInstance]
    outputs: dict[str, Any]

    def __init__(
        self,
        spec: HostSpec,
        *,
        ssh_private_key: pulumi.Output[str] | None,
        login_key: Callable[[], LoginKey],
        ssh_private_key_passphrase: pulumi.Output[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(HOST_TYPE, spec.name, None, opts)
        self.provisioned = provision_host(
            spec,
            self,
            ssh_private_key=ssh_private_key,
            login_key=login_key,
            passphrase=ssh_private_key_passphrase,
        )
        sysbox_name = f"{spec.name}-sysbox"
        self.sysbox = SysboxHost(
            sysbox_name,
            owner=owner_id(sysbox_name),
            connection=self.provisioned.connection,
            host_name=spec.name,
            docker=spec.artifact_props("docker"),
            sysbox=spec.artifact_props("sysbox"),
            artifacts_mode=spec.artifacts,
            allow_sysbox_restart=spec.allow_sysbox_restart,
            # SysboxHost itself keeps its `connection` output secret.
            opts=pulumi.ResourceOptions(parent=self, depends_on=self.provisioned.ready),
        )
        self.instances = {
            instance.prefix: self._instance(spec.name, instance) for instance in spec.instances
        }
        self.outputs = self._outputs(spec)
        self.register_outputs({"address": self.provisioned.address})

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any],
        *,
        ssh_private_key: pulumi.Input[str] | None = None,
        ssh_private_key_passphrase: pulumi.Input[str] | None = None,
        base_dir: Path | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> DockyardHost:
        """A host from one entry of `dockyard:hosts` (same keys, same checks, same defaults
        as the stack file); invalid input stops the program listing every problem, before
        any resource is registered. `ssh_private_key` is the login key and
        `ssh_private_key_passphrase` opens it (or the host's privateKeyFile) when encrypted;
        both are kept secret."""
        try:
            (spec,) = validate_hosts([dict(config)], base_dir=base_dir)
        except ConfigError as exc:
            errors = [e.removeprefix("hosts[0].") for e in exc.errors]
            raise pulumi.RunError(
                invalid_config_message(errors, f"host {config.get('name', '?')!r}")
            ) from None
        key = None if ssh_private_key is None else pulumi.Output.secret(ssh_private_key)
        passphrase = (
            None
            if ssh_private_key_passphrase is None
            else pulumi.Output.secret(ssh_private_key_passphrase)
        )
        return cls(
            spec,
            ssh_private_key=key,
            login_key=LazyLoginKey(key, passphrase),
            ssh_private_key_passphrase=passphrase,
            opts=opts,
        )

    def _instance(self, host_name: str, instance: ResolvedInstance) -> DockyardInstance:
        # The SysboxHost has seen (or enforced) the host key: instances connect pinned.
        connection = {**self.provisioned.connection, "hostKey": self.sysbox.hostKey}
        name = instance_resource_name(host_name, instance.prefix)
        # Only what the stack file writes, not the spec's allocation for an empty host.
        props = instance.props()
        written = {k: None if k in instance.allocated else props[k] for k in NETWORK_KEYS}
        return DockyardInstance(
            name,
            owner=owner_id(name),
            connection=connection,
            host_name=host_name,
            docker_dir=self.sysbox.dockerDir,
            sysbox_dir=self.sysbox.sysboxDir,
            # A changed artifact under the same version restarts the instance onto it.
            docker_sha256=self.sysbox.dockerSha256,
            sysbox_sha256=self.sysbox.sysboxSha256,
            prefix=instance.prefix,
            root=instance.root,
            bridge_cidr=written["bridgeCidr"],
            fixed_cidr=written["fixedCidr"],
            pool_base=written["poolBase"],
            pool_size=written["poolSize"],
            members=list(instance.members),
            network_isolation=None if instance.network_isolation else False,
            enabled=None if instance.enabled else False,
            allow_data_loss=True if instance.allow_data_loss else None,
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[self.sysbox], protect=instance.protect
            ),
        )

    def _outputs(self, spec: HostSpec) -> dict[str, Any]:
        """`hosts.<name>` of the stack outputs (documented in docs/stacks.md)."""
        host: dict[str, Any] = {
            "provision": spec.provision.kind,
            "address": self.provisioned.address,
            "port": self.provisioned.port,
            "user": self.provisioned.user,
        }
        host.update({key: output_of(self.sysbox, key) for key in HOST_OUTPUT_KEYS})
        host["instances"] = {
            prefix: {
                "root": next(i.root for i in spec.instances if i.prefix == prefix),
                **{key: output_of(resource, key) for key in INSTANCE_OUTPUT_KEYS},
            }
            for prefix, resource in self.instances.items()
        }
        return host
