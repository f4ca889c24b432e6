"""Resolve a host's `docker:` / `sysbox:` entry against the known version table.

Overrides describe the file for the host's own architecture (a host has one):
`url` replaces the table's URL (placeholders `{version}`, `{arch}`, `{debArch}` are filled
per architecture), `sha256` / `sha256File` replace the table's checksum. A URL override alone
keeps the table's checksum, so a plain mirror needs no new pin.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

from packaging.version import InvalidVersion, Version

from dockyard_resources.config import values
from dockyard_resources.config.models import ArtifactConfig, ArtifactsMode
from dockyard_resources.config.spec import ArchArtifact, ResolvedArtifact
from dockyard_resources.config.urls import public_url
from dockyard_resources.config.versions import (
    ARCHES,
    DEB_ARCH,
    DEFAULT_VERSIONS,
    DISPLAY_NAMES,
    KNOWN_VERSIONS,
    Arch,
    ArtifactKind,
)

_PLACEHOLDER_RE: Final = re.compile(r"\{([^{}]*)\}")
_PLACEHOLDERS: Final = ("version", "arch", "debArch")


def _sort_key(version: str) -> tuple[int, Version | str]:
    try:
        return (0, Version(version))
    except InvalidVersion:
        return (1, version)


def known_versions(kind: ArtifactKind) -> list[str]:
    return sorted(KNOWN_VERSIONS[kind], key=_sort_key)


def _fill(url: str, version: str, arch: Arch) -> str:
    filled = {"version": version, "arch": arch, "debArch": DEB_ARCH[arch]}
    return _PLACEHOLDER_RE.sub(lambda m: filled[m.group(1)], url)


def _check_url(url: str, mode: ArtifactsMode) -> str | None:
    """The problem with an override URL, or None."""
    unknown = [p for p in _PLACEHOLDER_RE.findall(url) if p not in _PLACEHOLDERS]
    if unknown:
        return (
            f"{public_url(url)!r} uses unknown placeholder {{{unknown[0]}}}; only {{version}},"
            " {arch} (x86_64/aarch64) and {debArch} (amd64/arm64) are filled in"
        )
    try:
        values.artifact_location(url, mode)
    except ValueError as exc:
        return str(exc)
    return None


def _read_sha256_file(name: str, path: str, base_dir: Path) -> tuple[str | None, str | None]:
    """(sha256, problem) from a file whose first token is the checksum."""
    file = Path(name).expanduser()
    if not file.is_absolute():
        file = base_dir / file
    create = (
        f"create it with `sha256sum ARTIFACT > {name}` (the first word is the checksum)"
        f" or set {path}.sha256 instead"
    )
    try:
        text = file.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None, f"{name!r} does not exist (looked at {file}); {create}"
    except OSError as exc:
        return None, f"{name!r} cannot be read ({exc.strerror or exc}); {create}"
    tokens = text.split()
    if not tokens:
        return None, f"{name!r} is empty; {create}"
    try:
        return values.sha256_hex(tokens[0]), None
    except ValueError:
        return None, (f"{name!r} does not start with a sha256 (found {tokens[0][:70]!r}); {create}")


def resolve_artifact(
    config: ArtifactConfig,
    kind: ArtifactKind,
    mode: ArtifactsMode,
    path: str,
    base_dir: Path,
) -> tuple[ResolvedArtifact | None, list[str]]:
    """The artifact of one host, or None and every problem found (as `key.path: message`)."""
    errors: list[str] = []
    version = config.version or DEFAULT_VERSIONS[kind]
    sha256 = config.sha256
    if config.sha256_file is not None:
        if config.sha256 is not None:
            errors.append(f"{path}.sha256File: set either sha256 or sha256File, not both")
        else:
            sha256, problem = _read_sha256_file(config.sha256_file, path, base_dir)
            if problem:
                errors.append(f"{path}.sha256File: {problem}")
    if config.url is not None:
        problem = _check_url(config.url, mode)
        if problem:
            errors.append(f"{path}.url: {problem}")

    known = KNOWN_VERSIONS[kind].get(version)
    if known is None and (config.url is None or (sha256 is None and config.sha256_file is None)):
        missing = " and ".join(
            k
            for k, v in (("url", config.url), ("sha256", sha256 or config.sha256_file))
            if v is None
        )
        errors.append(
            f"{path}.version: {version!r} is not a known {DISPLAY_NAMES[kind]} version (known:"
            f" {', '.join(known_versions(kind))}); pick a known version, or give {missing}"
            " (or sha256File) for this one"
        )
    if errors:
        return None, errors

    by_arch: dict[Arch, ArchArtifact] = {}
    for arch in ARCHES:
        table = known.get(arch) if known else None
        url = config.url if config.url is not None else (table.url if table else None)
        if url is None:
            continue
        pin = sha256 if sha256 is not None else (table.sha256 if table else None)
        by_arch[arch] = ArchArtifact(url=_fill(url, version, arch), sha256=pin)
    return ResolvedArtifact(kind=kind, version=version, by_arch=by_arch, path=path), []
