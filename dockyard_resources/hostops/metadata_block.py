"""Install, inspect and remove the metadata block of a host over SSH (one script each)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

from dockyard_resources.errors import HostOutputError
from dockyard_resources.render import facts
from dockyard_resources.render import metadata_block as render
from dockyard_resources.render.common import HOST_LOCK_TIMEOUT_S
from dockyard_resources.transport import SshTarget, session

READ_TIMEOUT_S: Final = 120
LOCKED_TIMEOUT_S: Final = HOST_LOCK_TIMEOUT_S + READ_TIMEOUT_S


@dataclass(frozen=True)
class BlockState:
    program_sha256: str
    unit_sha256: str
    enabled: bool
    rule: bool

    @classmethod
    def from_output(cls, stdout: str) -> BlockState:
        found = facts.one(stdout, render.STATE_FACT)
        return cls(
            program_sha256=str(found["programSha256"]),
            unit_sha256=str(found["unitSha256"]),
            enabled=bool(found["enabled"]),
            rule=bool(found["rule"]),
        )

    def drift(self) -> list[str]:
        """Differences from a complete block, in words; empty when none."""
        found: list[str] = []
        for path, actual, text in (
            (render.PROGRAM_PATH, self.program_sha256, render.render_program()),
            (render.UNIT_PATH, self.unit_sha256, render.render_unit()),
        ):
            if not actual:
                found.append(f"{path}: missing")
            elif actual != hashlib.sha256(text.encode()).hexdigest():
                found.append(f"{path}: content differs from what Dockyard writes")
        if not self.enabled:
            found.append(f"{render.UNIT_NAME}: not enabled (the rule would not come back at boot)")
        if not self.rule:
            found.append(
                f"the {render.CHAIN} rule rejecting non-root users' packets to "
                f"{render.METADATA_ADDRESS} is missing"
            )
        return found


def install(target: SshTarget) -> BlockState:
    """Converge the host onto a complete block (create, update and repair)."""
    result = session(target).run(
        render.install_script(), step="block the metadata service", timeout=LOCKED_TIMEOUT_S
    )
    state = BlockState.from_output(result.stdout)
    problems = state.drift()
    if problems:
        raise HostOutputError(
            f"{target.host}: metadata block installed, but " + "; ".join(problems)
        )
    return state


def inspect(target: SshTarget) -> BlockState:
    result = session(target).run(
        render.inspect_script(), step="inspect the metadata block", timeout=READ_TIMEOUT_S
    )
    return BlockState.from_output(result.stdout)


def remove(target: SshTarget) -> None:
    session(target).run(
        render.remove_script(), step="remove the metadata block", timeout=LOCKED_TIMEOUT_S
    )
