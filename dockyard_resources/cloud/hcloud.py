"""A Hetzner Cloud server with a firewall that only lets the allowed ranges reach SSH."""

from __future__ import annotations

import pulumi
import pulumi_hcloud as hcloud

from dockyard_resources.cloud import CloudServer
from dockyard_resources.cloud.cloudinit import render_user_data
from dockyard_resources.cloud.keys import LoginKey, server_host_key
from dockyard_resources.cloud.wait import ready_server
from dockyard_resources.config.models import HcloudProvision


def labels(host_name: str) -> dict[str, str]:
    return {"managed-by": "dockyard", "dockyard-host": host_name}


def provision_hcloud(
    host_name: str, provision: HcloudProvision, login: LoginKey, parent: pulumi.Resource
) -> CloudServer:
    child = pulumi.ResourceOptions(parent=parent)
    host_key = server_host_key(host_name, parent)
    firewall = hcloud.Firewall(
        f"{host_name}-firewall",
        rules=[
            hcloud.FirewallRuleArgs(
                direction="in",
                protocol="tcp",
                port="22",
                source_ips=list(provision.allowed_ssh_cidrs),
                description="SSH for Dockyard",
            )
        ],
        labels=labels(host_name),
        opts=child,
    )
    user_data: pulumi.Output[str] = pulumi.Output.secret(
        pulumi.Output.all(host_key.private_key, host_key.public_key, login.public_key).apply(
            lambda keys: render_user_data(
                host_private_key=keys[0], host_public_key=keys[1], authorized_key=keys[2]
            )
        )
    )
    server = hcloud.Server(
        f"{host_name}-server",
        server_type=provision.server_type,
        location=provision.location,
        image=provision.image,
        user_data=user_data,
        firewall_ids=[firewall.id.apply(int)],
        public_nets=[hcloud.ServerPublicNetArgs(ipv4_enabled=True, ipv6_enabled=True)],
        labels=labels(host_name),
        # The user data carries the server's private host key.
        opts=pulumi.ResourceOptions(parent=parent, additional_secret_outputs=["userData"]),
    )
    return ready_server(
        host_name,
        address=server.ipv4_address,
        server_id=server.id,
        login=login,
        host_key=host_key,
        parent=parent,
        jump=provision.jump_host,
    )
