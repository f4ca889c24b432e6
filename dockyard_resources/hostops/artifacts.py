"""Artifacts on the machine running Pulumi: fetch, verify by sha256, upload to a host.

Download mode needs nothing here (the host fetches and verifies with curl + sha256sum in the
install script); upload mode reads a local path or fetches an http(s) URL locally, checks the
sha256 BEFORE anything reaches the host, and sends the file over SSH.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from dockyard_resources.config.urls import secret_parts
from dockyard_resources.errors import DockyardError
from dockyard_resources.paths import cache_root
from dockyard_resources.render.sysbox_host import Artifact, staging_script, upload_path
from dockyard_resources.transport import OnLine, SshSession
from dockyard_resources.transport.masking import mask, mask_pieces

_CHUNK = 1 << 20


class ArtifactError(DockyardError):
    """An artifact is missing, unreachable or not the file its sha256 names."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify(artifact: Artifact, path: Path, origin: str) -> None:
    actual = sha256_file(path)
    if actual != artifact.sha256:
        raise ArtifactError(
            f"{artifact.name} artifact: sha256 mismatch: expected {artifact.sha256}, got {actual} "
            f"({origin}); nothing was installed"
        )


def local_cache_dir() -> Path:
    return cache_root() / "artifacts"


@retry(
    retry=retry_if_exception_type(OSError),
    stop=stop_after_attempt(4),
    wait=wait_exponential(multiplier=2, max=20),
    reraise=True,
)
def _fetch(url: str, dest: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:  # noqa: S310 - scheme checked by the caller
            while chunk := resp.read(_CHUNK):
                out.write(chunk)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def local_copy(artifact: Artifact) -> Path:
    """A verified local file for the artifact: the path itself, or a cached download."""
    scheme = urllib.parse.urlparse(artifact.url).scheme
    if scheme in ("http", "https"):
        dest = local_cache_dir() / artifact.sha256
        if dest.is_file() and sha256_file(dest) == artifact.sha256:
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            _fetch(artifact.url, dest)
        except OSError as exc:
            reason = mask(str(exc), mask_pieces(secret_parts(artifact.url)))
            raise ArtifactError(
                f"{artifact.name} artifact: cannot fetch {artifact.shown_url}: {reason}"
            ) from None
        try:
            verify(artifact, dest, f"fetched from {artifact.shown_url}")
        except ArtifactError:
            dest.unlink(missing_ok=True)
            raise
        return dest
    path = Path(artifact.url.removeprefix("file://")).expanduser()
    if not path.is_file():
        raise ArtifactError(f"{artifact.name} artifact: {path} is not a file on this machine")
    verify(artifact, path, f"local file {path}")
    return path


def upload_missing(
    session: SshSession,
    artifacts: list[Artifact],
    cached: set[str],
    on_line: OnLine | None = None,
) -> list[str]:
    """Upload each artifact the host's cache lacks; returns what was sent. `on_line` gets
    the staging script's output (what it had to replace).

    Every file is verified locally first, so a wrong sha256 sends nothing at all. The files
    are staged in a directory the staging script makes root's alone first; the install
    script verifies them again on the host, where they are unpacked from.
    """
    missing = [(a, local_copy(a)) for a in artifacts if a.sha256 not in cached]
    if missing:
        shas = tuple(artifact.sha256 for artifact, _ in missing)
        session.run(
            staging_script(shas),
            step="prepare the upload directory",
            timeout=1200,
            on_line=on_line,
        )
    for artifact, path in missing:
        session.upload(path, upload_path(artifact.sha256), 0o600)
    return [f"{artifact.name} ({artifact.shown_url})" for artifact, _ in missing]
