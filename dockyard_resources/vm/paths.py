"""Where the VM tooling keeps its files: outside the repository, per user."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """`$DOCKYARD_CACHE`, else `~/.cache/dockyard`."""
    configured = os.environ.get("DOCKYARD_CACHE")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "dockyard"


def images_dir() -> Path:
    return cache_root() / "images"


def vms_dir() -> Path:
    return cache_root() / "vms"


def standins_dir() -> Path:
    return cache_root() / "standins"
