"""Which Docker 29.2.1 and sysbox 0.6.7 files the test bed installs, and where they come from.

Test tooling only. Order of choice, first match wins (the choice is always printed):

1. `directory`: the directory named by `DOCKYARD_TEST_ARTIFACTS` (CI and developers point it
   at `../shared/artifacts`: real binaries built from the upstream source tags, whose sha256
   differ from the official downloads).
2. `official`: the official downloads pinned in `dockyard_resources/config/versions.py`,
   when this machine reaches Docker's and sysbox's sites (a user's machine). Fetched once and
   verified against the pins.
3. `standin`: the offline STAND-IN artifacts of `tools/standins` (Debian's Docker binaries in
   Docker's layout and a sysbox stand-in WITHOUT isolation; see docs/testing.md).

The chosen files are linked under `${DOCKYARD_CACHE}/testbed/` with `.sha256` sidecars, the
fixed paths `stacks/Pulumi.testbed.yaml` names, so the stack file never changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from dockyard_resources.config.versions import DOCKER_VERSIONS, SYSBOX_VERSIONS, Arch
from dockyard_resources.hostops import artifacts as host_artifacts
from dockyard_resources.paths import cache_root
from dockyard_resources.render.sysbox_host import Artifact as HostArtifact
from tools.standins.build import build_standins

ENV_VAR = "DOCKYARD_TEST_ARTIFACTS"
DOCKER_VERSION = "29.2.1"
SYSBOX_VERSION = "0.6.7"
ARCH: Arch = "x86_64"
# Names under ${DOCKYARD_CACHE}/testbed/ (what stacks/Pulumi.testbed.yaml points at).
DOCKER_LINK = f"docker-{DOCKER_VERSION}.tgz"
SYSBOX_LINK = f"sysbox-ce-{SYSBOX_VERSION}-amd64.deb"
# How long the reachability probe of the official sites may take.
PROBE_TIMEOUT_S = 5.0

Source = Literal["directory", "official", "standin"]
DESCRIPTIONS: dict[Source, str] = {
    "directory": "real Docker and sysbox from {where}",
    "official": "the official Docker and sysbox downloads (pinned sha256)",
    "standin": "STAND-IN artifacts (Debian's Docker, a sysbox stand-in WITHOUT isolation)",
}


class TestbedArtifactsError(Exception):
    """The chosen artifact source is unusable; the message says what to fix."""


@dataclass(frozen=True)
class File:
    path: Path
    sha256: str


@dataclass(frozen=True)
class TestbedArtifacts:
    source: Source
    where: str
    docker: File
    sysbox: File

    __test__ = False  # not a pytest test class, despite the module it is used in

    @property
    def real_sysbox(self) -> bool:
        """False for the stand-ins: nothing run on them proves sysbox isolation."""
        return self.source != "standin"

    def describe(self) -> str:
        return DESCRIPTIONS[self.source].format(where=self.where)

    def as_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "description": self.describe(),
            "realSysbox": self.real_sysbox,
            "docker": {"path": str(self.docker.path), "sha256": self.docker.sha256},
            "sysbox": {"path": str(self.sysbox.path), "sha256": self.sysbox.sha256},
        }


def testbed_dir() -> Path:
    return cache_root() / "testbed"


def sha256_of(path: Path) -> str:
    """The sidecar's value when `<path>.sha256` exists, else the file's own digest."""
    sidecar = path.with_name(path.name + ".sha256")
    if sidecar.is_file():
        return sidecar.read_text().split()[0].lower()
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _one(directory: Path, pattern: str, what: str) -> Path:
    matches = sorted(directory.glob(pattern))
    if not matches:
        raise TestbedArtifactsError(
            f"{ENV_VAR}={directory}: no {what} ({pattern}) in it; point {ENV_VAR} at a "
            "directory holding docker-29.2.1.tgz and sysbox-ce_0.6.7-*_amd64.deb, or unset it"
        )
    return matches[0]


def from_directory(directory: Path) -> TestbedArtifacts:
    if not directory.is_dir():
        raise TestbedArtifactsError(
            f"{ENV_VAR}={directory} is not a directory; unset it or point it at one"
        )
    docker = _one(directory, f"docker-{DOCKER_VERSION}.tgz", "Docker static tarball")
    sysbox = _one(directory, f"sysbox-ce_{SYSBOX_VERSION}*_amd64.deb", "sysbox-ce package")
    files = [File(p, sha256_of(p)) for p in (docker, sysbox)]
    for file in files:
        host_artifacts.verify(
            HostArtifact(file.path.name, "", str(file.path), file.sha256),
            file.path,
            f"{ENV_VAR} file {file.path}",
        )
    return TestbedArtifacts("directory", str(directory), files[0], files[1])


def official_artifacts() -> list[HostArtifact]:
    docker = DOCKER_VERSIONS[DOCKER_VERSION][ARCH]
    sysbox = SYSBOX_VERSIONS[SYSBOX_VERSION][ARCH]
    return [
        HostArtifact("docker", DOCKER_VERSION, docker.url, str(docker.sha256)),
        HostArtifact("sysbox", SYSBOX_VERSION, sysbox.url, str(sysbox.sha256)),
    ]


def official_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """True when both official download sites answer a HEAD request."""
    for artifact in official_artifacts():
        request = urllib.request.Request(artifact.url, method="HEAD")  # noqa: S310 - https pins
        try:
            with urllib.request.urlopen(request, timeout=timeout):  # noqa: S310
                pass
        except (urllib.error.URLError, OSError, ValueError):
            return False
    return True


def from_official() -> TestbedArtifacts:
    docker, sysbox = (File(host_artifacts.local_copy(a), a.sha256) for a in official_artifacts())
    return TestbedArtifacts("official", "the official sites", docker, sysbox)


def from_standins() -> TestbedArtifacts:
    built = build_standins(os.environ.get("DOCKYARD_TEST_SUITE", "trixie"))
    return TestbedArtifacts(
        "standin",
        str(built.docker.path.parent),
        File(built.docker.path, built.docker.sha256),
        File(built.sysbox.path, built.sysbox.sha256),
    )


def choose(environ: dict[str, str] | None = None) -> TestbedArtifacts:
    """The artifacts the test bed uses, in the documented order."""
    env = os.environ if environ is None else environ
    configured = env.get(ENV_VAR, "").strip()
    if configured:
        return from_directory(Path(configured).expanduser().resolve())
    if official_reachable():
        return from_official()
    return from_standins()


def link(chosen: TestbedArtifacts, directory: Path | None = None) -> dict[str, Path]:
    """Point the fixed test-bed names at the chosen files (symlink + `.sha256` sidecar)."""
    target_dir = directory or testbed_dir()
    target_dir.mkdir(parents=True, exist_ok=True)
    made = {}
    for name, file in ((DOCKER_LINK, chosen.docker), (SYSBOX_LINK, chosen.sysbox)):
        path = target_dir / name
        tmp = target_dir / f".{name}.tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(file.path)
        os.replace(tmp, path)
        sidecar = target_dir / f"{name}.sha256"
        sidecar_tmp = target_dir / f".{name}.sha256.tmp"
        sidecar_tmp.write_text(f"{file.sha256}  {name}\n")
        os.replace(sidecar_tmp, sidecar)
        made[name] = path
    (target_dir / "source.json").write_text(json.dumps(chosen.as_dict(), indent=2) + "\n")
    return made


def prepare() -> TestbedArtifacts:
    """Choose, link, and say which artifacts the test bed uses."""
    chosen = choose()
    link(chosen)
    return chosen


def main() -> None:
    chosen = prepare()
    print(f"testbed artifacts: {chosen.describe()}", file=sys.stderr)
    print(json.dumps(chosen.as_dict(), indent=2))


if __name__ == "__main__":
    main()
