"""Where `tunnel` puts its socket (operate/private_dir.py) and what a client without a
channel reads; the tunnel's channels themselves are tested against a real sshd
(tests/transport/test_tunnel.py) and the real Docker (tests/hosts/test_tunnel.py)."""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from dockyard_resources.operate import commands, private_dir, tunnel
from tests.unit.test_operate import make_host, make_instance


@pytest.fixture
def no_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No XDG_RUNTIME_DIR; the system temp directory is a fresh sticky 1777 one."""
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    shared = tmp_path / "tmp"
    shared.mkdir()
    shared.chmod(0o1777)
    monkeypatch.setattr(tempfile, "tempdir", str(shared))
    return shared


def as_someone_else(monkeypatch: pytest.MonkeyPatch) -> int:
    """From here on this process runs as another uid than the one that made the files."""
    other = os.geteuid() + 4242
    monkeypatch.setattr(private_dir.os, "geteuid", lambda: other)
    return other


def test_without_xdg_runtime_dir_the_socket_goes_to_a_new_private_directory(
    no_xdg: Path,
) -> None:
    old_umask = os.umask(0o077)  # a strict umask must not leave the owner locked out
    try:
        path = tunnel.default_socket("prod", "build-1", "dy1_")
    finally:
        os.umask(old_umask)
    directory = no_xdg / f"dockyard-{os.geteuid()}"
    assert path == directory / "dockyard-prod-build-1-dy1.sock"
    info = directory.lstat()
    assert stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid()
    assert stat.S_IMODE(info.st_mode) == 0o700
    assert tunnel.default_socket("prod", "build-1", "dy2_").parent == directory  # reused


def test_a_directory_another_user_made_first_is_refused(
    no_xdg: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = as_someone_else(monkeypatch)
    planted = no_xdg / f"dockyard-{other}"
    planted.mkdir(mode=0o700)  # made "by someone else": we now run as `other`
    with pytest.raises(private_dir.UnsafeDirectory) as refused:
        tunnel.default_socket("prod", "build-1", "dy1_")
    message = str(refused.value)
    assert str(planted) in message and f"belongs to uid {os.getuid()}" in message
    assert f"not to you (uid {other})" in message and "--socket PATH" in message


@pytest.mark.parametrize("mode", [0o755, 0o770, 0o701, 0o1777], ids=lambda m: f"{m:04o}")
def test_an_own_directory_that_others_can_enter_is_refused(no_xdg: Path, mode: int) -> None:
    planted = no_xdg / f"dockyard-{os.geteuid()}"
    planted.mkdir()
    planted.chmod(mode)
    with pytest.raises(private_dir.UnsafeDirectory, match=f"has mode {mode:04o}, not 0700"):
        tunnel.default_socket("prod", "build-1", "dy1_")
    assert stat.S_IMODE(planted.stat().st_mode) == mode  # refused, not "fixed"


@pytest.mark.parametrize("kind", ["symlink", "file"])
def test_a_symlink_or_file_in_its_place_is_refused(no_xdg: Path, tmp_path: Path, kind: str) -> None:
    planted = no_xdg / f"dockyard-{os.geteuid()}"
    if kind == "symlink":
        mine = tmp_path / "elsewhere"
        mine.mkdir(mode=0o700)
        planted.symlink_to(mine)
    else:
        planted.write_text("")
    with pytest.raises(private_dir.UnsafeDirectory, match="is not a directory"):
        tunnel.default_socket("prod", "build-1", "dy1_")


def test_xdg_runtime_dir_is_used_when_private_and_refused_when_not(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    runtime = tmp_path / "run-user"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    assert tunnel.default_socket("prod", "h", "dy1_") == runtime / "dockyard-prod-h-dy1.sock"
    runtime.chmod(0o755)
    with pytest.raises(private_dir.UnsafeDirectory, match=r"XDG_RUNTIME_DIR .* has mode 0755"):
        tunnel.default_socket("prod", "h", "dy1_")


class _Stack:
    name = "prod"

    def instance(self, address: str) -> Any:
        inst = make_instance()
        return make_host(inst), inst


def test_the_tunnel_command_refuses_a_planted_directory_without_a_traceback(
    no_xdg: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    other = as_someone_else(monkeypatch)
    (no_xdg / f"dockyard-{other}").mkdir(mode=0o700)
    monkeypatch.setattr(commands, "open_stack", lambda *_: _Stack())
    args = argparse.Namespace(
        command="tunnel", stack="prod", project_dir=None, instance="build-1/dy1_", socket=None
    )
    assert commands.run(args, out=sys.stdout, err=sys.stderr) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: stack prod, host build-1") and "belongs to uid" in err
    assert "Traceback" not in err


def test_a_client_without_a_channel_reads_an_error_docker_shows() -> None:
    reply = tunnel.refusal("ssh 192.0.2.10:22: cannot open a channel: refused")
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 502 Bad Gateway"
    assert f"Content-Length: {len(body)}" in lines and "Connection: close" in lines
    assert json.loads(body) == {
        "message": "dockyard tunnel: ssh 192.0.2.10:22: cannot open a channel: refused"
    }
