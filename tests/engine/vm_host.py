"""The stack's QEMU VM seen from the tests: SSH as the sudo user, sshd logins, Dockyard traces.

The engine logs in as root (LocalVm's `user` output); the tests log in as the VM's sudo user
`dockyard` with the same key. So counting sshd's "Accepted publickey for root" lines counts
exactly the connections Pulumi's providers opened, never the tests' own.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

from dockyard_resources.transport import SshTarget
from dockyard_resources.vm import runner
from tests.hosts.checks import SshShell, dockyard_traces

ENGINE_LOGIN = f"Accepted publickey for {runner.ROOT_USER} "


@dataclass(frozen=True)
class VmHost:
    """SSH to the stack's VM, built from the LocalVm resource's outputs in the state."""

    shell: SshShell
    private_key: str
    pid: int
    overlay_path: str

    @classmethod
    def from_outputs(cls, outputs: dict[str, Any]) -> VmHost:
        target = SshTarget(
            host=str(outputs["host"]),
            port=int(outputs["port"]),
            user=runner.SUDO_USER,
            private_key=str(outputs["privateKey"]),
            host_key=str(outputs["hostKey"]),
            use_agent=False,
            look_for_keys=False,
            connect_deadline=120.0,
        )
        return cls(
            SshShell(target),
            str(outputs["privateKey"]),
            int(outputs["pid"]),
            str(outputs["overlayPath"]),
        )

    def out(self, script: str) -> str:
        return self.shell.out(script)

    def ok(self, script: str) -> bool:
        return self.shell.ok(script)

    def engine_logins(self) -> int:
        """sshd's accepted root logins since boot (only Pulumi's providers log in as root)."""
        pattern = shlex.quote(ENGINE_LOGIN)
        out = self.out(f"journalctl --no-pager -o cat -b | grep -cF {pattern} || true")
        return int(out or "0")

    def dockyard_traces(self, prefixes: list[str], roots: list[str]) -> list[str]:
        """Every piece of Dockyard found on the host; empty when the host is clean."""
        return dockyard_traces(self.shell, prefixes, roots)
