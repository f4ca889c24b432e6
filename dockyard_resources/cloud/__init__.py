"""Cloud VMs (Hetzner Cloud, AWS EC2) prepared with cloud-init so their host key is known."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from dockyard_resources.cloud.keys import HostKey


@dataclass(frozen=True)
class CloudServer:
    """A cloud server that is reachable over SSH once `ready` has been created."""

    address: pulumi.Output[str]
    user: str
    # The key cloud-init installed (from the user data): worthless once rotated.
    host_key: HostKey
    # The key sshd presents after the rotation: what everything after pins.
    pinned_host_key: pulumi.Output[str]
    # The last step of its preparation (cloud-init wait, host key rotation, metadata
    # block): whatever connects to the server must depend on it.
    ready: pulumi.Resource
