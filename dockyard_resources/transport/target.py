"""Where and how to connect: `SshTarget`, built by hand or from a resource's
`connection` dict, and its resolution against ~/.ssh/config."""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import paramiko

from .errors import TransportError
from .hostkeys import hostkey_name, key_line_of, normalize_key_line


@dataclass(frozen=True)
class SshTarget:
    host: str
    port: int | None = None  # None: 22, or Port from ~/.ssh/config in ssh_config mode
    user: str | None = None  # None: root, or User from ~/.ssh/config in ssh_config mode
    private_key: str | None = field(default=None, repr=False)  # PEM / OpenSSH text
    key_file: str | None = None
    passphrase: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    host_key: str | None = None  # "ssh-ed25519 AAAA..." to pin
    use_agent: bool = True
    look_for_keys: bool = True  # ~/.ssh/id_* when no key is given
    ssh_config: bool = False  # honour ~/.ssh/config (and read ~/.ssh/known_hosts)
    connect_deadline: float = 300.0
    keepalive: int = 15  # seconds between liveness probes; 0 disables

    def __post_init__(self) -> None:
        if not self.host:
            raise TransportError("ssh target needs a host")
        if self.host_key is not None:
            normalize_key_line(self.host_key)  # fail early on a malformed pin

    @classmethod
    def from_props(cls, props: Mapping[str, Any]) -> SshTarget:
        """Build from the camelCase `connection` dict of a dynamic resource:
        {host, port, user, privateKey?, privateKeyPassphrase?, password?, hostKey?}
        plus the optional sshConfig (bool) and connectDeadline (s).

        Pulumi hands numbers over as floats, so port and deadline are coerced.
        """

        def text(key: str) -> str | None:
            value = props.get(key)
            if value is None or value == "":
                return None
            if not isinstance(value, str):
                raise TransportError(f"connection.{key} must be a string")
            return value

        host = text("host")
        if host is None:
            raise TransportError("connection.host is required")
        port = props.get("port")
        if port is not None:
            if isinstance(port, bool) or not isinstance(port, int | float) or port != int(port):
                raise TransportError(f"connection.port must be an integer, got {port!r}")
            port = int(port)
            if not 0 < port < 65536:
                raise TransportError(f"connection.port out of range: {port}")
        deadline = props.get("connectDeadline")
        return cls(
            host=host,
            port=port,
            user=text("user"),
            private_key=text("privateKey"),
            passphrase=text("privateKeyPassphrase"),
            password=text("password"),
            host_key=text("hostKey"),
            ssh_config=bool(props.get("sshConfig", False)),
            connect_deadline=300.0 if deadline is None else float(deadline),
        )

    def secrets(self) -> tuple[str, ...]:
        """Strings that must never appear in output or errors."""
        return tuple(s for s in (self.private_key, self.passphrase, self.password) if s)


@dataclass(frozen=True)
class ResolvedTarget:
    """A target after ~/.ssh/config: concrete address and user, extra key files, and the
    keys known_hosts lists for it (ssh_config mode only)."""

    target: SshTarget
    hostname: str
    port: int
    user: str
    key_files: tuple[str, ...]
    known_host_keys: tuple[str, ...]

    @property
    def address(self) -> str:
        return f"{self.hostname}:{self.port}"

    @property
    def pool_key(self) -> tuple[str, int, str, str | None]:
        pin = normalize_key_line(self.target.host_key) if self.target.host_key else None
        return (self.hostname, self.port, self.user, pin)


def resolve(target: SshTarget) -> ResolvedTarget:
    hostname, port, user = target.host, target.port, target.user
    key_files: list[str] = []  # IdentityFiles, offered when no key is given explicitly
    known: list[str] = []
    if target.ssh_config:
        found = _lookup_ssh_config(target.host)
        hostname = found.get("hostname", hostname)
        if port is None and "port" in found:
            port = int(found["port"])
        if user is None and "user" in found:
            user = found["user"]
        if not target.key_file and not target.private_key:
            key_files = [f for f in found.get("identityfile", []) if os.path.exists(f)]
    port = 22 if port is None else port
    if target.ssh_config:
        known = _known_host_keys(hostname, port)
    if user is None:
        user = "root" if not target.ssh_config else getpass.getuser()
    return ResolvedTarget(
        target=target,
        hostname=hostname,
        port=port,
        user=user,
        key_files=tuple(key_files),
        known_host_keys=tuple(known),
    )


def _lookup_ssh_config(alias: str) -> dict[str, Any]:
    path = os.path.expanduser("~/.ssh/config")
    if not os.path.exists(path):
        return {}
    return dict(paramiko.SSHConfig.from_path(path).lookup(alias))


def _known_host_keys(hostname: str, port: int) -> list[str]:
    """Keys ~/.ssh/known_hosts holds for the host, read only (never written)."""
    path = os.path.expanduser("~/.ssh/known_hosts")
    if not os.path.exists(path):
        return []
    entries = paramiko.HostKeys(path).lookup(hostkey_name(hostname, port))
    if entries is None:
        return []
    return [key_line_of(key) for key in entries.values()]
