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
    host_key: HostKey
    # The cloud-init wait: whatever connects to the server must depend on it.
    ready: pulumi.Resource
