"""Host key pinning, trust on first use, fingerprints."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from dockyard_resources.transport import (
    HostKeyMismatch,
    SshSession,
    TransportError,
    fingerprint_of,
    session,
)
from tests.fixtures.sshd import SshdServer, keygen


def _ssh_keygen_fingerprint(pub: Path) -> str:
    out = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(pub)], capture_output=True, text=True, check=True
    )
    return out.stdout.split()[1]


def test_fingerprint_matches_ssh_keygen(sshd: SshdServer) -> None:
    for key_type in ("ed25519", "rsa"):
        pub = sshd.directory / f"ssh_host_{key_type}_key.pub"
        assert fingerprint_of(pub.read_text()) == _ssh_keygen_fingerprint(pub)


@pytest.mark.parametrize("key_type", ["ed25519", "rsa"])
def test_pinned_key_is_accepted(sshd: SshdServer, key_type: str) -> None:
    pinned = sshd.host_key_line(key_type)
    ssh = session(sshd.target(host_key=pinned + " comment@host"))
    assert ssh.run("echo pinned", step="pin").stdout == "pinned\n"
    assert ssh.host_key == pinned
    assert ssh.fingerprint == fingerprint_of(pinned)


@pytest.mark.timeout(60)  # a retried mismatch would run into the 300 s deadline
def test_pinned_mismatch_is_a_hard_error_naming_both_fingerprints(
    sshd: SshdServer, tmp_path: Path
) -> None:
    other = keygen(tmp_path / "other_host_key", "ed25519").public_line
    with pytest.raises(HostKeyMismatch) as caught:
        session(sshd.target(host_key=other, connect_deadline=300))
    message = str(caught.value)
    assert fingerprint_of(other) in message
    assert fingerprint_of(sshd.host_key_line("ed25519")) in message


def test_first_use_records_the_key_and_later_mismatch_is_detected(sshd: SshdServer) -> None:
    ssh = session(sshd.target())
    first = ssh.host_key
    assert first == sshd.host_key_line("ed25519")
    # The host is "rebuilt": new host keys, same address; the pooled session's
    # connection dies and its reconnect must refuse the new key.
    sshd.generate_host_keys()
    sshd.restart()
    with pytest.raises(HostKeyMismatch) as caught:
        ssh.run("true", step="after rebuild")
    assert fingerprint_of(first) in str(caught.value)
    # A caller that kept the key from the first use gets the same protection.
    with pytest.raises(HostKeyMismatch):
        session(sshd.target(host_key=first))


def test_first_use_never_writes_known_hosts(
    sshd: SshdServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    ssh = SshSession(sshd.target())
    ssh.run("true", step="tofu")
    ssh.close()
    assert not (tmp_path / ".ssh").exists()


def test_malformed_pin_is_rejected_before_connecting(sshd: SshdServer) -> None:
    with pytest.raises(TransportError, match="not an OpenSSH public key line"):
        sshd.target(host_key="AAAAC3NzaC1lZDI1NTE5AAAAI")
    with pytest.raises(TransportError, match="does not hold a ssh-rsa key"):
        sshd.target(host_key="ssh-rsa " + sshd.host_key_line("ed25519").split()[1])
