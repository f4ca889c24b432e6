"""Host key lines ("ssh-ed25519 AAAA..."), fingerprints, and the recording policy."""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading

import paramiko

from .errors import TransportError

KNOWN_KEY_TYPES = frozenset(
    {
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
    }
)


def parse_key_line(line: str) -> tuple[str, str]:
    """Split an OpenSSH public key line into (type, base64 blob).

    Accepts "type blob [comment]" and known_hosts style "host type blob"; the blob
    must decode and name the same type inside, so a typo is caught here and not as a
    mysterious mismatch later.
    """
    tokens = line.split()
    for i, token in enumerate(tokens[:-1]):
        if token in KNOWN_KEY_TYPES:
            key_type, blob = token, tokens[i + 1]
            break
    else:
        raise TransportError(f"not an OpenSSH public key line: {line[:60]!r}")
    try:
        raw = base64.b64decode(blob, validate=True)
    except binascii.Error as exc:
        raise TransportError(f"host key {key_type} has invalid base64: {exc}") from None
    inner_len = int.from_bytes(raw[:4], "big")
    if raw[4 : 4 + inner_len].decode("ascii", "replace") != key_type:
        raise TransportError(f"host key blob does not hold a {key_type} key")
    return key_type, blob


def normalize_key_line(line: str) -> str:
    """ "type blob" without comment: the form stored in state and compared."""
    return " ".join(parse_key_line(line))


def fingerprint_of(key_line: str) -> str:
    """SHA256 fingerprint as `ssh-keygen -l` prints it: "SHA256:" + unpadded base64."""
    _, blob = parse_key_line(key_line)
    digest = hashlib.sha256(base64.b64decode(blob)).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def key_line_of(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.get_base64()}"


def pkey_from_line(line: str) -> paramiko.PKey:
    key_type, blob = parse_key_line(line)
    return paramiko.PKey.from_type_string(key_type, base64.b64decode(blob))


def hostkey_name(host: str, port: int) -> str:
    """The name paramiko (and known_hosts) files a host's key under."""
    return host if port == 22 else f"[{host}]:{port}"


class RecordingPolicy(paramiko.MissingHostKeyPolicy):
    """Called by paramiko only when no key is pinned for the host: remember the key
    the host presented, never write it to any known_hosts file.

    The caller returns the recorded key so it can be pinned from then on (trust on
    first use, with the trust kept in Pulumi state rather than in ~/.ssh).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seen: str | None = None

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        with self._lock:
            self.seen = key_line_of(key)
