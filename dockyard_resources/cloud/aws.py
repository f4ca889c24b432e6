"""An AWS EC2 instance running Ubuntu 24.04, reachable over SSH from the allowed ranges only."""

from __future__ import annotations

from typing import Final

import pulumi
import pulumi_aws as aws

from dockyard_resources.cloud import CloudServer
from dockyard_resources.cloud.cloudinit import render_user_data
from dockyard_resources.cloud.keys import LoginKey, server_host_key
from dockyard_resources.cloud.wait import ready_server
from dockyard_resources.config.models import AwsProvision

# Canonical, the publisher of the official Ubuntu AMIs.
UBUNTU_OWNER: Final = "099720109477"
# EC2 names the architecture x86_64 / arm64, Ubuntu's AMI names amd64 / arm64.
AMI_ARCH: Final = {"x86_64": "amd64", "arm64": "arm64"}


def ubuntu_ami_name(ec2_arch: str) -> str:
    return f"ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-{AMI_ARCH[ec2_arch]}-server-*"


def _ami_arch(supported: list[str]) -> str:
    """The first architecture of the instance type that Ubuntu publishes images for."""
    for arch in supported:
        if arch in AMI_ARCH:
            return arch
    raise pulumi.RunError(f"no Ubuntu 24.04 AMI for instance architectures {supported}")


def ubuntu_ami(instance_type: str, provider: aws.Provider) -> pulumi.Output[str]:
    """The newest Ubuntu 24.04 AMI for the architecture of `instance_type` (e.g. t4g: arm64)."""
    invoke = pulumi.InvokeOptions(provider=provider)
    arch = aws.ec2.get_instance_type_output(instance_type=instance_type, opts=invoke).apply(
        lambda t: _ami_arch(list(t.supported_architectures))
    )
    filters = arch.apply(
        lambda a: [
            aws.ec2.GetAmiFilterArgs(name="name", values=[ubuntu_ami_name(a)]),
            aws.ec2.GetAmiFilterArgs(name="virtualization-type", values=["hvm"]),
        ]
    )
    ami = aws.ec2.get_ami_output(
        owners=[UBUNTU_OWNER], most_recent=True, filters=filters, opts=invoke
    )
    return ami.id


def tags(host_name: str) -> dict[str, str]:
    return {"Name": f"dockyard-{host_name}", "managed-by": "dockyard", "dockyard-host": host_name}


def provision_aws(
    host_name: str, provision: AwsProvision, login: LoginKey, parent: pulumi.Resource
) -> CloudServer:
    provider = aws.Provider(
        f"{host_name}-aws",
        region=provision.region,
        opts=pulumi.ResourceOptions(parent=parent),
    )
    child = pulumi.ResourceOptions(parent=parent, provider=provider)
    host_key = server_host_key(host_name, parent)
    # The security group must live in the subnet's VPC; without a subnet: the default VPC.
    vpc_id = (
        aws.ec2.get_subnet_output(
            id=provision.subnet_id, opts=pulumi.InvokeOptions(provider=provider)
        ).vpc_id
        if provision.subnet_id is not None
        else None
    )
    v4 = [c for c in provision.allowed_ssh_cidrs if ":" not in c]
    v6 = [c for c in provision.allowed_ssh_cidrs if ":" in c]
    group = aws.ec2.SecurityGroup(
        f"{host_name}-security-group",
        description=f"Dockyard host {host_name}: SSH from the allowed ranges only",
        vpc_id=vpc_id,
        ingress=[
            aws.ec2.SecurityGroupIngressArgs(
                protocol="tcp",
                from_port=22,
                to_port=22,
                cidr_blocks=v4 or None,
                ipv6_cidr_blocks=v6 or None,
                description="SSH for Dockyard",
            )
        ],
        # Hosts download Docker and sysbox and reach registries.
        egress=[
            aws.ec2.SecurityGroupEgressArgs(
                protocol="-1",
                from_port=0,
                to_port=0,
                cidr_blocks=["0.0.0.0/0"],
                ipv6_cidr_blocks=["::/0"],
            )
        ],
        tags=tags(host_name),
        opts=child,
    )
    user_data: pulumi.Output[str] = pulumi.Output.secret(
        pulumi.Output.all(host_key.private_key, host_key.public_key, login.public_key).apply(
            lambda keys: render_user_data(
                host_private_key=keys[0], host_public_key=keys[1], authorized_key=keys[2]
            )
        )
    )
    instance = aws.ec2.Instance(
        f"{host_name}-server",
        ami=ubuntu_ami(provision.instance_type, provider),
        instance_type=provision.instance_type,
        subnet_id=provision.subnet_id,
        vpc_security_group_ids=[group.id],
        associate_public_ip_address=True,
        user_data=user_data,
        # New keys mean a new server: cloud-init only applies them on first boot.
        user_data_replace_on_change=True,
        root_block_device=aws.ec2.InstanceRootBlockDeviceArgs(
            volume_size=provision.disk_gb, volume_type="gp3", delete_on_termination=True
        ),
        # IMDSv2 only, and its answers live for one hop: a container (one routed hop behind
        # the host) gets no session token even if a packet got past the instance's DROP of
        # 169.254.169.254 (docs/security.md). The user data holds the host's SSH key.
        metadata_options=aws.ec2.InstanceMetadataOptionsArgs(
            http_endpoint="enabled",
            http_tokens="required",
            http_put_response_hop_limit=1,
        ),
        tags=tags(host_name),
        opts=pulumi.ResourceOptions(
            parent=parent, provider=provider, additional_secret_outputs=["userData"]
        ),
    )
    return ready_server(
        host_name,
        # Through a jump host: the private address, the instance needs no public SSH.
        address=instance.private_ip if provision.jump_host else instance.public_ip,
        server_id=instance.id,
        login=login,
        host_key=host_key,
        parent=parent,
        jump=provision.jump_host,
    )
