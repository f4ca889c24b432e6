"""Small typed views of host state for tests: `Service.of(sh, "x.service").active`.

Each view is read in one round trip and is a frozen snapshot; read it again to see changes.
`Shell` is anything with `run(script) -> (exit_code, stdout)`; `SshShell` adapts the
transport so checks run as root on the test host.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any, Protocol

from dockyard_resources.render import layout
from dockyard_resources.render import sysbox_host as sysbox_layout
from dockyard_resources.render.layout import INSTANCE_MARKER
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
    code, out = sh.run(script)
    if code != 0:
        raise AssertionError(f"host check failed ({code}): {script}\n{out}")
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
        # is-active always prints a state ("inactive" for an unknown unit): nothing printed
        # means systemctl itself failed, which must not read as "stopped".
        if not f.get("active"):
            raise AssertionError(f"systemctl is-active {name} printed nothing: {f}")
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
        q = shlex.quote(path)
        # Absent only when the path truly does not exist; a failing stat is an error.
        code, out = sh.run(f"if [ -e {q} ] || [ -L {q} ]; then stat -c '%F|%U|%G|%a' {q}; fi")
        if code != 0:
            raise AssertionError(f"could not stat {path} ({code}): {out}")
        if not out.strip():
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
        code, out = sh.run(
            "set -o pipefail\n"
            "iptables -w -t filter -S FORWARD | sed 's/^/filter /'\n"
            "iptables -w -t nat -S POSTROUTING | sed 's/^/nat /'\n"
        )
        # An empty listing must mean "no rules", never "iptables failed".
        if code != 0:
            raise AssertionError(f"iptables could not list the rules ({code}): {out}")
        return cls(tuple(line for line in out.splitlines() if line.strip()))

    def tagged(self, tag: str) -> list[str]:
        """Rules carrying exactly this comment tag (quoted or not)."""
        return [
            line
            for line in self.lines
            if f"--comment {tag} " in line + " " or f'--comment "{tag}"' in line
        ]


def _found(getent_code: int, what: str, out: str) -> bool:
    """getent's exit code 2 is "no such entry"; any other failure is an error, not absence."""
    if getent_code not in (0, 2):
        raise AssertionError(f"could not look up {what} ({getent_code}): {out}")
    return getent_code == 0


@dataclass(frozen=True)
class User:
    name: str
    exists: bool
    groups: tuple[str, ...]

    @classmethod
    def of(cls, sh: Shell, name: str) -> User:
        q = shlex.quote(name)
        code, out = sh.run(f"getent passwd {q} >/dev/null || exit $?; id -nG {q}")
        return cls(name, _found(code, f"user {name}", out), tuple(out.split()) if code == 0 else ())


@dataclass(frozen=True)
class Group:
    name: str
    exists: bool
    members: tuple[str, ...]

    @classmethod
    def of(cls, sh: Shell, name: str) -> Group:
        code, out = sh.run(f"getent group {shlex.quote(name)}")
        if not _found(code, f"group {name}", out):
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
        q = shlex.quote(name)
        code, out = sh.run(
            f"if [ -e /sys/class/net/{q} ]; then ip -o -4 addr show dev {q}; else echo absent; fi"
        )
        # Absent only when the kernel has no such link; a failing `ip` is an error.
        if code != 0:
            raise AssertionError(f"could not read link {name} ({code}): {out}")
        if out.strip() == "absent":
            return cls(name, False, ())
        addrs = tuple(line.split()[3] for line in out.splitlines() if " inet " in line)
        return cls(name, True, addrs)


# Everything the shared layer puts on a host (agreed host layout, docs/sysbox-host.md).
SHARED_PATHS = (
    sysbox_layout.LIB_ROOT,
    sysbox_layout.DATA_DIR,
    sysbox_layout.LOG_DIR,
    sysbox_layout.CACHE_DIR.rsplit("/", 1)[0],
    sysbox_layout.RUN_DIR,
    sysbox_layout.UNIT_PATH,
    sysbox_layout.SYSCTL_PATH,
    layout.STATE_DIR,  # network claims (hostops/network_claims.py)
)


def dockyard_traces(
    sh: Shell, prefixes: list[str], roots: list[str], *, shared: bool = True
) -> list[str]:
    """Every piece of Dockyard found on the host; empty when the host is clean.

    With `shared=False` only the given instances' traces count (the shared layer and other
    instances may stay). The listing script must itself succeed: a failing check command
    must never read as "nothing found".
    """
    paths = (*(SHARED_PATHS if shared else ()), *roots)
    checks = [f"if test -e {shlex.quote(p)}; then echo 'path {p}'; fi" for p in paths]
    for prefix in prefixes:
        name = shlex.quote(f"{prefix}docker")
        # iptables -S prints the tag quoted or bare, depending on the build.
        tag = f"dockyard:{prefix}"
        quoted, bare = shlex.quote('--comment "' + tag + '"'), shlex.quote(f"--comment {tag} ")
        tag_patterns = f"-e {quoted} -e {bare}"
        checks += [
            f"if getent group {name} >/dev/null; then echo 'group {prefix}docker'; fi",
            f"if id -u {name} >/dev/null 2>&1; then echo 'user {prefix}docker'; fi",
            f"if test -e /etc/systemd/system/{name}.service; then echo 'unit {prefix}docker'; fi",
            f"if test -e {shlex.quote(f'{layout.NETWORK_CLAIMS_DIR}/{prefix}')}; then"
            f" echo 'network claim {prefix}'; fi",
            f"if ip link show dev {shlex.quote(prefix + 'docker0')} >/dev/null 2>&1; then"
            f" echo 'bridge {prefix}docker0'; fi",
            f"iptables -w -S | {{ grep -F {tag_patterns} || true; }} | sed 's/^/iptables filter /'",
            f"iptables -w -t nat -S | {{ grep -F {tag_patterns} || true; }}"
            " | sed 's/^/iptables nat /'",
        ]
    if shared:
        checks += [
            # Instance units carry a marker line; any unit left with it is ours (the VM
            # image's own dockyard-seed.service is not Dockyard's and has no marker).
            f"{{ grep -lsF {shlex.quote(INSTANCE_MARKER)} /etc/systemd/system/*.service || true; }}"
            " | sed 's/^/unit file /'",
            "iptables -w -S | { grep -F 'dockyard:' || true; } | sed 's/^/iptables filter /'",
            "iptables -w -t nat -S | { grep -F 'dockyard:' || true; } | sed 's/^/iptables nat /'",
            "{ pgrep -a -x 'dockerd|containerd|sysbox-mgr|sysbox-fs' || true; }"
            " | sed 's/^/process /'",
            "{ grep -s '^sysbox:' /etc/subuid /etc/subgid || true; } | sed 's/^/subid /'",
            "{ getent passwd sysbox || true; } | sed 's/^/passwd /'",
        ]
    script = "set -euo pipefail\n" + "\n".join(checks)
    code, out = sh.run(script)
    if code != 0:
        raise AssertionError(f"listing Dockyard's traces failed ({code}): {out}")
    return [line for line in out.splitlines() if line.strip()]


def describe(value: Any) -> str:
    """For assertion messages."""
    return repr(value)
