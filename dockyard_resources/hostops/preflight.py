"""Decide from recorded host facts whether a host can become a Dockyard host.

Pure: the facts come from `render.sysbox_host.preflight_script` (one JSON line); every
problem is reported at once, in words a person can act on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from dockyard_resources.errors import DockyardError
from dockyard_resources.render import facts

SUPPORTED_ARCHES: Final = ("x86_64", "aarch64")
# ID-mapped mounts arrived in 5.12; older kernels need Ubuntu's shiftfs module.
MIN_KERNEL: Final = (5, 12)
# Kernels known to break sysbox-runc 0.6.7 (EPERM on `mount --make-private /`).
BROKEN_KERNELS: Final = {
    "6.17.0-14-generic": "Ubuntu 25.10's 6.17.0-14-generic breaks sysbox-runc 0.6.7 "
    "(EPERM on mount --make-private /); boot another kernel (Ubuntu 24.04's 6.8 works)",
}
# Room for the artifact cache plus unpacked binaries (Docker's are about 250 MB).
MIN_FREE_MB: Final = {"/usr/local": 512, "/var": 1024}


class PreflightFailed(DockyardError):
    """The host cannot run Dockyard; `problems` lists every reason."""

    def __init__(self, host: str, problems: list[str]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"host {host} is not ready for Dockyard:\n{lines}")


@dataclass(frozen=True)
class HostFacts:
    distro_id: str
    distro_version: str
    distro_name: str
    kernel: str
    arch: str
    pid1: str
    free_mb_usr_local: int
    free_mb_var: int
    shiftfs: bool
    distro_sysbox_active: tuple[str, ...]
    foreign_sockets: tuple[str, ...]
    cloud_init: bool
    apt_dpkg: bool
    cached_sha256: tuple[str, ...]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HostFacts:
        return cls(
            distro_id=str(data["distroId"]),
            distro_version=str(data["distroVersion"]),
            distro_name=str(data["distroName"]),
            kernel=str(data["kernel"]),
            arch=str(data["arch"]),
            pid1=str(data["pid1"]),
            free_mb_usr_local=int(data["freeMbUsrLocal"]),
            free_mb_var=int(data["freeMbVar"]),
            shiftfs=bool(data["shiftfs"]),
            distro_sysbox_active=tuple(data["distroSysboxActive"]),
            foreign_sockets=tuple(data["foreignSockets"]),
            cloud_init=bool(data["cloudInit"]),
            apt_dpkg=bool(data["aptDpkg"]),
            cached_sha256=tuple(data["cachedSha256"]),
        )

    @classmethod
    def from_output(cls, stdout: str) -> HostFacts:
        """The `preflight` fact of the preflight script's output."""
        return cls.from_json(facts.one(stdout, "preflight"))


def kernel_release(kernel: str) -> tuple[int, int] | None:
    """`6.1.0-27-cloud-amd64` -> (6, 1); None when unparsable."""
    match = re.match(r"(\d+)\.(\d+)", kernel)
    return (int(match.group(1)), int(match.group(2))) if match else None


def evaluate(facts: HostFacts) -> list[str]:
    """Every reason this host cannot run Dockyard; empty when it can."""
    problems: list[str] = []
    release = kernel_release(facts.kernel)
    if facts.kernel in BROKEN_KERNELS:
        problems.append(f"kernel {facts.kernel}: {BROKEN_KERNELS[facts.kernel]}")
    elif release is None:
        problems.append(f"kernel {facts.kernel!r}: cannot read its version")
    elif release < MIN_KERNEL and not facts.shiftfs:
        problems.append(
            f"kernel {facts.kernel} is older than 5.12 and the shiftfs module is not loaded: "
            "sysbox needs ID-mapped mounts (5.12+) or shiftfs; upgrade the kernel"
        )
    if not facts.apt_dpkg:
        problems.append(
            f"{facts.distro_name or 'this distro'} has no apt-get/dpkg-deb: Dockyard installs "
            "prerequisites with apt and unpacks sysbox with dpkg-deb (Debian or Ubuntu needed)"
        )
    if facts.arch not in SUPPORTED_ARCHES:
        problems.append(
            f"architecture {facts.arch} is not supported (Docker and sysbox builds exist for "
            f"{' and '.join(SUPPORTED_ARCHES)})"
        )
    if facts.pid1 != "systemd":
        problems.append(
            f"PID 1 is {facts.pid1 or 'unknown'}, not systemd: Dockyard runs its daemons as "
            "systemd units"
        )
    for mount, free in (("/usr/local", facts.free_mb_usr_local), ("/var", facts.free_mb_var)):
        if free < MIN_FREE_MB[mount]:
            problems.append(
                f"only {free} MB free on {mount}; at least {MIN_FREE_MB[mount]} MB needed"
            )
    if facts.distro_sysbox_active:
        problems.append(
            f"a distro-installed sysbox is running ({', '.join(facts.distro_sysbox_active)}): "
            "sysbox's sockets are hardcoded, so only one sysbox can run per host; stop and "
            "disable it (systemctl disable --now sysbox) or remove the sysbox-ce package"
        )
    if facts.foreign_sockets:
        problems.append(
            f"something other than dockyard-sysbox.service listens on "
            f"{', '.join(facts.foreign_sockets)}: stop that sysbox first"
        )
    return problems


def check(host: str, facts: HostFacts) -> None:
    """Raise PreflightFailed with every problem at once."""
    problems = evaluate(facts)
    if problems:
        raise PreflightFailed(host, problems)
