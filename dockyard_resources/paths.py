"""Where Dockyard keeps its files on the machine running Pulumi: outside the checkout, per user.

Two roots with different lifetimes:
- the cache (`$DOCKYARD_CACHE`, else `~/.cache/dockyard`): content-addressed, expensive to
  rebuild and safe to share between runs (the Pulumi CLI build, VM images and templates,
  downloaded artifacts, test images);
- the state (`$DOCKYARD_STATE`, else the cache root): what a deployment owns (the local file
  backend, its generated passphrase, the stacks' project directories, `ci` work dirs). The
  test suite points it at a directory that starts empty on every run, so no test depends on
  state an earlier run left behind.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """`$DOCKYARD_CACHE`, else `~/.cache/dockyard`."""
    configured = os.environ.get("DOCKYARD_CACHE")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "dockyard"


def state_root() -> Path:
    """`$DOCKYARD_STATE`, else the cache root (where `make up` has always kept its state)."""
    configured = os.environ.get("DOCKYARD_STATE")
    if configured:
        return Path(configured).expanduser()
    return cache_root()


def images_dir() -> Path:
    return cache_root() / "images"


def vms_dir() -> Path:
    return cache_root() / "vms"


def standins_dir() -> Path:
    return cache_root() / "standins"


def backend_dir() -> Path:
    """The local file backend `make up` uses when there is no Pulumi login."""
    return state_root() / "state"


def passphrase_file() -> Path:
    """The generated passphrase of the default local backend's stacks."""
    return state_root() / "passphrase"


def stacks_dir() -> Path:
    """Per-stack Pulumi project directories (workdir.py)."""
    return state_root() / "stacks"


def ci_dir() -> Path:
    """Work directories of `ci` runs."""
    return state_root() / "ci"
