"""SSH connection options in the program: a key file travels as its path only, the
passphrase as a secret, a jump host reaches every connection (and the cloud-init wait)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.program.harness import AWS_PRIVATE_IP, is_secret, run_program, unwrap
from tests.program.test_cloud import aws_host, hcloud_host
from tests.program.test_graph import existing_host
from tests.unit.config_builders import ed25519_key_line

PASSPHRASE = "pp-secret-8472"
HOST_KEY = ed25519_key_line("host")
JUMP_KEY = ed25519_key_line("jump")
JUMP = {"address": "bastion.example.com", "port": 2222, "user": "ops", "hostKey": JUMP_KEY}
JUMP_PROPS = {"host": "bastion.example.com", "port": 2222, "user": "ops", "hostKey": JUMP_KEY}


def encrypted_key() -> tuple[str, str]:
    """(OpenSSH private key encrypted with PASSPHRASE, its public key line)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.BestAvailableEncryption(PASSPHRASE.encode()),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return private, public.decode()


def key_lines(private: str) -> list[str]:
    return [line for line in private.splitlines() if "PRIVATE KEY-----" not in line]


def everything_registered(run: Any) -> str:
    return json.dumps([unwrap(r.inputs) for r in run.registrations]) + json.dumps(run.outputs)


def test_a_key_file_travels_as_its_path_and_the_passphrase_as_a_secret(tmp_path: Path) -> None:
    private, _ = encrypted_key()
    key_file = tmp_path / "id_ops"
    key_file.write_text(private)
    run = run_program(
        [existing_host("build-1", "192.0.2.10", privateKeyFile=str(key_file))],
        ssh_private_key_passphrase=PASSPHRASE,
    )
    for name in ("build-1-sysbox", "build-1-dy1_", "build-1-dy2_"):
        resource = run.named(name)
        assert is_secret(resource.inputs["connection"]), name
        connection = resource.plain("connection")
        assert connection["privateKeyFile"] == str(key_file), name
        assert connection["privateKeyPassphrase"] == PASSPHRASE, name
        assert "privateKey" not in connection, name
        assert "connection" in resource.additional_secret_outputs, name
    text = everything_registered(run)
    for line in key_lines(private):
        assert line not in text  # the key file's content is never read by the program
    assert PASSPHRASE not in json.dumps(run.outputs)
    assert not run.outputs_secret


def test_an_existing_host_behind_a_jump_host() -> None:
    run = run_program([existing_host("build-1", "10.0.0.5", hostKey=HOST_KEY, jumpHost=JUMP)])
    for name in ("build-1-sysbox", "build-1-dy1_", "build-1-dy2_"):
        connection = run.named(name).plain("connection")
        assert connection["jumpHost"] == JUMP_PROPS, name
        assert connection["hostKey"] == HOST_KEY, name


def test_aws_behind_a_jump_host_is_reached_at_its_private_address() -> None:
    run = run_program([aws_host(jumpHost=JUMP)])
    wait = run.named("ec2-1-cloud-init").plain("connection")
    assert wait["host"] == AWS_PRIVATE_IP
    proxy = wait["proxy"]
    assert {k: proxy[k] for k in ("host", "port", "user", "hostKey")} == JUMP_PROPS
    # A key generated for the stack is on no jump host: pulumi-command uses the agent.
    assert "privateKey" not in proxy
    sysbox = run.named("ec2-1-sysbox").plain("connection")
    assert (sysbox["host"], sysbox["jumpHost"]) == (AWS_PRIVATE_IP, JUMP_PROPS)
    assert run.named("ec2-1-dy1_").plain("connection")["jumpHost"] == JUMP_PROPS


def test_a_configured_encrypted_key_opens_cloud_hosts_and_their_jump_host() -> None:
    private, public = encrypted_key()
    run = run_program(
        [hcloud_host() | {"provision": {"kind": "hcloud", "jumpHost": JUMP}}],
        ssh_private_key=private,
        ssh_private_key_passphrase=PASSPHRASE,
    )
    server = run.named("cloud-1-server")
    authorized = json.dumps(server.plain("userData"))
    assert public.split()[1] in authorized  # the public half of the encrypted key
    wait = run.named("cloud-1-cloud-init")
    assert is_secret(wait.inputs["connection"])
    connection = wait.plain("connection")
    assert (connection["privateKey"], connection["privateKeyPassword"]) == (private, PASSPHRASE)
    proxy = connection["proxy"]
    assert (proxy["privateKey"], proxy["privateKeyPassword"]) == (private, PASSPHRASE)
    sysbox = run.named("cloud-1-sysbox").plain("connection")
    assert sysbox["privateKeyPassphrase"] == PASSPHRASE
    assert sysbox["jumpHost"] == JUMP_PROPS
    assert PASSPHRASE not in json.dumps(run.outputs)
