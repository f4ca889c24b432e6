"""Docker and sysbox artifacts the project knows how to install, per version and architecture.

Architectures use `uname -m` names. A `None` sha256 means nobody has pinned that file yet:
a host of that architecture then needs an explicit `sha256` (or `sha256File`) override.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

Arch = Literal["x86_64", "aarch64"]
ArtifactKind = Literal["docker", "sysbox"]

ARCHES: Final[tuple[Arch, ...]] = ("x86_64", "aarch64")
ARTIFACT_KINDS: Final[tuple[ArtifactKind, ...]] = ("docker", "sysbox")
# Debian's names for the same architectures, used in .deb file names.
DEB_ARCH: Final[dict[Arch, str]] = {"x86_64": "amd64", "aarch64": "arm64"}


@dataclass(frozen=True)
class KnownArtifact:
    url: str
    sha256: str | None


DOCKER_VERSIONS: Final[dict[str, dict[Arch, KnownArtifact]]] = {
    "29.2.1": {
        # Docker publishes no checksums for static tarballs. Confirmed: the same value in
        # four independent public repositories.
        "x86_64": KnownArtifact(
            url="https://download.docker.com/linux/static/stable/x86_64/docker-29.2.1.tgz",
            sha256="995b1d0b51e96d551a3b49c552c0170bc6ce9f8b9e0866b8c15bbc67d1cf93a3",
        ),
        # The same value in two independent public sources.
        "aarch64": KnownArtifact(
            url="https://download.docker.com/linux/static/stable/aarch64/docker-29.2.1.tgz",
            sha256="236c5064473295320d4bf732fbbfc5b11b6b2dc446e8bc7ebb9222015fb36857",
        ),
    },
}

_NESTYBOX_RELEASES = "https://downloads.nestybox.com/sysbox/releases"

SYSBOX_VERSIONS: Final[dict[str, dict[Arch, KnownArtifact]]] = {
    "0.6.7": {
        # From sysbox's official install guide.
        "x86_64": KnownArtifact(
            url=f"{_NESTYBOX_RELEASES}/v0.6.7/sysbox-ce_0.6.7-0.linux_amd64.deb",
            sha256="b7ac389e5a19592cadf16e0ca30e40919516128f6e1b7f99e1cb4ff64554172e",
        ),
        # The same value in four independent public sources, one a distribution's package
        # recipe.
        "aarch64": KnownArtifact(
            url=f"{_NESTYBOX_RELEASES}/v0.6.7/sysbox-ce_0.6.7-0.linux_arm64.deb",
            sha256="16d80123ba53058cf90f5a68686e297621ea97942602682e34b3352783908f91",
        ),
    },
}

KNOWN_VERSIONS: Final[dict[ArtifactKind, dict[str, dict[Arch, KnownArtifact]]]] = {
    "docker": DOCKER_VERSIONS,
    "sysbox": SYSBOX_VERSIONS,
}

DEFAULT_VERSIONS: Final[dict[ArtifactKind, str]] = {"docker": "29.2.1", "sysbox": "0.6.7"}
DISPLAY_NAMES: Final[dict[ArtifactKind, str]] = {"docker": "Docker", "sysbox": "sysbox"}
