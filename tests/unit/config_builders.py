"""Builders of raw `dockyard:hosts` values for the config tests."""

from __future__ import annotations

import base64
import hashlib
import itertools
import struct
from typing import Any


def ed25519_key_line(seed: str = "test") -> str:
    """A structurally valid OpenSSH ed25519 public key line."""
    kind = b"ssh-ed25519"
    blob = struct.pack(">I", len(kind)) + kind + struct.pack(">I", 32)
    blob += hashlib.sha256(seed.encode()).digest()
    return f"ssh-ed25519 {base64.b64encode(blob).decode()}"


def instance(prefix: str = "dy1_", root: str = "/dy1", **extra: Any) -> dict[str, Any]:
    return {"prefix": prefix, "root": root, **extra}


# Each built host is its own machine (two hosts at one address and port are refused).
_MACHINES = itertools.count(10)


def host(name: str = "build-1", instances: list[Any] | None = None, **extra: Any) -> dict[str, Any]:
    machine = next(_MACHINES)
    raw: dict[str, Any] = {
        "name": name,
        "provision": {"kind": "existing", "address": f"10.0.{machine // 250}.{machine % 250}"},
        "instances": [instance()] if instances is None else instances,
    }
    raw.update(extra)
    return raw
