"""Where and how to connect: `SshTarget`, built by hand or from a resource's
`connection` dict, and its resolution against ~/.ssh/config."""

from __future__ import annotations

import dataclasses
import getpass
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import paramiko

from . import sshconfig
from .errors import TransportError
from .hostkeys import hostkey_name, key_line_of, normalize_key_line

HOST = "host"
JUMP_HOST = "jump host"
# More jump hosts in a row than anyone builds on purpose: a ProxyJump loop in ~/.ssh/config.
MAX_JUMPS = 8
_KNOWN_HOSTS = "~/.ssh/known_hosts"


@dataclass(frozen=True)
class SshTarget:
    host: str
    port: int | None = None  # None: 22, or Port from ~/.ssh/config in ssh_config mode
    user: str | None = None  # None: root, or User from ~/.ssh/config in ssh_config mode
    private_key: str | None = field(default=None, repr=False)  # PEM / OpenSSH text
    key_file: str | None = None  # a private key file on this machine (read, never copied)
    passphrase: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    host_key: str | None = None  # "ssh-ed25519 AAAA..." to pin
    use_agent: bool = True
    look_for_keys: bool = True  # ~/.ssh/id_* when no key is given
    ssh_config: bool = False  # honour ~/.ssh/config (and read ~/.ssh/known_hosts)
    connect_deadline: float = 300.0
    keepalive: int = 15  # seconds between liveness probes; 0 disables
    jump: SshTarget | None = None  # a jump host (bastion) `host` is reached through
    role: str = HOST  # JUMP_HOST for a jump host: named so in messages, must be pinned

    def __post_init__(self) -> None:
        if not self.host:
            raise TransportError("ssh target needs a host")
        if self.host_key is not None:
            normalize_key_line(self.host_key)  # fail early on a malformed pin

    @classmethod
    def from_props(cls, props: Mapping[str, Any]) -> SshTarget:
        """Build from the camelCase `connection` dict of a dynamic resource:
        {host, port, user, privateKey?, privateKeyFile?, privateKeyPassphrase?, password?,
        hostKey?, jumpHost?} plus the optional sshConfig (bool) and connectDeadline (s).
        `jumpHost` is {host, port?, user?, hostKey}; the jump host is offered the same
        credentials as the host (password aside).

        Pulumi hands numbers over as floats, so ports and the deadline are coerced.
        """
        host = _text(props, "host", "connection")
        if host is None:
            raise TransportError("connection.host is required")
        deadline = props.get("connectDeadline")
        target = cls(
            host=host,
            port=_port(props, "connection"),
            user=_text(props, "user", "connection"),
            private_key=_text(props, "privateKey", "connection"),
            key_file=_text(props, "privateKeyFile", "connection"),
            passphrase=_text(props, "privateKeyPassphrase", "connection"),
            password=_text(props, "password", "connection"),
            host_key=_text(props, "hostKey", "connection"),
            ssh_config=bool(props.get("sshConfig", False)),
            connect_deadline=300.0 if deadline is None else float(deadline),
        )
        jump = props.get("jumpHost")
        if jump is None:
            return target
        if not isinstance(jump, Mapping):
            raise TransportError("connection.jumpHost must be a mapping {host, user, hostKey}")
        jump_host = _text(jump, "host", "connection.jumpHost")
        if jump_host is None:
            raise TransportError("connection.jumpHost.host is required")
        return target.through(
            target.hop(
                jump_host,
                port=_port(jump, "connection.jumpHost"),
                user=_text(jump, "user", "connection.jumpHost"),
                host_key=_text(jump, "hostKey", "connection.jumpHost"),
            )
        )

    def hop(
        self,
        host: str,
        *,
        port: int | None,
        user: str | None,
        host_key: str | None = None,
        jump: SshTarget | None = None,
    ) -> SshTarget:
        """A jump host on the way to this target, offered this target's keys (not its
        password), in the same ssh_config mode."""
        return SshTarget(
            host=host,
            port=port,
            user=user,
            private_key=self.private_key,
            key_file=self.key_file,
            passphrase=self.passphrase,
            host_key=host_key,
            use_agent=self.use_agent,
            look_for_keys=self.look_for_keys,
            ssh_config=self.ssh_config,
            connect_deadline=self.connect_deadline,
            keepalive=self.keepalive,
            jump=jump,
            role=JUMP_HOST,
        )

    def through(self, jump: SshTarget | None) -> SshTarget:
        """This target, reached through `jump`."""
        return dataclasses.replace(self, jump=jump)

    @property
    def label(self) -> str:
        """The target as messages name it before ~/.ssh/config is applied."""
        text = self.host if self.port is None else f"{self.host}:{self.port}"
        return f"{text} via {self.jump.label}" if self.jump else text

    def secrets(self) -> tuple[str, ...]:
        """Strings that must never appear in output or errors."""
        own = tuple(s for s in (self.private_key, self.passphrase, self.password) if s)
        return own + (self.jump.secrets() if self.jump else ())


def _text(props: Mapping[str, Any], key: str, where: str) -> str | None:
    value = props.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise TransportError(f"{where}.{key} must be a string")
    return value


def _port(props: Mapping[str, Any], where: str) -> int | None:
    port = props.get("port")
    if port is None:
        return None
    if isinstance(port, bool) or not isinstance(port, int | float) or port != int(port):
        raise TransportError(f"{where}.port must be an integer, got {port!r}")
    if not 0 < int(port) < 65536:
        raise TransportError(f"{where}.port out of range: {port}")
    return int(port)


@dataclass(frozen=True)
class ResolvedTarget:
    """A target after ~/.ssh/config: concrete address and user, extra key files, the keys
    known_hosts lists for it (ssh_config mode only), and how the TCP stream gets there:
    directly, through a resolved jump host, or through a ProxyCommand."""

    target: SshTarget
    hostname: str
    port: int
    user: str
    key_files: tuple[str, ...]
    known_host_keys: tuple[str, ...]
    jump: ResolvedTarget | None = None
    proxy_command: str | None = None

    @property
    def address(self) -> str:
        return f"{self.hostname}:{self.port}"

    @property
    def where(self) -> str:
        """The address as messages show it: which role, and through which jump host."""
        text = self.address if self.target.role == HOST else f"{self.target.role} {self.address}"
        return f"{text} via {self.jump.where}" if self.jump else text

    @property
    def pool_key(self) -> tuple[Any, ...]:
        pin = normalize_key_line(self.target.host_key) if self.target.host_key else None
        route = self.jump.pool_key if self.jump else self.proxy_command
        return (self.hostname, self.port, self.user, pin, route)


def resolve(target: SshTarget, *, _depth: int = 0) -> ResolvedTarget:
    """Apply ~/.ssh/config (ssh_config mode) and check the route before connecting: every
    jump host, and every host behind one, must have a pinned key."""
    if _depth > MAX_JUMPS:
        raise TransportError(
            f"more than {MAX_JUMPS} jump hosts in a row to reach {target.host}: does a"
            " ProxyJump in ~/.ssh/config lead back to itself (e.g. `Host *` matching the jump"
            " host too)?"
        )
    found = sshconfig.lookup(target.host) if target.ssh_config else {}
    hostname = str(found.get("hostname", target.host))
    port = target.port if target.port is not None else _config_port(found, target.host)
    user = target.user or found.get("user")
    if user is None:
        user = getpass.getuser() if target.ssh_config else "root"
    # IdentityFiles are offered after an explicit key, as ssh offers them after `-i`.
    key_files = [f for f in found.get("identityfile", []) if os.path.exists(f)]
    known = _known_host_keys(hostname, port, found) if target.ssh_config else []
    jump, proxy_command = target.jump, None
    if jump is None and target.ssh_config:
        jump = _config_jump(target, found)
        if jump is None:
            proxy_command = found.get("proxycommand") or None
    resolved = ResolvedTarget(
        target=target,
        hostname=hostname,
        port=port,
        user=user,
        key_files=tuple(key_files),
        known_host_keys=tuple(known),
        jump=resolve(jump, _depth=_depth + 1) if jump is not None else None,
        proxy_command=proxy_command,
    )
    if not target.host_key and not known and (target.role == JUMP_HOST or jump is not None):
        raise TransportError(_unpinned(resolved))
    return resolved


def _unpinned(resolved: ResolvedTarget) -> str:
    setting = "jumpHost.hostKey" if resolved.target.role == JUMP_HOST else "hostKey"
    why = (
        "a jump host is never trusted on first use"
        if resolved.target.role == JUMP_HOST
        else "a host behind a jump host is never trusted on first use"
    )
    return (
        f"{resolved.where} has no pinned host key ({why}): set {setting} to its public key"
        f" line (e.g. from `ssh-keyscan -t ed25519 {resolved.hostname}`, run where it is"
        " reachable), or, with sshConfig, list the key in ~/.ssh/known_hosts"
    )


def _config_port(found: Mapping[str, Any], alias: str) -> int:
    try:
        return int(found.get("port", 22))
    except ValueError:
        raise TransportError(
            f"~/.ssh/config gives {alias} the port {found.get('port')!r}, not a number"
        ) from None


def _config_jump(target: SshTarget, found: Mapping[str, Any]) -> SshTarget | None:
    """The last jump host of the config's ProxyJump, chained through the ones before it (the
    first one's own ProxyJump then applies, as with ssh)."""
    value = found.get("proxyjump")
    if not value or str(value).lower() == "none":
        return None
    jump: SshTarget | None = None
    for user, host, port in sshconfig.proxy_jump_hops(str(value)):
        jump = target.hop(host, port=port, user=user, jump=jump)
    return jump


def _known_host_keys(hostname: str, port: int, found: Mapping[str, Any]) -> list[str]:
    """Keys the known_hosts files (UserKnownHostsFile, else ~/.ssh/known_hosts) hold for the
    host, read only (never written)."""
    files = str(found.get("userknownhostsfile", _KNOWN_HOSTS)).split()
    keys: list[str] = []
    for name in files:
        path = os.path.expanduser(name)
        if not os.path.isfile(path):
            continue
        entries = paramiko.HostKeys(path).lookup(hostkey_name(hostname, port))
        if entries is not None:
            keys += [key_line_of(key) for key in entries.values()]
    return keys
