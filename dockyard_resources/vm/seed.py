"""Per-VM seed disk: a tiny ext4 image (label `dyseed`) made with `mkfs.ext4 -d`.

The guest's dockyard-seed.service reads it on every boot (see guest_config.sh).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from dockyard_resources.vm.keys import KeyPair

SEED_LABEL = "dyseed"


def write_seed_disk(target: Path, *, host_key: KeyPair, authorized_key: str, hostname: str) -> None:
    with tempfile.TemporaryDirectory(prefix="dyseed-", dir=target.parent) as tmp:
        content = Path(tmp) / "content"
        ssh = content / "ssh"
        ssh.mkdir(parents=True)
        key_file = ssh / "ssh_host_ed25519_key"
        key_file.write_text(host_key.private_openssh)
        key_file.chmod(0o600)
        (ssh / "ssh_host_ed25519_key.pub").write_text(host_key.public_line + "\n")
        (content / "authorized_keys").write_text(authorized_key.strip() + "\n")
        (content / "hostname").write_text(hostname + "\n")
        staging = Path(tmp) / "seed.img"
        proc = subprocess.run(
            ["mkfs.ext4", "-q", "-F", "-L", SEED_LABEL, "-d", str(content), str(staging), "4M"],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"mkfs.ext4 for the seed disk failed: {proc.stderr.strip()}")
        staging.chmod(0o600)
        shutil.move(str(staging), str(target))
