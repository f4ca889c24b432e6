"""Each pinned sha256 against the official file, wherever one is at hand offline.

None of the official downloads can be fetched on the machines that build Dockyard: then each
pin is skipped with a reason naming the file and where it was looked for (never a silent
pass). That the check really hashes a file is shown with a temporary file and table.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from dockyard_resources.config.versions import KnownArtifact
from tools.official_pins import ENV_VAR, Pin, Table, pins, verify

PINS = pins()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty download cache, so only the files a test writes are found."""
    monkeypatch.setenv("DOCKYARD_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_every_architecture_of_the_defaults_is_pinned() -> None:
    assert {(p.kind, p.version, p.arch) for p in PINS} == {
        ("docker", "29.2.1", "x86_64"),
        ("docker", "29.2.1", "aarch64"),
        ("sysbox", "0.6.7", "x86_64"),
        ("sysbox", "0.6.7", "aarch64"),
    }


@pytest.mark.parametrize("pin", PINS, ids=[f"{p.kind}-{p.version}-{p.arch}" for p in PINS])
def test_pinned_sha256_matches_the_official_file(pin: Pin) -> None:
    verdict = verify(pin, os.environ, PINS)
    if verdict.status == "missing":
        pytest.skip(verdict.describe())
    assert verdict.status == "match", verdict.describe()


def table_of(url: str, sha256: str) -> Table:
    return {"docker": {"29.2.1": {"x86_64": KnownArtifact(url=url, sha256=sha256)}}}


@pytest.mark.usefixtures("cache")
def test_the_check_hashes_the_file_it_finds(tmp_path: Path) -> None:
    content = b"not really docker"
    (tmp_path / "docker-29.2.1.tgz").write_bytes(content)
    url = "https://download.docker.com/linux/static/stable/x86_64/docker-29.2.1.tgz"
    environ = {ENV_VAR: str(tmp_path)}

    [right] = pins(table_of(url, hashlib.sha256(content).hexdigest()))
    verdict = verify(right, environ)
    assert (verdict.status, verdict.path) == ("match", tmp_path / "docker-29.2.1.tgz")

    [wrong] = pins(table_of(url, "0" * 64))
    verdict = verify(wrong, environ)
    assert verdict.status == "mismatch"
    assert verdict.actual == hashlib.sha256(content).hexdigest()
    assert "MISMATCH" in verdict.describe()


@pytest.mark.usefixtures("cache")
def test_another_architectures_file_of_the_same_name_is_passed_over(tmp_path: Path) -> None:
    x86, arm = b"x86_64 tarball", b"aarch64 tarball"
    (tmp_path / "docker-29.2.1.tgz").write_bytes(x86)
    (tmp_path / "aarch64").mkdir()
    both = [
        Pin("docker", "29.2.1", "x86_64", "https://d/x86_64/docker-29.2.1.tgz", _sha(x86)),
        Pin("docker", "29.2.1", "aarch64", "https://d/aarch64/docker-29.2.1.tgz", _sha(arm)),
    ]
    environ = {ENV_VAR: str(tmp_path)}
    assert verify(both[0], environ, both).status == "match"
    assert verify(both[1], environ, both).status == "missing"
    (tmp_path / "aarch64" / "docker-29.2.1.tgz").write_bytes(arm)
    assert verify(both[1], environ, both).status == "match"


def test_a_missing_file_says_where_it_was_looked_for(tmp_path: Path, cache: Path) -> None:
    [pin] = pins(table_of("https://d/x86_64/docker-29.2.1.tgz", "1" * 64))
    verdict = verify(pin, {ENV_VAR: str(tmp_path)})
    assert verdict.status == "missing"
    text = verdict.describe()
    assert text.startswith("docker 29.2.1 x86_64 (docker-29.2.1.tgz): not available offline")
    assert str(tmp_path / "x86_64" / "docker-29.2.1.tgz") in text
    assert str(cache / "artifacts" / ("1" * 64)) in text
    assert f"${ENV_VAR}" in text
    unset = verify(pin, {}).describe()
    assert f"(${ENV_VAR} is not set)" in unset


def _sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def test_a_download_kept_in_the_cache_is_hashed_too(cache: Path) -> None:
    content = b"fetched once by artifacts: upload"
    [pin] = pins(table_of("https://d/x86_64/docker-29.2.1.tgz", _sha(content)))
    (cache / "artifacts").mkdir(parents=True)
    (cache / "artifacts" / pin.sha256).write_bytes(content)
    assert verify(pin, {}).status == "match"
    (cache / "artifacts" / pin.sha256).write_bytes(b"truncated")
    assert verify(pin, {}).status == "mismatch"
