"""`dockyard:index:Host`: one host's resources grouped so a preview reads as a tree.

Inside a host the order is provision -> SysboxHost -> DockyardInstances: the SysboxHost
depends on the provisioned machine, every instance on the SysboxHost, and the instances of a
host do not depend on each other, so Pulumi creates them in parallel and destroys everything
in reverse. An instance gets the networks the stack file writes; the others it keeps, or,
when new, its host chooses (hostops/network_claims.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import pulumi

from dockyard_resources.cloud.keys import LoginKey
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


class DockyardHost(pulumi.ComponentResource):
    """A host, the Docker + sysbox install on it, and its instances."""

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
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(HOST_TYPE, spec.name, None, opts)
        self.provisioned = provision_host(
            spec, self, ssh_private_key=ssh_private_key, login_key=login_key
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
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.sysbox]),
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
