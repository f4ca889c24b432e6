"""Check the pinned sha256 of each official Docker and sysbox file against the file itself.

The pins in `dockyard_resources/config/versions.py` come from independent public sources;
the files cannot be downloaded from the machines that build Dockyard. Wherever the official
files are at hand, this hashes them:

- `$DOCKYARD_OFFICIAL_ARTIFACTS/<file name>` (a directory holding the official downloads
  under their own names, e.g. docker-29.2.1.tgz; two architectures of Docker share that name,
  so `<arch>/docker-29.2.1.tgz` is looked at first);
- `${DOCKYARD_CACHE}/artifacts/<sha256>`: what `artifacts: upload` fetched and kept.

    .venv/bin/python -m tools.official_pins   # exit 1 on a mismatch

`tests/unit/test_official_pins.py` runs the same check and says plainly which files it could
not find.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from dockyard_resources.config.spec import ArchArtifact
from dockyard_resources.config.versions import KNOWN_VERSIONS, Arch, ArtifactKind, KnownArtifact
from dockyard_resources.hostops.artifacts import local_cache_dir, sha256_file

ENV_VAR = "DOCKYARD_OFFICIAL_ARTIFACTS"

Table = Mapping[ArtifactKind, Mapping[str, Mapping[Arch, KnownArtifact]]]


@dataclass(frozen=True)
class Pin:
    kind: ArtifactKind
    version: str
    arch: Arch
    url: str
    sha256: str

    @property
    def filename(self) -> str:
        return ArchArtifact(self.url, self.sha256).filename

    def __str__(self) -> str:
        return f"{self.kind} {self.version} {self.arch} ({self.filename})"


@dataclass(frozen=True)
class Verdict:
    pin: Pin
    status: Literal["match", "mismatch", "missing"]
    looked_at: tuple[Path, ...]
    path: Path | None = None
    actual: str | None = None
    # False: $DOCKYARD_OFFICIAL_ARTIFACTS was not set, so only the cache was looked at.
    directory_set: bool = True

    def describe(self) -> str:
        if self.status == "missing":
            unset = "" if self.directory_set else f" (${ENV_VAR} is not set)"
            return (
                f"{self.pin}: not available offline; looked at"
                f" {', '.join(str(p) for p in self.looked_at)}{unset}. Put the official"
                f" {self.pin.url} in ${ENV_VAR} (or its {self.pin.arch}/) to check its pin"
            )
        if self.status == "mismatch":
            return (
                f"{self.pin}: MISMATCH: {self.path} has sha256 {self.actual}, the pin is"
                f" {self.pin.sha256}"
            )
        return f"{self.pin}: {self.path} matches the pin"


def pins(table: Table = KNOWN_VERSIONS) -> list[Pin]:
    """Every pinned file of the table."""
    return [
        Pin(kind, version, arch, known.url, known.sha256)
        for kind, versions in table.items()
        for version, by_arch in versions.items()
        for arch, known in by_arch.items()
        if known.sha256 is not None
    ]


def places(pin: Pin, environ: Mapping[str, str]) -> list[Path]:
    """Where the official file of `pin` may be, most specific first."""
    found = []
    directory = environ.get(ENV_VAR, "").strip()
    if directory:
        root = Path(directory).expanduser()
        found += [root / pin.arch / pin.filename, root / pin.filename]
    found.append(local_cache_dir() / pin.sha256)
    return found


def verify(pin: Pin, environ: Mapping[str, str], table_pins: Sequence[Pin] = ()) -> Verdict:
    """Hash the files found for `pin`, most specific first. One that is another pinned file
    (Docker's aarch64 tarball has the x86_64 one's name) is passed over; any other file is
    a mismatch (a local build of the same name, a corrupt download), never a pass."""
    looked_at = tuple(places(pin, environ))
    others = {other.sha256 for other in table_pins if other != pin}
    for path in looked_at:
        if not path.is_file():
            continue
        actual = sha256_file(path)
        if actual == pin.sha256:
            return Verdict(pin, "match", looked_at, path, actual)
        if actual not in others:
            return Verdict(pin, "mismatch", looked_at, path, actual)
    return Verdict(pin, "missing", looked_at, directory_set=bool(environ.get(ENV_VAR, "").strip()))


def main() -> int:
    table_pins = pins()
    verdicts = [verify(pin, os.environ, table_pins) for pin in table_pins]
    for verdict in verdicts:
        print(verdict.describe())
    return 1 if any(v.status == "mismatch" for v in verdicts) else 0


if __name__ == "__main__":
    sys.exit(main())
