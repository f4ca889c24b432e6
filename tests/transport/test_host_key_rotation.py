"""NewHostKey and HostKeyRotation against a real OpenSSH sshd (tests/fixtures/sshd.py).

The sshd of each test stands for a cloud host whose ed25519 host key came in its user data
(the fixture's key, "old"). The providers run as the engine would run them; a run cut short
is the same provider method called again after part of the work was done on the host, with
the connection pool emptied as a new process would find it. sshd is reloaded by SIGHUP, so
its pid stays: the tests use that to see that it was reloaded, not restarted.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from dockyard_resources.hostops import host_key as ops
from dockyard_resources.providers.host_key import HostKeyRotationProvider, NewHostKeyProvider
from dockyard_resources.render import host_key as render
from dockyard_resources.transport import (
    CommandFailed,
    HostKeyMismatch,
    SshTarget,
    close_all,
    fingerprint_of,
    session,
)
from tests.fixtures.sshd import SshdServer, keygen

HOST = "cloud-1"


def connection(server: SshdServer, host_key: str) -> dict[str, Any]:
    return {
        "host": server.host,
        "port": server.port,
        "user": "root",
        "privateKey": server.keys.clients["ed25519"].text,
        "hostKey": host_key,
        "connectDeadline": 30,
    }


def new_key_props(server: SshdServer, old: str) -> dict[str, Any]:
    return {
        "connection": connection(server, old),
        "hostName": HOST,
        "serverId": "815",
        "sshdConfig": str(server.config_path),
    }


def rotation_props(server: SshdServer, old: str, new: str) -> dict[str, Any]:
    return {
        "connection": connection(server, old),
        "hostName": HOST,
        "newHostKey": new,
        "sshdConfig": str(server.config_path),
    }


def key_in(path: Path) -> str:
    """ "type base64" of the private key file `path` (as sshd would load it)."""
    out = subprocess.run(
        ["ssh-keygen", "-y", "-f", str(path)], capture_output=True, text=True, check=True
    )
    return " ".join(out.stdout.split()[:2])


def leaks_private_key(path: Path, outputs: dict[str, Any]) -> bool:
    """Whether a line of the private key in `path` appears in `outputs` (the first line of
    the base64 is the same in every OpenSSH ed25519 key, the login key's too)."""
    text = repr(outputs)
    lines = [line for line in path.read_text().splitlines() if line and "-----" not in line]
    return any(line in text for line in lines[1:])


def key_file(server: SshdServer) -> Path:
    return server.directory / "ssh_host_ed25519_key"


def pending_file(server: SshdServer) -> Path:
    return Path(f"{key_file(server)}{render.PENDING_SUFFIX}")


def pinned(server: SshdServer, key: str) -> SshTarget:
    return server.target(host_key=key, connect_deadline=30)


def assert_refused(server: SshdServer, key: str) -> None:
    close_all()
    with pytest.raises(HostKeyMismatch):
        session(pinned(server, key))


def assert_serves(server: SshdServer, key: str) -> None:
    close_all()
    ssh = session(pinned(server, key))
    assert ssh.run("echo ok", step="probe").stdout == "ok\n"
    assert ssh.host_key == key


def generate(server: SshdServer) -> dict[str, Any]:
    """NewHostKey.create as the engine runs it: its outputs, as saved in the state."""
    outs: dict[str, Any] = NewHostKeyProvider().create(new_key_props(server, old_key(server))).outs
    close_all()
    return outs


def old_key(server: SshdServer) -> str:
    return server.host_key_line("ed25519")


@pytest.fixture
def old(sshd: SshdServer) -> str:
    """The key the host was given in its user data (read before anything rotates it)."""
    return old_key(sshd)


def test_rotation_installs_a_key_generated_on_the_host_and_refuses_the_old_one(
    sshd: SshdServer, old: str
) -> None:
    listener = sshd.process.pid if sshd.process else None
    generated = generate(sshd)
    new = generated["publicKey"]
    assert new.startswith("ssh-ed25519 ") and new != old
    assert generated["fingerprint"] == fingerprint_of(new)
    assert generated["keyFile"] == str(key_file(sshd))
    # Generated on the host, waiting root-only beside the key it replaces; the state holds
    # the public half only.
    assert key_in(pending_file(sshd)) == new
    assert pending_file(sshd).stat().st_mode & 0o077 == 0
    assert not leaks_private_key(pending_file(sshd), generated)
    assert_serves(sshd, old)  # nothing switched yet

    rotated = HostKeyRotationProvider().create(rotation_props(sshd, old, new)).outs
    assert rotated["hostKey"] == new
    assert rotated["hostKeyFingerprint"] == fingerprint_of(new)
    assert rotated["drift"] == []
    assert not leaks_private_key(key_file(sshd), rotated)
    assert key_in(key_file(sshd)) == new
    assert (key_file(sshd).parent / "ssh_host_ed25519_key.pub").read_text().split()[:2] == (
        new.split()
    )
    assert not pending_file(sshd).exists()
    assert_serves(sshd, new)
    assert_refused(sshd, old)
    # Reloaded (SIGHUP: the listener re-executed itself), not restarted.
    assert sshd.process is not None and sshd.process.poll() is None
    assert sshd.process.pid == listener
    assert "Received SIGHUP" in sshd.log()

    read = HostKeyRotationProvider().read("id", rotated)
    assert read.outs["drift"] == []


def test_new_host_key_cut_before_its_state_was_saved_keeps_the_key_it_generated(
    sshd: SshdServer, old: str
) -> None:
    first = generate(sshd)
    # The engine lost the first create's outputs: it runs create again.
    second = generate(sshd)
    assert second["publicKey"] == first["publicKey"]
    assert key_in(pending_file(sshd)) == first["publicKey"]
    assert_serves(sshd, old)


def test_rotation_cut_between_install_and_reload_converges(sshd: SshdServer, old: str) -> None:
    new = generate(sshd)["publicKey"]
    script = render.switch_script(old, new, str(sshd.config_path))
    cut = script[: script.index(render.INSTALLED_MARKER)]
    session(pinned(sshd, old)).run(cut, step="switch, cut before the reload")
    assert key_in(key_file(sshd)) == new
    assert "Received SIGHUP" not in sshd.log()
    close_all()

    rotated = HostKeyRotationProvider().create(rotation_props(sshd, old, new)).outs
    assert rotated["hostKey"] == new
    assert "Received SIGHUP" in sshd.log()
    assert_serves(sshd, new)
    assert_refused(sshd, old)


def test_rotation_whose_outputs_were_never_saved_converges_on_the_recorded_key(
    sshd: SshdServer, old: str
) -> None:
    new = generate(sshd)["publicKey"]
    # The whole rotation ran (sshd reloaded) but the engine never saved its outputs.
    ops.rotate(pinned(sshd, old), new, str(sshd.config_path))
    assert_refused(sshd, old)
    close_all()

    rotated = HostKeyRotationProvider().create(rotation_props(sshd, old, new)).outs
    assert rotated["hostKey"] == new
    assert_serves(sshd, new)


def test_a_key_the_host_did_not_report_over_the_pinned_connection_is_refused(
    sshd: SshdServer, old: str, tmp_path: Path
) -> None:
    new = generate(sshd)["publicKey"]
    # Someone else's key, never reported over a connection pinned to the old one.
    foreign = keygen(tmp_path / "foreign_key", "ed25519").public_line
    foreign = " ".join(foreign.split()[:2])

    with pytest.raises(CommandFailed, match="not waiting in"):
        HostKeyRotationProvider().create(rotation_props(sshd, old, foreign))
    assert key_in(key_file(sshd)) == old
    assert key_in(pending_file(sshd)) == new

    # The host now presents a key that is neither the old one nor the recorded new one
    # (what a machine in the middle would do): refused before anything runs on it.
    close_all()
    sshd.generate_host_keys()
    sshd.restart()
    with pytest.raises(HostKeyMismatch) as caught:
        HostKeyRotationProvider().create(rotation_props(sshd, old, new))
    message = str(caught.value)
    assert fingerprint_of(old) in message and fingerprint_of(new) in message
    assert fingerprint_of(old_key(sshd)) in message
    assert key_in(pending_file(sshd)) == new, "nothing ran on the host"


def test_read_reports_drift_when_the_host_key_changes(sshd: SshdServer, old: str) -> None:
    new = generate(sshd)["publicKey"]
    rotated = HostKeyRotationProvider().create(rotation_props(sshd, old, new)).outs
    close_all()
    sshd.generate_host_keys()
    sshd.restart()

    drift = HostKeyRotationProvider().read("id", rotated).outs["drift"]
    assert drift == [
        f"the host presents the host key {fingerprint_of(old_key(sshd))}, not the rotated"
        f" key {fingerprint_of(new)}"
    ]
