"""Authentication methods, retry while the host boots, giving up at the deadline."""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from dockyard_resources.transport import (
    AuthenticationFailed,
    ConnectTimeout,
    HostKeyMismatch,
    PrivateKeyError,
    SshTarget,
    session,
)
from tests.fixtures.sshd import PASSPHRASE, SshdServer, SshKeys, free_port, public_dir


@pytest.mark.parametrize("key_type", ["ed25519", "ecdsa", "rsa"])
def test_private_key_from_string(sshd: SshdServer, ssh_keys: SshKeys, key_type: str) -> None:
    target = sshd.target(private_key=ssh_keys.clients[key_type].text)
    assert session(target).run("echo ok", step=key_type).stdout == "ok\n"


@pytest.mark.parametrize("key_type", ["ed25519", "rsa"])
def test_private_key_from_file(sshd: SshdServer, ssh_keys: SshKeys, key_type: str) -> None:
    target = sshd.target(private_key=None, key_file=str(ssh_keys.clients[key_type].path))
    assert session(target).run("echo ok", step=key_type).stdout == "ok\n"


def test_encrypted_private_key_with_passphrase(sshd: SshdServer, ssh_keys: SshKeys) -> None:
    assert ssh_keys.encrypted is not None
    target = sshd.target(private_key=ssh_keys.encrypted.text, passphrase=PASSPHRASE)
    assert session(target).run("echo ok", step="encrypted").stdout == "ok\n"


@pytest.mark.timeout(60)  # retried key errors would run into the 300 s deadline
def test_bad_private_keys_fail_at_once_without_leaking(sshd: SshdServer, ssh_keys: SshKeys) -> None:
    assert ssh_keys.encrypted is not None
    encrypted = ssh_keys.encrypted.text
    with pytest.raises(PrivateKeyError, match="no passphrase"):
        session(sshd.target(private_key=encrypted, connect_deadline=300))
    with pytest.raises(PrivateKeyError) as caught:
        session(sshd.target(private_key=encrypted, passphrase="wrong", connect_deadline=300))
    assert "wrong" not in str(caught.value)
    garbage = (
        "-----BEGIN OPENSSH PRIVATE KEY-----\nbm90IGEga2V5\n-----END OPENSSH PRIVATE KEY-----\n"
    )
    with pytest.raises(PrivateKeyError) as caught:
        session(sshd.target(private_key=garbage, connect_deadline=300))
    assert "bm90IGEga2V5" not in str(caught.value)


def test_ssh_agent(sshd: SshdServer, agent: str) -> None:
    target = sshd.target(private_key=None, use_agent=True)
    assert session(target).run("echo agent", step="agent").stdout == "agent\n"


def test_ssh_config_is_honoured(
    sshd: SshdServer, ssh_keys: SshKeys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "config").write_text(
        "Host build-box\n"
        f"  HostName {sshd.host}\n"
        f"  Port {sshd.port}\n"
        "  User root\n"
        f"  IdentityFile {ssh_keys.clients['ecdsa'].path}\n"
    )
    target = SshTarget(host="build-box", ssh_config=True, use_agent=False, look_for_keys=False)
    ssh = session(target)
    assert ssh.address == f"{sshd.host}:{sshd.port}"
    assert ssh.run("id -un", step="config").stdout == "root\n"


def test_ssh_config_mode_enforces_known_hosts(
    sshd: SshdServer, ssh_keys: SshKeys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".ssh").mkdir()
    other = subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True
    )
    assert other.returncode == 0
    wrong = (tmp_path / "k.pub").read_text().split()[:2]
    (tmp_path / ".ssh" / "known_hosts").write_text(
        f"[{sshd.host}]:{sshd.port} {wrong[0]} {wrong[1]}\n"
    )
    target = sshd.target(ssh_config=True, connect_deadline=300)
    with pytest.raises(HostKeyMismatch):
        session(target)


def test_retries_until_a_late_sshd_answers(ssh_keys: SshKeys) -> None:
    directory = public_dir("dockyard-sshd-late-")
    server = SshdServer(directory, ssh_keys)
    timer = threading.Timer(4.0, server.start, kwargs={"wait": False})
    try:
        timer.start()  # nothing listens on the port until then: connection refused
        ssh = session(server.target(connect_deadline=60))
        assert ssh.run("echo up", step="late").stdout == "up\n"
        assert ssh.connect_attempts > 1
    finally:
        timer.cancel()
        timer.join()
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


def test_auth_failure_gives_up_at_the_deadline(sshd: SshdServer, ssh_keys: SshKeys) -> None:
    assert ssh_keys.stranger is not None
    key = ssh_keys.stranger.text
    with pytest.raises(AuthenticationFailed) as caught:
        session(sshd.target(private_key=key, connect_deadline=4))
    error = caught.value
    assert error.attempts > 1  # retried: cloud-init may not have written the key yet
    assert error.address == f"{sshd.host}:{sshd.port}"
    assert key not in str(error)


def test_wrong_password_is_never_shown(sshd: SshdServer) -> None:
    target = sshd.target(private_key=None, password="not-the-password-77", connect_deadline=3)
    with pytest.raises(AuthenticationFailed) as caught:
        session(target)
    assert "not-the-password-77" not in str(caught.value)
    assert "not-the-password-77" not in repr(target)


def test_no_credential_fails_at_once(sshd: SshdServer) -> None:
    with pytest.raises(AuthenticationFailed, match="no credential") as caught:
        session(sshd.target(private_key=None, connect_deadline=300))
    assert caught.value.attempts == 1


def test_nothing_listening_gives_connect_timeout() -> None:
    port = free_port()
    target = SshTarget(host="127.0.0.1", port=port, connect_deadline=3, use_agent=False)
    with pytest.raises(ConnectTimeout) as caught:
        session(target)
    assert caught.value.address == f"127.0.0.1:{port}"
    assert caught.value.attempts > 1
    assert f"127.0.0.1:{port}" in str(caught.value)


def test_from_props_coerces_pulumi_numbers() -> None:
    target = SshTarget.from_props(
        {
            "host": "203.0.113.10",
            "port": 2222.0,
            "user": "admin",
            "privateKey": "KEY",
            "privateKeyPassphrase": "PP",
            "password": "",
            "hostKey": None,
        }
    )
    assert (target.host, target.port, target.user) == ("203.0.113.10", 2222, "admin")
    assert isinstance(target.port, int)
    assert (target.private_key, target.passphrase, target.password) == ("KEY", "PP", None)
    assert "KEY" not in repr(target) and "PP" not in repr(target)
