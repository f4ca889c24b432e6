"""SshSession.upload: content, mode, owner, atomic replacement, parent creation.

The sshd runs on this machine, so the result is checked on the local filesystem.
"""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import stat
from pathlib import Path

import pytest

from dockyard_resources.transport import CommandFailed, TransportError, session
from tests.fixtures.sshd import SshdServer, SudoUser


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_upload_bytes_with_mode_owner_and_new_parents(sshd: SshdServer, tmp_path: Path) -> None:
    target = tmp_path / "remote" / "etc" / "dockyard" / "daemon.json"
    session(sshd.target()).upload(b'{"bip": "172.22.0.1/24"}\n', str(target), 0o640, "nobody")
    assert target.read_bytes() == b'{"bip": "172.22.0.1/24"}\n'
    info = target.stat()
    assert stat.S_IMODE(info.st_mode) == 0o640
    assert pwd.getpwuid(info.st_uid).pw_name == "nobody"
    assert _leftovers(target.parent) == []


def test_upload_local_file_and_owner_group(sshd: SshdServer, tmp_path: Path) -> None:
    source = tmp_path / "artifact.tgz"
    source.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    target = tmp_path / "remote" / "artifact.tgz"
    group = grp.getgrgid(0).gr_name
    session(sshd.target()).upload(source, str(target), mode=0o755, owner=f"nobody:{group}")
    digest = hashlib.sha256
    assert digest(target.read_bytes()).digest() == digest(source.read_bytes()).digest()
    info = target.stat()
    assert stat.S_IMODE(info.st_mode) == 0o755
    assert (pwd.getpwuid(info.st_uid).pw_name, info.st_gid) == ("nobody", 0)


def test_upload_replaces_by_rename_not_in_place(sshd: SshdServer, tmp_path: Path) -> None:
    target = tmp_path / "unit.service"
    target.write_text("old\n")
    old_inode = target.stat().st_ino
    reader = target.open()  # a reader of the old file keeps seeing the old file
    session(sshd.target()).upload(b"new\n", str(target))
    assert target.read_text() == "new\n"
    assert target.stat().st_ino != old_inode
    assert reader.read() == "old\n"
    reader.close()
    assert _leftovers(tmp_path) == []


def test_failed_upload_leaves_no_temp_file(sshd: SshdServer, tmp_path: Path) -> None:
    target = tmp_path / "file"
    with pytest.raises(CommandFailed) as caught:
        session(sshd.target()).upload(b"x", str(target), owner="no-such-user-dy")
    assert caught.value.step == f"upload {target}"
    assert "no-such-user-dy" in caught.value.stderr_tail
    assert not target.exists()
    assert _leftovers(tmp_path) == []


def test_upload_rejects_relative_path_and_odd_owner(sshd: SshdServer) -> None:
    ssh = session(sshd.target())
    with pytest.raises(TransportError):
        ssh.upload(b"x", "relative/path")
    with pytest.raises(TransportError):
        ssh.upload(b"x", "/tmp/x", owner="root; rm -rf /")


def test_upload_as_sudo_user(sshd: SshdServer, sudo_user: SudoUser, tmp_path: Path) -> None:
    target = tmp_path / "root-owned" / "secret.env"
    ssh = session(sshd.target(user=sudo_user.name))
    ssh.upload(b"TOKEN=1\n", str(target), mode=0o600)
    assert target.read_bytes() == b"TOKEN=1\n"
    info = target.stat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (0, 0o600)


def test_a_directory_planted_at_the_destination_is_refused(
    sshd: SshdServer, tmp_path: Path
) -> None:
    """A local user's directory where the file should go: the upload must fail, not land
    inside it (a plain `mv` would move the file into the directory and report success)."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    planted = shared / "artifact"
    planted.mkdir()
    os.chown(planted, 65534, 65534)
    with pytest.raises(CommandFailed) as caught:
        session(sshd.target()).upload(b"payload", str(planted), 0o600)
    assert "is a directory" in caught.value.stderr_tail
    assert list(planted.iterdir()) == []
    assert _leftovers(shared) == []
