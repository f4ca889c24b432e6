"""Client private keys from a secret string or a file (ed25519, ecdsa, rsa)."""

from __future__ import annotations

import io
from pathlib import Path

import paramiko

from .errors import PrivateKeyError
from .masking import mask, mask_pieces

_KEY_CLASSES: tuple[type[paramiko.PKey], ...] = (
    paramiko.Ed25519Key,
    paramiko.ECDSAKey,
    paramiko.RSAKey,
)


def load_private_key(text: str, passphrase: str | None, origin: str) -> paramiko.PKey:
    """Parse a PEM / OpenSSH private key. `origin` names it in errors ("privateKey",
    a file path); the key text itself never appears in an error."""
    problems: list[str] = []
    for key_class in _KEY_CLASSES:
        try:
            return key_class.from_private_key(io.StringIO(text), password=passphrase)
        except paramiko.PasswordRequiredException:
            raise PrivateKeyError(
                f"private key {origin} is encrypted and no passphrase was given"
            ) from None
        except (paramiko.SSHException, ValueError, TypeError, IndexError) as exc:
            problems.append(f"{key_class.__name__}: {exc}")
    detail = mask("; ".join(problems), mask_pieces([text, passphrase or ""]))
    raise PrivateKeyError(
        f"private key {origin} is not a readable ed25519, ecdsa or rsa key "
        f"(or the passphrase is wrong): {detail}"
    )


def load_key_file(path: str, passphrase: str | None) -> paramiko.PKey:
    try:
        text = Path(path).expanduser().read_text()
    except OSError as exc:
        raise PrivateKeyError(f"cannot read private key file {path}: {exc.strerror}") from None
    return load_private_key(text, passphrase, path)
