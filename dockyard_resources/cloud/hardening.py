"""What a fresh cloud server gets before anything else: its user-data host key replaced and
the metadata service closed to non-root users (docs/security.md, "Second hardening round").

Its user data (the server's first private host key inside) stays readable at the metadata
service for the server's whole life: NewHostKey + HostKeyRotation make that key worthless,
MetadataBlock keeps local users from reading it (and whatever else the service hands out).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from dockyard_resources.cloud.keys import HostKey, LoginKey
from dockyard_resources.config.models import JumpHost
from dockyard_resources.providers.host_key import HostKeyRotation, NewHostKey
from dockyard_resources.providers.metadata_block import MetadataBlock


@dataclass(frozen=True)
class Hardened:
    # The key sshd presents from now on: the pin of everything after.
    host_key: pulumi.Output[str]
    # Whatever connects to the server must depend on it.
    ready: pulumi.Resource


def harden_server(
    host_name: str,
    *,
    address: pulumi.Input[str],
    user: str,
    server_id: pulumi.Input[str],
    login: LoginKey,
    host_key: HostKey,
    after: pulumi.Resource,
    parent: pulumi.Resource,
    jump: JumpHost | None = None,
) -> Hardened:
    """Rotate the host key (pinned to the user-data key until then), then block the metadata
    service (pinned to the new key); both after `after` (the cloud-init wait)."""
    connection: dict[str, Any] = {
        "host": address,
        "port": 22,
        "user": user,
        "privateKey": login.private_key,
        "hostKey": host_key.public_key,
    }
    if login.passphrase is not None:
        connection["privateKeyPassphrase"] = login.passphrase
    if jump is not None:
        connection["jumpHost"] = jump.connection_props()
    new_key = NewHostKey(
        f"{host_name}-new-host-key",
        connection=connection,
        host_name=host_name,
        # A replaced server gets a key of its own.
        server_id=server_id,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[after]),
    )
    rotation = HostKeyRotation(
        f"{host_name}-host-key-rotation",
        connection=connection,
        host_name=host_name,
        new_host_key=new_key.publicKey,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[new_key]),
    )
    block = MetadataBlock(
        f"{host_name}-metadata-block",
        connection={**connection, "hostKey": rotation.hostKey},
        host_name=host_name,
        # Deleted right before its server: nothing to clean up there.
        throwaway=True,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[rotation]),
    )
    return Hardened(host_key=rotation.hostKey, ready=block)
