"""SSH key pairs made on the machine running Pulumi.

The VM's host key is generated here and handed to the guest on its seed disk,
so the key to pin is known before the first connection (no trust on first use).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


@dataclass(frozen=True)
class KeyPair:
    private_openssh: str  # "-----BEGIN OPENSSH PRIVATE KEY-----..."
    public_line: str  # "ssh-ed25519 AAAA... comment"

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_line)


def generate_ed25519(comment: str) -> KeyPair:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return KeyPair(private_openssh=private, public_line=f"{public.decode()} {comment}")


def fingerprint(public_line: str) -> str:
    """OpenSSH-style `SHA256:...` fingerprint of a public key line."""
    blob = base64.b64decode(public_line.split()[1])
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def key_type_and_blob(public_line: str) -> str:
    """`type base64` without the comment: the part that identifies the key."""
    parts = public_line.split()
    return f"{parts[0]} {parts[1]}"
