"""A fresh clone of this checkout and the environment of a machine that never ran Dockyard.

The clone holds the committed tree only (what a user's `git clone` gets). The environment has
a runner's plain PATH (no pyenv shims, no `pulumi`), an empty Dockyard state root and Pulumi
home (no backend, no login, no passphrase), and only those variables of this machine that
say how it reaches packages (pip's settings) or where the content-addressed caches are.
"""

from __future__ import annotations

import os
import pwd
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
RUNNER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# This machine's ways to packages; nothing of the developer's Pulumi setup.
_PASSED_PREFIXES = ("PIP_", "LANG", "LC_")
_PASSED_NAMES = ("TMPDIR", "GOPROXY", "GOFLAGS")
# Where the content-addressed caches are and which artifacts the test bed installs.
_CACHE_NAMES = ("DOCKYARD_CACHE", "DOCKYARD_TEST_ARTIFACTS")


def clone(dest: Path) -> Path:
    """`git clone` of this checkout's HEAD into `dest` (uncommitted changes stay behind)."""
    subprocess.run(
        ["git", "clone", "--quiet", "--no-hardlinks", str(REPO_ROOT), str(dest)], check=True
    )
    return dest


def new_machine_env(*, home: Path, state: Path, caches: bool) -> dict[str, str]:
    """The environment of a user on a machine without Dockyard or Pulumi state; with
    `caches`, this machine's caches (VM image, CLI build) and test bed artifacts."""
    passed = (*_PASSED_NAMES, *(_CACHE_NAMES if caches else ()))
    env = {
        name: value
        for name, value in os.environ.items()
        if name.startswith(_PASSED_PREFIXES) or name in passed
    }
    env.update(
        {
            "PATH": RUNNER_PATH,
            "HOME": str(home),
            "DOCKYARD_STATE": str(state / "dockyard"),
            "PULUMI_HOME": str(state / "pulumi-home"),
        }
    )
    return env


def hand_to(user: str, *paths: Path) -> None:
    """Make `user` the owner of `paths` and everything under them."""
    account = pwd.getpwnam(user)
    for path in paths:
        subprocess.run(["chown", "-R", f"{account.pw_uid}:{account.pw_gid}", str(path)], check=True)
