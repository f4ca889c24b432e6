"""The CPU architecture of a host, known from its provision before the machine exists.

A host whose architecture has no pinned Docker or sysbox file can only fail once it is up:
for a cloud server that is after it was created (and billed). Knowing the architecture at
validate time moves that failure to `validate` and preview. The rules (docs/stacks.md):

- hcloud: server types `cax*` are Ampere (arm64); every other type is x86_64.
- aws: Graviton families have a `g` right after the generation digits (t4g, m6gd, c7gn,
  r8g, im4gn, g5g, ...), and `a1`; every other family is x86_64.
- qemu: x86_64 (vm/runner.py always boots qemu-system-x86_64 with Debian's amd64 kernel).
- existing: unknown until Dockyard connects; the SysboxHost preflight checks it then.

`arch:` on a cloud provision overrides the rule, for types it cannot know.
"""

from __future__ import annotations

import re
from typing import Final

from dockyard_resources.config.models import (
    AwsProvision,
    ExistingProvision,
    HcloudProvision,
    Provision,
    QemuProvision,
)
from dockyard_resources.config.spec import ResolvedArtifact
from dockyard_resources.config.versions import DISPLAY_NAMES, Arch

QEMU_ARCH: Final[Arch] = "x86_64"
# Letters, the generation digits, then `g`: the rest (d, n, e, en...) does not matter.
_GRAVITON_FAMILY_RE: Final = re.compile(r"[a-z]+[0-9]+g.*")
_FIRST_GRAVITON_FAMILY: Final = "a1"
_HCLOUD_ARM_PREFIX: Final = "cax"
# How Debian (and the cloud APIs) call aarch64, for the messages.
_ALSO_KNOWN_AS: Final[dict[Arch, str]] = {"x86_64": "amd64", "aarch64": "arm64"}


def hcloud_arch(server_type: str) -> Arch:
    return "aarch64" if server_type.lower().startswith(_HCLOUD_ARM_PREFIX) else "x86_64"


def aws_arch(instance_type: str) -> Arch:
    family = instance_type.lower().split(".", 1)[0]
    if family == _FIRST_GRAVITON_FAMILY or _GRAVITON_FAMILY_RE.fullmatch(family):
        return "aarch64"
    return "x86_64"


def provision_arch(provision: Provision) -> Arch | None:
    """The host's architecture, or None when only the machine itself can tell (existing)."""
    if isinstance(provision, QemuProvision):
        return QEMU_ARCH
    if isinstance(provision, HcloudProvision):
        return provision.arch or hcloud_arch(provision.server_type)
    if isinstance(provision, AwsProvision):
        return provision.arch or aws_arch(provision.instance_type)
    return None


def _arch_key(provision: Provision) -> tuple[str, str]:
    """The key that decided the architecture, and its value, for the message."""
    if isinstance(provision, HcloudProvision | AwsProvision) and provision.arch is not None:
        return "arch", provision.arch
    if isinstance(provision, HcloudProvision):
        return "serverType", provision.server_type
    if isinstance(provision, AwsProvision):
        return "instanceType", provision.instance_type
    return "kind", provision.kind


def unpinned_arch_errors(
    path: str, provision: Provision, artifacts: tuple[ResolvedArtifact, ...]
) -> list[str]:
    """`key.path: text` for each artifact without a pinned file for the host's architecture."""
    if isinstance(provision, ExistingProvision):
        return []
    arch = provision_arch(provision)
    if arch is None:  # pragma: no cover - every kind but existing has one
        return []
    key, value = _arch_key(provision)
    errors = []
    for artifact in artifacts:
        if arch in artifact.pinned():
            continue
        fix = f"set {artifact.path}.sha256 (or sha256File) for the {arch} file"
        if key != "kind":
            fix += (
                f", or choose a type of another architecture (the rule is in docs/stacks.md;"
                f" {path}.provision.arch overrides it)"
            )
        errors.append(
            f"{path}.provision.{key}: {value} is {arch} ({_ALSO_KNOWN_AS[arch]}), and"
            f" {DISPLAY_NAMES[artifact.kind]} {artifact.version} has no pinned sha256 for"
            f" {arch}; {fix}"
        )
    return errors
