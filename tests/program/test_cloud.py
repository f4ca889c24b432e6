"""Cloud kinds: the cloud resources, cloud-init carrying the generated keys, the wait."""

from __future__ import annotations

import importlib.util
from typing import Any

import pulumi
import pytest
import yaml

from dockyard_resources import provisioning
from dockyard_resources.cloud.cloudinit import CLOUD_USER
from dockyard_resources.cloud.keys import STACK_LOGIN_KEY_NAME
from dockyard_resources.cloud.wait import WAIT_COMMAND
from tests.program.harness import (
    DYNAMIC_PREFIX,
    SERVER_IP,
    FakeEngine,
    ProgramRun,
    Registration,
    is_secret,
    new_ed25519_key,
    next_host_key,
    run_program,
    tls_private_key,
    tls_public_key,
)

TLS_TYPE = "tls:index/privateKey:PrivateKey"
COMMAND_TYPE = "command:remote:Command"


def hcloud_host(name: str = "cloud-1") -> dict[str, Any]:
    return {
        "name": name,
        "provision": {
            "kind": "hcloud",
            "serverType": "cpx31",
            "location": "nbg1",
            "allowedSshCidrs": ["198.51.100.0/24", "2001:db8::/32"],
        },
        "instances": [{"prefix": "dy1_", "root": "/dy1"}],
    }


def aws_host(name: str = "ec2-1", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "provision": {
            "kind": "aws",
            "region": "eu-central-1",
            "instanceType": "t3.large",
            "diskGb": 40,
            "allowedSshCidrs": ["198.51.100.0/24"],
            **extra,
        },
        "instances": [{"prefix": "dy1_", "root": "/dy1"}],
    }


def user_data(server: Registration) -> dict[str, Any]:
    assert is_secret(server.inputs["userData"]), "user data holds the host's private key"
    text = server.plain("userData")
    assert text.startswith("#cloud-config\n")
    document = yaml.safe_load(text)
    assert isinstance(document, dict)
    return document


def assert_cloud_init_carries(document: dict[str, Any], host: str, authorized: str) -> None:
    assert document["ssh_keys"] == {
        "ed25519_private": tls_private_key(f"{host}-host-key"),
        "ed25519_public": tls_public_key(f"{host}-host-key").strip(),
    }
    assert document["ssh_deletekeys"] is True
    assert document["ssh_genkeytypes"] == []
    assert document["ssh_pwauth"] is False
    (user,) = document["users"]
    assert user["name"] == CLOUD_USER
    assert user["sudo"] == "ALL=(ALL) NOPASSWD:ALL"
    assert user["ssh_authorized_keys"] == [authorized]


def assert_waits_then_connects_pinned(run: ProgramRun, host: str, address: str) -> None:
    host_key = tls_public_key(f"{host}-host-key").strip()
    wait = run.named(f"{host}-cloud-init")
    assert wait.type == COMMAND_TYPE
    assert wait.plain("create") == WAIT_COMMAND
    assert is_secret(wait.inputs["connection"])
    connection = wait.plain("connection")
    assert connection["host"] == address
    assert connection["user"] == CLOUD_USER
    assert connection["hostKey"] == host_key
    # No trust on first use: the SysboxHost pins the key the host rotated to (below), and
    # instances get it back from the SysboxHost.
    rotated = next_host_key(f"{host}-new-host-key")
    sysbox = run.named(f"{host}-sysbox")
    assert sysbox.plain("connection") == {
        "host": address,
        "port": 22,
        "user": CLOUD_USER,
        "privateKey": tls_private_key(STACK_LOGIN_KEY_NAME),
        "hostKey": rotated,
    }
    assert is_secret(sysbox.inputs["connection"])
    assert run.named(f"{host}-dy1_").plain("connection")["hostKey"] == rotated
    assert run.outputs[host]["address"] == address
    assert run.outputs[host]["user"] == CLOUD_USER
    assert run.outputs[host]["hostKey"] == rotated


def test_hcloud_host_gets_a_firewalled_server_with_generated_keys() -> None:
    run = run_program([hcloud_host()])

    component = run.urn("cloud-1")
    login = run.named(STACK_LOGIN_KEY_NAME)
    assert login.type == TLS_TYPE
    assert login.plain("algorithm") == "ED25519"
    assert "privateKeyOpenssh" in login.additional_secret_outputs
    host_key = run.named("cloud-1-host-key")
    assert (host_key.type, host_key.parent) == (TLS_TYPE, component)
    assert host_key.plain("algorithm") == "ED25519"

    firewall = run.named("cloud-1-firewall")
    assert firewall.type == "hcloud:index/firewall:Firewall"
    assert firewall.parent == component
    (rule,) = firewall.plain("rules")
    assert (rule["direction"], rule["protocol"], rule["port"]) == ("in", "tcp", "22")
    assert rule["sourceIps"] == ["198.51.100.0/24", "2001:db8::/32"]

    server = run.named("cloud-1-server")
    assert server.type == "hcloud:index/server:Server"
    assert server.parent == component
    assert server.plain("serverType") == "cpx31"
    assert server.plain("location") == "nbg1"
    assert server.plain("image") == "ubuntu-24.04"
    assert server.plain("firewallIds") == [4711]
    assert "userData" in server.additional_secret_outputs
    assert_cloud_init_carries(
        user_data(server), "cloud-1", tls_public_key(STACK_LOGIN_KEY_NAME).strip()
    )
    assert_waits_then_connects_pinned(run, "cloud-1", SERVER_IP["hcloud"])
    assert run.outputs["cloud-1"]["provision"] == "hcloud"


def test_aws_host_gets_an_ubuntu_instance_behind_a_security_group() -> None:
    run = run_program([aws_host()])

    provider = run.named("ec2-1-aws")
    assert provider.type == "pulumi:providers:aws"
    assert provider.plain("region") == "eu-central-1"

    group = run.named("ec2-1-security-group")
    assert group.type == "aws:ec2/securityGroup:SecurityGroup"
    assert group.provider.startswith(provider.urn)
    (ingress,) = group.plain("ingress")
    assert (ingress["protocol"], ingress["fromPort"], ingress["toPort"]) == ("tcp", 22, 22)
    assert ingress["cidrBlocks"] == ["198.51.100.0/24"]
    assert group.plain("vpcId") is None  # default VPC

    ami_calls = [c for c in run.engine.calls if c.token == "aws:ec2/getAmi:getAmi"]
    (ami_call,) = ami_calls
    assert ami_call.args["owners"] == ["099720109477"]
    assert ami_call.args["mostRecent"] is True
    name_filter = next(f for f in ami_call.args["filters"] if f["name"] == "name")
    assert name_filter["values"] == ["ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"]

    instance = run.named("ec2-1-server")
    assert instance.type == "aws:ec2/instance:Instance"
    assert instance.provider.startswith(provider.urn)
    assert instance.plain("ami") == "ami-0noble"
    assert instance.plain("instanceType") == "t3.large"
    assert instance.plain("vpcSecurityGroupIds") == ["sg-0123"]
    assert instance.plain("rootBlockDevice")["volumeSize"] == 40
    assert instance.plain("userDataReplaceOnChange") is True
    # IMDSv2 only, answers valid for one hop: containers behind the host get no token.
    assert instance.plain("metadataOptions") == {
        "httpEndpoint": "enabled",
        "httpTokens": "required",
        "httpPutResponseHopLimit": 1,
    }
    assert "subnetId" not in instance.inputs or instance.plain("subnetId") is None
    assert_cloud_init_carries(
        user_data(instance), "ec2-1", tls_public_key(STACK_LOGIN_KEY_NAME).strip()
    )
    assert_waits_then_connects_pinned(run, "ec2-1", SERVER_IP["aws"])


def test_aws_subnet_puts_the_security_group_in_its_vpc() -> None:
    run = run_program([aws_host(subnetId="subnet-0123456789abcdef0")])

    assert run.named("ec2-1-security-group").plain("vpcId") == "vpc-0abc"
    assert run.named("ec2-1-server").plain("subnetId") == "subnet-0123456789abcdef0"


def test_aws_arm_instance_types_get_the_arm64_image() -> None:
    engine = FakeEngine()
    engine.instance_arches = ["arm64"]
    run_program([aws_host(instanceType="t4g.large")], engine=engine)

    (ami_call,) = [c for c in engine.calls if c.token == "aws:ec2/getAmi:getAmi"]
    name_filter = next(f for f in ami_call.args["filters"] if f["name"] == "name")
    assert name_filter["values"] == ["ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-arm64-server-*"]


def test_cloud_hosts_share_one_stack_login_key_and_have_their_own_host_keys() -> None:
    run = run_program([hcloud_host("cloud-1"), hcloud_host("cloud-2")])

    keys = sorted(r.name for r in run.of_type(TLS_TYPE))
    assert keys == sorted([STACK_LOGIN_KEY_NAME, "cloud-1-host-key", "cloud-2-host-key"])
    first = user_data(run.named("cloud-1-server"))
    second = user_data(run.named("cloud-2-server"))
    assert first["users"][0]["ssh_authorized_keys"] == second["users"][0]["ssh_authorized_keys"]
    assert first["ssh_keys"] != second["ssh_keys"]


def test_configured_key_is_authorized_instead_of_a_generated_one() -> None:
    private, public = new_ed25519_key()
    run = run_program([hcloud_host()], ssh_private_key=private)

    assert STACK_LOGIN_KEY_NAME not in {r.name for r in run.registrations}
    document = user_data(run.named("cloud-1-server"))
    assert document["users"][0]["ssh_authorized_keys"] == [public]
    assert run.named("cloud-1-sysbox").plain("connection")["privateKey"] == private
    assert run.named("cloud-1-cloud-init").plain("connection")["privateKey"] == private


def test_no_cloud_host_means_no_generated_keys() -> None:
    run = run_program(
        [
            {
                "name": "local-1",
                "provision": {"kind": "qemu"},
                "instances": [{"prefix": "dy1_", "root": "/dy1"}],
            }
        ]
    )
    assert run.of_type(TLS_TYPE) == []


def test_a_cloud_kind_without_its_sdk_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The cloud SDKs are extras of the package: a missing one stops the program with the
    pip command, and is looked for only when a host of that kind exists."""
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "pulumi_hcloud" else real(name, *a),
    )
    with pytest.raises(pulumi.RunError) as refused:
        provisioning.cloud_module("hcloud", "edge-1")
    message = str(refused.value)
    assert "host edge-1 uses provision kind hcloud, which needs pulumi-hcloud" in message
    assert "pip install 'dockyard[hcloud]'" in message
    assert provisioning.cloud_module("aws", "x").__name__ == "dockyard_resources.cloud.aws"


@pytest.mark.parametrize(
    ("host", "server_id", "address"),
    [
        pytest.param(hcloud_host(), "815", SERVER_IP["hcloud"], id="hcloud"),
        pytest.param(aws_host(), "i-0123", SERVER_IP["aws"], id="aws"),
    ],
)
def test_cloud_host_key_is_rotated_and_metadata_blocked_before_the_sysbox_host(
    host: dict[str, Any], server_id: str, address: str
) -> None:
    """cloud-init wait -> NewHostKey -> HostKeyRotation -> MetadataBlock -> SysboxHost: the
    user-data key is trusted up to the rotation only, everything after pins the new key."""
    run = run_program([host])
    name = host["name"]
    user_data_key = tls_public_key(f"{name}-host-key").strip()
    login = tls_private_key(STACK_LOGIN_KEY_NAME)

    new_key = run.named(f"{name}-new-host-key")
    assert new_key.type == f"{DYNAMIC_PREFIX}/dockyard:NewHostKey"
    assert new_key.parent == run.urn(name)
    assert run.urn(f"{name}-cloud-init") in new_key.dependencies
    assert is_secret(new_key.inputs["connection"])
    assert "connection" in new_key.additional_secret_outputs
    assert new_key.plain("connection") == {
        "host": address, "port": 22, "user": CLOUD_USER, "privateKey": login,
        "hostKey": user_data_key,
    }  # fmt: skip
    # A replaced server gets a new key of its own.
    assert new_key.plain("serverId") == server_id

    rotation = run.named(f"{name}-host-key-rotation")
    assert rotation.type == f"{DYNAMIC_PREFIX}/dockyard:HostKeyRotation"
    assert new_key.urn in rotation.dependencies
    assert rotation.plain("connection")["hostKey"] == user_data_key
    # Only the key the host reported over the connection pinned to the user-data key.
    rotated = next_host_key(f"{name}-new-host-key")
    assert rotation.plain("newHostKey") == rotated
    assert is_secret(rotation.inputs["connection"])

    block = run.named(f"{name}-metadata-block")
    assert block.type == f"{DYNAMIC_PREFIX}/dockyard:MetadataBlock"
    assert rotation.urn in block.dependencies
    assert block.plain("connection")["hostKey"] == rotated
    assert block.plain("throwaway") is True
    assert is_secret(block.inputs["connection"])

    sysbox = run.named(f"{name}-sysbox")
    assert block.urn in sysbox.dependencies
    assert sysbox.plain("connection")["hostKey"] == rotated
    for registration in run.registrations:
        if registration.name in (f"{name}-cloud-init", f"{name}-new-host-key", rotation.name):
            continue
        connection = registration.plain("connection")
        if isinstance(connection, dict):
            assert connection.get("hostKey") != user_data_key, registration.name
