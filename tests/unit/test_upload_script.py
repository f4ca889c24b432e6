"""The transport's upload script (`transport.upload.upload_script`) run by bash on this
machine, against what a local user can leave in its way: a directory planted at the
destination, a parent directory others can write to. tests/transport/test_upload.py covers
the same script through a real sshd."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from dockyard_resources.transport.upload import upload_script

NOBODY = 65534


def upload(data: bytes, remote_path: Path, mode: int = 0o600) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["bash", "-c", upload_script(str(remote_path), mode)],
        input=data,
        capture_output=True,
        check=False,
    )


@pytest.fixture
def shared_tmp(tmp_path: Path) -> Path:
    """A world-writable sticky directory, like /tmp and /var/tmp."""
    if os.geteuid() != 0:
        pytest.skip("needs root: a second user's directory is planted with chown")
    directory = tmp_path / "shared"
    directory.mkdir()
    directory.chmod(0o1777)
    return directory


def test_a_directory_planted_at_the_destination_is_refused_and_stays_empty(
    shared_tmp: Path,
) -> None:
    planted = shared_tmp / "artifact"
    planted.mkdir()
    os.chown(planted, NOBODY, NOBODY)
    done = upload(b"payload", planted)
    assert done.returncode != 0
    assert f"{planted}" in done.stderr.decode() and "directory" in done.stderr.decode()
    assert list(planted.iterdir()) == []
    assert [p.name for p in shared_tmp.iterdir()] == ["artifact"]  # no temp file left


def test_a_file_planted_in_a_sticky_directory_is_replaced(shared_tmp: Path) -> None:
    planted = shared_tmp / "artifact"
    planted.write_bytes(b"theirs")
    os.chown(planted, NOBODY, NOBODY)
    done = upload(b"ours", planted)
    assert done.returncode == 0, done.stderr
    assert planted.read_bytes() == b"ours"
    info = planted.stat()
    assert (info.st_uid, info.st_mode & 0o777) == (0, 0o600)


@pytest.mark.parametrize("how", ["writable by others", "owned by another user"])
def test_a_parent_another_user_can_change_is_refused(shared_tmp: Path, how: str) -> None:
    """Without the sticky bit, others could rename the uploaded file away and put their own
    in its place (or replace the temp file before chown follows it)."""
    parent = shared_tmp / "open"
    parent.mkdir()
    if how == "writable by others":
        parent.chmod(0o777)
    else:
        os.chown(parent, NOBODY, NOBODY)
    done = upload(b"ours", parent / "sub" / "artifact")
    assert done.returncode != 0
    assert f"{parent}" in done.stderr.decode(), done.stderr
    assert not (parent / "sub" / "artifact").exists()
