"""SSH connection options from the stack file to the `connection` input, its check at preview,
the day-2 target read back from the state, and the `ssh -L` hint: no SSH here (the
connections themselves are tested in tests/transport)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest

from dockyard_resources.config import ConfigError, ExistingProvision, validate_hosts
from dockyard_resources.config.models import AwsProvision, HcloudProvision
from dockyard_resources.config.stackfile import validate_stack_config
from dockyard_resources.operate.deployed import target_of
from dockyard_resources.providers.inputs import connection_problems
from dockyard_resources.render import instance as render
from dockyard_resources.transport import SshTarget, TransportError
from dockyard_resources.transport.target import JUMP_HOST
from tests.unit.config_builders import ed25519_key_line, host

JUMP_KEY = ed25519_key_line("jump")
HOST_KEY = ed25519_key_line("host")
JUMP = {"address": "bastion.example.com", "user": "ops", "hostKey": JUMP_KEY}


def provision_of(**provision: Any) -> Any:
    [spec] = validate_hosts([host(provision=provision)])
    return spec.provision


def errors_of(**provision: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        validate_hosts([host(provision=provision)])
    return caught.value.errors


def existing(**extra: Any) -> ExistingProvision:
    found = provision_of(kind="existing", address="10.0.0.5", **extra)
    assert isinstance(found, ExistingProvision)
    return found


def test_with_ssh_config_an_unwritten_user_and_port_come_from_the_config() -> None:
    props = existing(sshConfig=True).connection_props()
    assert "user" not in props and "port" not in props
    assert existing(sshConfig=True, user="root").connection_props()["user"] == "root"
    # Without sshConfig the documented defaults stand.
    plain = existing().connection_props()
    assert (plain["user"], plain["port"]) == ("root", 22)


def test_private_key_file_is_a_path_kept_as_written() -> None:
    props = existing(privateKeyFile="~/.ssh/id_ed25519").connection_props()
    assert props["privateKeyFile"] == "~/.ssh/id_ed25519"
    assert "privateKey" not in props


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("id_ed25519", "is not an absolute or ~/ path"),
        ("~/.ssh/id_ed25519.pub", "is a public key; give the private half ('~/.ssh/id_ed25519')"),
        ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n", "holds a key's text, not a file path"),
        (7, "must be a string"),
    ],
)
def test_private_key_file_rule(value: Any, fragment: str) -> None:
    [error] = errors_of(kind="existing", address="10.0.0.5", privateKeyFile=value)
    assert error.startswith("hosts[0].provision.privateKeyFile: ")
    assert fragment in error
    assert "b3Blbn" not in error


def test_jump_host_props_and_both_keys_pinned() -> None:
    props = existing(hostKey=HOST_KEY, jumpHost=JUMP).connection_props()
    assert props["jumpHost"] == {
        "host": "bastion.example.com",
        "port": 22,
        "user": "ops",
        "hostKey": JUMP_KEY,
    }
    assert props["hostKey"] == HOST_KEY
    # With sshConfig the jump host's port and user may come from ~/.ssh/config, and the
    # host's key from known_hosts.
    jump = {"address": "bastion", "hostKey": JUMP_KEY}
    assert existing(sshConfig=True, jumpHost=jump).connection_props()["jumpHost"] == {
        "host": "bastion",
        "hostKey": JUMP_KEY,
    }


def test_a_jump_host_without_pins_is_refused_naming_the_keys() -> None:
    [missing_jump_key] = errors_of(
        kind="existing",
        address="10.0.0.5",
        hostKey=HOST_KEY,
        jumpHost={"address": "bastion.example.com"},
    )
    assert missing_jump_key == (
        "hosts[0].provision.jumpHost.hostKey: missing; a jump host is never trusted on first"
        " use; give its public key line, e.g. from `ssh-keyscan -t ed25519 JUMPHOST` (without"
        " the host name)"
    )
    [missing_host_key] = errors_of(kind="existing", address="10.0.0.5", jumpHost=JUMP)
    assert missing_host_key.startswith("hosts[0].provision.jumpHost: needs the host's hostKey")
    assert "ssh-keyscan" in missing_host_key
    [typo] = errors_of(
        kind="existing", address="10.0.0.5", hostKey=HOST_KEY, jumpHost={**JUMP, "hostkey": "x"}
    )
    assert typo.startswith("hosts[0].provision.jumpHost.hostkey: unknown key; did you mean")


def test_cloud_kinds_take_a_jump_host() -> None:
    hcloud = provision_of(kind="hcloud", jumpHost=JUMP)
    assert isinstance(hcloud, HcloudProvision) and hcloud.jump_host is not None
    aws = provision_of(kind="aws", region="eu-central-1", jumpHost=JUMP)
    assert isinstance(aws, AwsProvision) and aws.jump_host is not None
    assert aws.jump_host.connection_props()["hostKey"] == JUMP_KEY


def test_connection_check_at_preview_names_the_key_and_the_fix(tmp_path: Path) -> None:
    base = {"host": "10.0.0.5", "port": 22.0, "user": "root"}
    jump = {"host": "bastion.example.com", "port": 22.0, "user": "ops", "hostKey": JUMP_KEY}
    assert connection_problems({**base, "hostKey": HOST_KEY, "jumpHost": jump}) == []
    problems = dict(connection_problems({**base, "jumpHost": {"host": "b", "port": 0}}))
    assert problems["connection.jumpHost.port"].startswith("must be an integer 1-65535")
    assert problems["connection.jumpHost.hostKey"].startswith("is required: a jump host is never")
    assert problems["connection.hostKey"].startswith("is required with jumpHost")
    assert dict(connection_problems({**base, "jumpHost": "bastion"})) == {
        "connection.jumpHost": "must be a mapping {host, port, user, hostKey}"
    }
    not_a_key = tmp_path / "not-a-key"
    not_a_key.write_text("hello\n")
    problems = dict(connection_problems({**base, "privateKeyFile": str(not_a_key)}))
    assert "is not a readable ed25519, ecdsa or rsa key" in problems["connection.privateKeyFile"]


def test_day_2_target_carries_every_option_of_the_state() -> None:
    state = {
        "host": "build-box",
        "sshConfig": True,
        "privateKeyFile": "~/.ssh/ops",
        "privateKeyPassphrase": "pass-phrase",
        "connectDeadline": 30.0,
        "hostKey": HOST_KEY,
        "jumpHost": {"host": "bastion", "port": 2222.0, "user": "ops", "hostKey": JUMP_KEY},
    }
    target = target_of(state)
    # Port and user stay open: ~/.ssh/config gives them, as during `pulumi up`.
    assert (target.host, target.port, target.user, target.ssh_config) == (
        "build-box",
        None,
        None,
        True,
    )
    assert (target.key_file, target.passphrase, target.host_key) == (
        "~/.ssh/ops",
        "pass-phrase",
        HOST_KEY,
    )
    assert target.connect_deadline == 30.0
    jump = target.jump
    assert jump is not None
    assert (jump.host, jump.port, jump.user, jump.host_key, jump.role) == (
        "bastion",
        2222,
        "ops",
        JUMP_KEY,
        JUMP_HOST,
    )
    # The jump host is offered the host's key file and passphrase, never shown.
    assert (jump.key_file, jump.passphrase, jump.ssh_config) == ("~/.ssh/ops", "pass-phrase", True)
    assert "pass-phrase" not in repr(target)
    assert target.label == "build-box via bastion:2222"


def test_day_2_target_of_a_stack_key_offers_no_agent_to_the_host_but_to_the_jump_host() -> None:
    target = target_of(
        {
            "host": "10.0.0.5",
            "port": 22.0,
            "user": "ubuntu",
            "privateKey": "KEY",
            "hostKey": HOST_KEY,
        }
        | {"jumpHost": {"host": "bastion", "port": 22.0, "user": "ops", "hostKey": JUMP_KEY}}
    )
    assert (target.use_agent, target.look_for_keys, target.connect_deadline) == (False, False, 60)
    assert target.jump is not None and target.jump.use_agent and target.jump.private_key == "KEY"


@pytest.fixture
def spec() -> render.InstanceSpec:
    return render.InstanceSpec.from_props(
        {
            "prefix": "dy1_",
            "root": "/dy1",
            "dockerDir": "/usr/local/lib/dockyard/docker-29.2.1",
            "sysboxDir": "/usr/local/lib/dockyard/sysbox-0.6.7",
            "bridgeCidr": "172.22.147.1/24",
            "fixedCidr": "172.22.147.0/24",
            "poolBase": "172.28.0.0/16",
            "poolSize": 24,
            "members": [],
        }
    )


def test_ssh_forward_uses_the_same_connection(spec: render.InstanceSpec) -> None:
    text = render.ssh_forward(
        spec,
        {
            "host": "10.0.0.5",
            "port": 22.0,
            "user": "root",
            "privateKeyFile": "~/.ssh/ops key",
            "jumpHost": {"host": "2001:db8::1", "port": 2222.0, "user": "ops"},
        },
    )
    argv = shlex.split(text.rpartition(" && ")[2])
    forward = f"$d/dy1_docker.sock:{spec.socket_path}"
    assert argv[3:] == [
        "ExitOnForwardFailure=yes",
        "-i",
        "~/.ssh/ops key",
        "-J",
        "ops@[2001:db8::1]:2222",
        "-L",
        forward,
        "-p",
        "22",
        "root@10.0.0.5",
    ]
    # With sshConfig, what the stack leaves out is left to ~/.ssh/config, as for Dockyard.
    alias = render.ssh_forward(spec, {"host": "build-box", "sshConfig": True})
    assert shlex.split(alias.rpartition(" && ")[2])[-3:] == ["-L", forward, "build-box"]


def test_from_props_rejects_a_malformed_jump_host() -> None:
    with pytest.raises(TransportError, match=r"connection\.jumpHost must be a mapping"):
        SshTarget.from_props({"host": "h", "jumpHost": "bastion"})
    with pytest.raises(TransportError, match=r"connection\.jumpHost\.host is required"):
        SshTarget.from_props({"host": "h", "jumpHost": {"user": "ops"}})


def test_the_passphrase_is_a_known_stack_key_and_must_be_stored_encrypted() -> None:
    encrypted = {"dockyard:hosts": [], "dockyard:sshPrivateKeyPassphrase": {"secure": "v1:x"}}
    assert validate_stack_config(encrypted) == []
    with pytest.raises(ConfigError) as caught:
        validate_stack_config({"dockyard:hosts": [], "dockyard:sshPrivateKeyPassphrase": "pw"})
    assert caught.value.errors == [
        "dockyard:sshPrivateKeyPassphrase: stored in clear text; remove it and store it"
        " encrypted with `pulumi config set --secret dockyard:sshPrivateKeyPassphrase"
        " --stack <stack>`"
    ]
