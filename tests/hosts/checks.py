"""Small typed views of host state for tests: `Service.of(sh, "x.service").active`.

Each view is read in one round trip and is a frozen snapshot; read it again to see changes.
`Shell` is anything with `run(script) -> (exit_code, stdout)`; `SshShell` adapts the
transport so checks run as root on the test host.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any, Protocol

from dockyard_resources.transport import SshTarget, session


class Shell(Protocol):
    def run(self, script: str) -> tuple[int, str]: ...


@dataclass(frozen=True)
class SshShell:
    target: SshTarget

    def run(self, script: str) -> tuple[int, str]:
        result = session(self.target).run(script, step="check host state", check=False)
        return result.exit_code, result.stdout

    def ok(self, script: str) -> bool:
        return self.run(script)[0] == 0

    def out(self, script: str) -> str:
        code, stdout = self.run(script)
        if code != 0:
            raise AssertionError(f"host command failed ({code}): {script}\n{stdout}")
        return stdout.strip()


def _fields(sh: Shell, script: str) -> dict[str, str]:
    _, out = sh.run(script)
    values: dict[str, str] = {}
    for line in out.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key] = value
    return values


@dataclass(frozen=True)
class Service:
    name: str
    active: bool
    enabled: bool
    unit_file_exists: bool

    @classmethod
    def of(cls, sh: Shell, name: str) -> Service:
        q = shlex.quote(name)
        f = _fields(
            sh,
            f"echo active=$(systemctl is-active {q} 2>/dev/null)\n"
            f"echo enabled=$(systemctl is-enabled {q} 2>/dev/null)\n"
            f"echo file=$(test -f /etc/systemd/system/{q} && echo 1)\n",
        )
        return cls(
            name, f.get("active") == "active", f.get("enabled") == "enabled", f.get("file") == "1"
        )


@dataclass(frozen=True)
class File:
    path: str
    exists: bool
    kind: str  # "directory", "regular file", "socket", ... as stat names it
    owner: str
    group: str
    mode: int

    @classmethod
    def of(cls, sh: Shell, path: str) -> File:
        code, out = sh.run(f"stat -c '%F|%U|%G|%a' {shlex.quote(path)}")
        if code != 0:
            return cls(path, False, "", "", "", 0)
        kind, owner, group, mode = out.strip().split("|")
        return cls(path, True, kind, owner, group, int(mode, 8))


@dataclass(frozen=True)
class Socket(File):
    @classmethod
    def of(cls, sh: Shell, path: str) -> Socket:
        f = File.of(sh, path)
        return cls(f.path, f.exists and f.kind == "socket", f.kind, f.owner, f.group, f.mode)


@dataclass(frozen=True)
class IptablesRules:
    """Rules of filter/FORWARD and nat/POSTROUTING as `iptables -S` prints them."""

    lines: tuple[str, ...]

    @classmethod
    def of(cls, sh: Shell) -> IptablesRules:
        _, out = sh.run(
            "iptables -w -t filter -S FORWARD | sed 's/^/filter /'\n"
            "iptables -w -t nat -S POSTROUTING | sed 's/^/nat /'\n"
        )
        return cls(tuple(line for line in out.splitlines() if line.strip()))

    def tagged(self, tag: str) -> list[str]:
        """Rules carrying exactly this comment tag (quoted or not)."""
        return [
            line
            for line in self.lines
            if f"--comment {tag} " in line + " " or f'--comment "{tag}"' in line
        ]


@dataclass(frozen=True)
class User:
    name: str
    exists: bool
    groups: tuple[str, ...]

    @classmethod
    def of(cls, sh: Shell, name: str) -> User:
        code, out = sh.run(f"id -nG {shlex.quote(name)}")
        return cls(name, code == 0, tuple(out.split()) if code == 0 else ())


@dataclass(frozen=True)
class Group:
    name: str
    exists: bool
    members: tuple[str, ...]

    @classmethod
    def of(cls, sh: Shell, name: str) -> Group:
        code, out = sh.run(f"getent group {shlex.quote(name)}")
        if code != 0:
            return cls(name, False, ())
        members = out.strip().split(":")[3] if out.count(":") >= 3 else ""
        return cls(name, True, tuple(m for m in members.split(",") if m))


@dataclass(frozen=True)
class Link:
    name: str
    exists: bool
    addresses: tuple[str, ...]

    @classmethod
    def of(cls, sh: Shell, name: str) -> Link:
        code, out = sh.run(f"ip -o -4 addr show dev {shlex.quote(name)}")
        if code != 0:
            return cls(name, False, ())
        addrs = tuple(line.split()[3] for line in out.splitlines() if " inet " in line)
        return cls(name, True, addrs)


def describe(value: Any) -> str:
    """For assertion messages."""
    return repr(value)
