"""The stack's QEMU machine seen from the tests: SSH as the sudo user, sshd logins, Dockyard
traces.

The engine logs in as root (the stack file's `user`); the tests log in as the VM's sudo user
`dockyard` with the same key. So counting sshd's "Accepted publickey for root" lines counts
exactly the connections Pulumi's providers opened, never the tests' own.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from dockyard_resources.vm import runner
from tests.fixtures.vm import TestHost
from tests.hosts.checks import SshShell, dockyard_traces

ENGINE_LOGIN = f"Accepted publickey for {runner.ROOT_USER} "


@dataclass(frozen=True)
class VmHost:
    """SSH to the stack's machine as its sudo user."""

    shell: SshShell

    @classmethod
    def of(cls, machine: TestHost) -> VmHost:
        return cls(SshShell(machine.sudo_target))

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
