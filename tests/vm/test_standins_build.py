"""The sysbox STAND-IN deb builds reproducibly and carries sysbox's file layout."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from tools.standins import build


def test_sysbox_standin_deb_is_reproducible_and_labelled(tmp_path: Path) -> None:
    first, second = tmp_path / "a.deb", tmp_path / "b.deb"
    build.build_sysbox_deb(first)
    build.build_sysbox_deb(second)
    assert (
        hashlib.sha256(first.read_bytes()).digest() == hashlib.sha256(second.read_bytes()).digest()
    )
    listing = subprocess.run(
        ["dpkg-deb", "-c", str(first)], capture_output=True, text=True, check=True
    ).stdout
    for binary in ("sysbox-mgr", "sysbox-fs", "sysbox-runc"):
        assert f"./usr/bin/{binary}" in listing
    fields = subprocess.run(
        ["dpkg-deb", "-f", str(first), "Package", "Version", "Description"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "Package: sysbox-ce" in fields
    assert "standin" in fields and "STAND-IN" in fields
