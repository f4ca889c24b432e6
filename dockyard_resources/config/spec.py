"""Validated, fully resolved host and instance specs (every default and network filled in)."""

from __future__ import annotations

import ipaddress
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dockyard_resources.config.models import ArtifactsMode, Provision
from dockyard_resources.config.versions import ARCHES, Arch, ArtifactKind


@dataclass(frozen=True)
class ArchArtifact:
    """Where one architecture's file comes from and its pinned sha256 (None: not pinned)."""

    url: str
    sha256: str | None

    @property
    def filename(self) -> str:
        return posixpath.basename(self.url.split("?", 1)[0].rstrip("/"))


@dataclass(frozen=True)
class ResolvedArtifact:
    """A Docker or sysbox build with the overrides of the stack file applied."""

    kind: ArtifactKind
    version: str
    by_arch: Mapping[Arch, ArchArtifact]
    # The key path of this artifact in the stack file, e.g. "hosts[0].docker".
    path: str

    def pinned(self) -> dict[Arch, ArchArtifact]:
        """Architectures whose sha256 is known; the others cannot be installed yet."""
        return {
            arch: self.by_arch[arch]
            for arch in ARCHES
            if arch in self.by_arch and self.by_arch[arch].sha256 is not None
        }


@dataclass(frozen=True)
class ResolvedInstance:
    """One instance as the stack file gives it, every network decided (the render side has
    its own `render.instance.InstanceSpec`, built from the resource properties)."""

    path: str
    prefix: str
    root: str
    bridge_cidr: ipaddress.IPv4Interface
    fixed_cidr: ipaddress.IPv4Network
    pool_base: ipaddress.IPv4Network
    pool_size: int
    members: tuple[str, ...]
    # camelCase keys whose values were allocated or derived, not written in the stack file.
    allocated: frozenset[str]
    # `networkIsolation` (docs/security.md).
    network_isolation: bool = True
    enabled: bool = True
    allow_data_loss: bool = False
    protect: bool = False

    @property
    def bridge_name(self) -> str:
        return f"{self.prefix}docker0"

    def props(self) -> dict[str, Any]:
        """JSON-able resource inputs (camelCase keys) of the `DockyardInstance`."""
        props: dict[str, Any] = {
            "prefix": self.prefix,
            "root": self.root,
            "bridgeCidr": str(self.bridge_cidr),
            "fixedCidr": str(self.fixed_cidr),
            "poolBase": str(self.pool_base),
            "poolSize": self.pool_size,
            "members": list(self.members),
        }
        if not self.network_isolation:
            # Only when relaxed: the default needs no input, and instances made before the
            # option existed keep exactly their inputs (DockyardInstance treats absent as true).
            props["networkIsolation"] = False
        if not self.enabled:
            props["enabled"] = False
        if self.allow_data_loss:
            props["allowDataLoss"] = True
        return props


@dataclass(frozen=True)
class HostSpec:
    """One host with its provisioning, artifacts and instances."""

    path: str
    name: str
    provision: Provision
    docker: ResolvedArtifact
    sysbox: ResolvedArtifact
    artifacts: ArtifactsMode
    allow_sysbox_restart: bool
    instances: tuple[ResolvedInstance, ...]
    # From the provision (config/arch.py); None for an existing machine (known at connect).
    arch: Arch | None = None

    def artifact(self, which: ArtifactKind) -> ResolvedArtifact:
        return self.docker if which == "docker" else self.sysbox

    def artifact_props(self, which: ArtifactKind) -> dict[str, Any]:
        """`{version, artifacts: {arch: {url, sha256}}}` for the `SysboxHost` inputs.

        Architectures without a pinned sha256 are left out, so the host operation can say
        "no sha256 pinned for aarch64; set hosts[i].docker.sha256".
        """
        artifact = self.artifact(which)
        return {
            "version": artifact.version,
            "artifacts": {
                arch: {"url": a.url, "sha256": a.sha256} for arch, a in artifact.pinned().items()
            },
        }


def resolve_artifacts(host: HostSpec, which: ArtifactKind) -> dict[str, dict[str, str]]:
    """`{arch: {url, sha256, filename}}` of the pinned architectures of one artifact."""
    return {
        arch: {"url": a.url, "sha256": a.sha256, "filename": a.filename}
        for arch, a in host.artifact(which).pinned().items()
        if a.sha256 is not None
    }
