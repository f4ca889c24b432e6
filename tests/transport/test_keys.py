"""Keys as operators keep them, from the stack file to a real sshd: a key file, a key with a
passphrase, an ssh-agent; the key text and the passphrase never show in logs or errors."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from dockyard_resources.config import ExistingProvision, validate_hosts
from dockyard_resources.providers.inputs import connection_problems
from dockyard_resources.transport import (
    AuthenticationFailed,
    CommandFailed,
    PrivateKeyError,
    SshTarget,
    close_all,
    session,
)
from dockyard_resources.transport.masking import mask_pieces
from tests.fixtures.sshd import PASSPHRASE, SshdServer, SshKeys, running_agent


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No ~/.ssh keys and no agent but the ones a test gives."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return tmp_path


def connection(sshd: SshdServer, passphrase: str | None = None, **provision: Any) -> dict[str, Any]:
    """The `connection` input the program builds for a stack host (provisioning.py): the
    provision's props, and `dockyard:sshPrivateKeyPassphrase` when the stack sets it."""
    raw = {
        "kind": "existing",
        "address": sshd.host,
        "port": sshd.port,
        "hostKey": sshd.host_key_line(),
        **provision,
    }
    [spec] = validate_hosts([{"name": "build-1", "provision": raw, "instances": []}])
    assert isinstance(spec.provision, ExistingProvision)
    props = spec.provision.connection_props()
    if passphrase is not None:
        props["privateKeyPassphrase"] = passphrase
    return props


def test_private_key_file(sshd: SshdServer, ssh_keys: SshKeys) -> None:
    props = connection(sshd, privateKeyFile=str(ssh_keys.clients["ed25519"].path))
    assert props["privateKeyFile"] == str(ssh_keys.clients["ed25519"].path)
    assert connection_problems(props) == []
    assert session(SshTarget.from_props(props)).run("echo file", step="f").stdout == "file\n"


def test_private_key_file_with_a_tilde_path(
    sshd: SshdServer, ssh_keys: SshKeys, home: Path
) -> None:
    (home / ".keys").mkdir()
    (home / ".keys" / "login").write_text(ssh_keys.clients["ecdsa"].text)
    props = connection(sshd, privateKeyFile="~/.keys/login")
    assert props["privateKeyFile"] == "~/.keys/login"  # expanded where it is read
    assert session(SshTarget.from_props(props)).run("echo ok", step="tilde").stdout == "ok\n"


def test_passphrase_protected_key_file(sshd: SshdServer, ssh_keys: SshKeys) -> None:
    assert ssh_keys.encrypted is not None
    path = str(ssh_keys.encrypted.path)
    props = connection(sshd, passphrase=PASSPHRASE, privateKeyFile=path)
    assert connection_problems(props) == []
    assert session(SshTarget.from_props(props)).run("echo pp", step="pp").stdout == "pp\n"


@pytest.mark.timeout(60)  # a retried key error would run into the deadline
def test_a_key_file_that_cannot_be_used_is_refused_at_preview(
    sshd: SshdServer, ssh_keys: SshKeys, tmp_path: Path
) -> None:
    assert ssh_keys.encrypted is not None
    path = str(ssh_keys.encrypted.path)
    [(key, why)] = connection_problems(connection(sshd, privateKeyFile=path))
    assert key == "connection.privateKeyFile"
    assert "encrypted and no passphrase" in why
    assert "dockyard:sshPrivateKeyPassphrase" in why
    [(_, wrong)] = connection_problems(connection(sshd, "not-it-42", privateKeyFile=path))
    assert "passphrase is wrong" in wrong and "not-it-42" not in wrong
    missing = str(tmp_path / "nope")
    [(_, gone)] = connection_problems(connection(sshd, privateKeyFile=missing))
    assert f"cannot read private key file {missing}" in gone
    # And the transport refuses it the same way, before connecting.
    with pytest.raises(PrivateKeyError, match="no passphrase"):
        session(SshTarget.from_props(connection(sshd, privateKeyFile=path)))


def test_ssh_agent_from_ssh_auth_sock(
    sshd: SshdServer, ssh_keys: SshKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No key in the stack at all: the agent's key (an encrypted one, unlocked by ssh-add)."""
    assert ssh_keys.encrypted is not None
    props = connection(sshd)
    assert "privateKey" not in props and "privateKeyFile" not in props
    with running_agent([ssh_keys.encrypted.path], PASSPHRASE) as sock:
        monkeypatch.setenv("SSH_AUTH_SOCK", sock)
        ssh = session(SshTarget.from_props(props))
        assert ssh.run("echo agent", step="agent").stdout == "agent\n"
    assert f"Accepted publickey for root from {sshd.host}" in sshd.log()


def test_jump_host_gets_the_agent_when_the_host_has_a_key_file(
    sshd: SshdServer, jump_sshd: SshdServer, ssh_keys: SshKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The host takes the key file; the jump host (which does not know that key) the agent's."""
    jump_sshd.stop()
    (jump_sshd.directory / "authorized_keys").write_text(ssh_keys.clients["rsa"].public_line)
    (sshd.directory / "authorized_keys").write_text(ssh_keys.clients["ecdsa"].public_line)
    jump_sshd.start()
    props = connection(
        sshd,
        privateKeyFile=str(ssh_keys.clients["ecdsa"].path),
        jumpHost={
            "address": jump_sshd.host,
            "port": jump_sshd.port,
            "hostKey": jump_sshd.host_key_line(),
        },
    )
    with running_agent([ssh_keys.clients["rsa"].path]) as sock:
        monkeypatch.setenv("SSH_AUTH_SOCK", sock)
        ssh = session(SshTarget.from_props(props))
        assert ssh.run("echo both", step="jump+agent").stdout == "both\n"
    assert jump_sshd.forwarded() == [(sshd.host, sshd.port)]


def test_key_material_never_reaches_logs_or_errors(
    sshd: SshdServer, ssh_keys: SshKeys, caplog: pytest.LogCaptureFixture
) -> None:
    assert ssh_keys.encrypted is not None and ssh_keys.stranger is not None
    caplog.set_level(logging.DEBUG)  # paramiko's and ours, at their most talkative
    encrypted_file = str(ssh_keys.encrypted.path)
    seen: list[str] = []
    # A good key file, with its passphrase; a command failing and echoing things back.
    good = SshTarget.from_props(connection(sshd, PASSPHRASE, privateKeyFile=encrypted_file))
    seen.append(repr(good))
    with pytest.raises(CommandFailed) as failed:
        session(good).run(f"echo '{PASSPHRASE}' >&2; exit 3", step="echo")
    seen.append(str(failed.value))
    # The key as text (dockyard:sshPrivateKey) with a wrong passphrase, and as a file.
    for props in (
        {**connection(sshd, "wrong-pass-17"), "privateKey": ssh_keys.encrypted.text},
        connection(sshd, "wrong-pass-17", privateKeyFile=encrypted_file),
    ):
        close_all()  # the pool keeps one session per host, whatever its credentials
        with pytest.raises(PrivateKeyError) as bad:
            session(SshTarget.from_props(props))
        seen += [str(bad.value), repr(SshTarget.from_props(props))]
        seen += [why for _, why in connection_problems(props)]
    # A key the host does not accept.
    close_all()
    stranger = {
        **connection(sshd, connectTimeout=2),
        "privateKey": ssh_keys.stranger.text,
    }
    with pytest.raises(AuthenticationFailed) as refused:
        session(SshTarget.from_props(stranger))
    seen.append(str(refused.value))
    seen.append(caplog.text)
    text = "\n".join(seen)
    secrets = [ssh_keys.encrypted.text, ssh_keys.stranger.text, PASSPHRASE, "wrong-pass-17"]
    for piece in mask_pieces(secrets):
        if "PRIVATE KEY-----" not in piece:  # the BEGIN/END lines are no secret
            assert piece not in text, f"secret material leaked: {piece[:12]}..."
    assert "***" in str(failed.value)  # the echoed passphrase was masked
