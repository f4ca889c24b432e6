"""Where the tunnel's socket lives: a directory only this user can enter.

The socket is root-equivalent on the host. In a directory others can write to (`/tmp`),
another local user could create the name first (the tunnel then fails, or serves from a
file they control) or bind it after the tunnel ended while `DOCKER_HOST` still points
there, and read whatever the next `docker` command sends (registry credentials, build
contexts). `$XDG_RUNTIME_DIR` is such a directory by definition (owned by the user, mode
0700); without it, `<tmp>/dockyard-<uid>` is made one, the way tmux and ssh-agent do.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from dockyard_resources.errors import DockyardError

MODE = 0o700


class UnsafeDirectory(DockyardError):
    """The socket's directory could be entered or replaced by someone else."""


def runtime_dir() -> Path:
    """`$XDG_RUNTIME_DIR`, else `<tmp>/dockyard-<uid>` (created): checked to be private."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return checked(Path(xdg), "XDG_RUNTIME_DIR")
    path = Path(tempfile.gettempdir()) / f"dockyard-{os.geteuid()}"
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=MODE)  # atomic: either ours, new, or checked below
        path.chmod(MODE)  # the umask may have taken bits away
    return checked(path, "the tunnel's socket directory")


def checked(path: Path, what: str) -> Path:
    """`path` if it is a real directory owned by this user with mode 0700."""
    fix = (
        "remove it, set XDG_RUNTIME_DIR to a directory of yours with mode 0700, or pass"
        " --socket PATH in such a directory"
    )
    try:
        info = path.lstat()  # a symlink is judged as itself, never followed
    except OSError as exc:
        raise UnsafeDirectory(f"{what} {path} cannot be used: {exc.strerror}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeDirectory(f"{what} {path} is not a directory (a symlink or a file): {fix}")
    uid = os.geteuid()
    if info.st_uid != uid:
        raise UnsafeDirectory(
            f"{what} {path} belongs to uid {info.st_uid}, not to you (uid {uid}): another"
            f" user may be waiting for your Docker connections there; {fix}"
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode != MODE:
        raise UnsafeDirectory(
            f"{what} {path} has mode {mode:04o}, not {MODE:04o}: others could reach the"
            f" socket in it; {fix}"
        )
    return path
