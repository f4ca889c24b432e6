"""Docker and sysbox versions: the known table, overrides, sha256 files and resource props."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dockyard_resources.config import ConfigError, HostSpec, resolve_artifacts, validate_hosts
from tests.unit.config_builders import host

DOCKER_X86 = "https://download.docker.com/linux/static/stable/x86_64/docker-29.2.1.tgz"
DOCKER_X86_SHA = "995b1d0b51e96d551a3b49c552c0170bc6ce9f8b9e0866b8c15bbc67d1cf93a3"
DOCKER_ARM = "https://download.docker.com/linux/static/stable/aarch64/docker-29.2.1.tgz"
DOCKER_ARM_SHA = "236c5064473295320d4bf732fbbfc5b11b6b2dc446e8bc7ebb9222015fb36857"
SYSBOX = "https://downloads.nestybox.com/sysbox/releases/v0.6.7/sysbox-ce_0.6.7-0.linux_{}.deb"
SYSBOX_AMD64_SHA = "b7ac389e5a19592cadf16e0ca30e40919516128f6e1b7f99e1cb4ff64554172e"
SYSBOX_ARM64_SHA = "16d80123ba53058cf90f5a68686e297621ea97942602682e34b3352783908f91"
PIN = "ab" * 32


def one_host(tmp_path: Path | None = None, **extra: Any) -> HostSpec:
    [spec] = validate_hosts([host(**extra)], base_dir=tmp_path)
    return spec


def errors_of(tmp_path: Path | None = None, **extra: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        validate_hosts([host(**extra)], base_dir=tmp_path)
    return caught.value.errors


def test_default_versions_come_from_the_table() -> None:
    spec = one_host()
    assert spec.artifact_props("docker") == {
        "version": "29.2.1",
        "artifacts": {
            "x86_64": {"url": DOCKER_X86, "sha256": DOCKER_X86_SHA},
            "aarch64": {"url": DOCKER_ARM, "sha256": DOCKER_ARM_SHA},
        },
    }
    assert spec.artifact_props("sysbox") == {
        "version": "0.6.7",
        "artifacts": {
            "x86_64": {"url": SYSBOX.format("amd64"), "sha256": SYSBOX_AMD64_SHA},
            "aarch64": {"url": SYSBOX.format("arm64"), "sha256": SYSBOX_ARM64_SHA},
        },
    }
    assert resolve_artifacts(spec, "docker") == {
        "x86_64": {"url": DOCKER_X86, "sha256": DOCKER_X86_SHA, "filename": "docker-29.2.1.tgz"},
        "aarch64": {"url": DOCKER_ARM, "sha256": DOCKER_ARM_SHA, "filename": "docker-29.2.1.tgz"},
    }


def test_sha256_override_replaces_the_pins() -> None:
    spec = one_host(docker={"version": "29.2.1", "sha256": PIN.upper()})
    artifacts = spec.artifact_props("docker")["artifacts"]
    assert artifacts["aarch64"] == {
        "url": "https://download.docker.com/linux/static/stable/aarch64/docker-29.2.1.tgz",
        "sha256": PIN,
    }
    assert artifacts["x86_64"]["sha256"] == PIN


def test_url_override_alone_keeps_the_table_checksums() -> None:
    spec = one_host(sysbox={"url": "https://mirror.example/sysbox/{version}/{debArch}.deb"})
    assert spec.artifact_props("sysbox") == {
        "version": "0.6.7",
        "artifacts": {
            "x86_64": {
                "url": "https://mirror.example/sysbox/0.6.7/amd64.deb",
                "sha256": SYSBOX_AMD64_SHA,
            },
            "aarch64": {
                "url": "https://mirror.example/sysbox/0.6.7/arm64.deb",
                "sha256": SYSBOX_ARM64_SHA,
            },
        },
    }


def test_unknown_version_needs_url_and_checksum() -> None:
    assert errors_of(docker={"version": "29.9.9"}) == [
        "hosts[0].docker.version: '29.9.9' is not a known Docker version (known: 29.2.1);"
        " pick a known version, or give url and sha256 (or sha256File) for this one"
    ]
    assert errors_of(sysbox={"version": "0.7.0", "url": "https://m.example/s.deb"}) == [
        "hosts[0].sysbox.version: '0.7.0' is not a known sysbox version (known: 0.6.7);"
        " pick a known version, or give sha256 (or sha256File) for this one"
    ]
    spec = one_host(
        sysbox={"version": "0.7.0", "url": "https://m.example/{arch}.deb", "sha256": PIN}
    )
    assert spec.artifact_props("sysbox") == {
        "version": "0.7.0",
        "artifacts": {
            "x86_64": {"url": "https://m.example/x86_64.deb", "sha256": PIN},
            "aarch64": {"url": "https://m.example/aarch64.deb", "sha256": PIN},
        },
    }


def test_version_must_be_quoted_text() -> None:
    assert errors_of(docker={"version": 29.2}) == [
        'hosts[0].docker.version: 29.2 must be quoted so YAML keeps it as text, e.g. "29.2"'
    ]
    [error] = errors_of(docker={"version": "29 2"})
    assert error.startswith("hosts[0].docker.version: '29 2' is not a version")


def test_bad_sha256() -> None:
    [error] = errors_of(docker={"sha256": "abc"})
    assert error == (
        "hosts[0].docker.sha256: 'abc' is not a sha256; give the 64 hex digits printed by"
        " `sha256sum FILE`"
    )


def test_sha256_file_is_read_relative_to_the_base_dir(tmp_path: Path) -> None:
    (tmp_path / "standin.sha256").write_text(f"{PIN}  docker-standin.tgz\n")
    spec = one_host(
        tmp_path,
        artifacts="upload",
        docker={
            "version": "29.2.1-standin",
            "url": "~/x/docker.tgz",
            "sha256File": "standin.sha256",
        },
    )
    assert spec.artifact_props("docker")["artifacts"]["x86_64"] == {
        "url": "~/x/docker.tgz",
        "sha256": PIN,
    }


def test_sha256_file_problems_name_the_key_and_the_fix(tmp_path: Path) -> None:
    (tmp_path / "empty.sha256").write_text("")
    (tmp_path / "junk.sha256").write_text("not-a-checksum file\n")
    errors = validate_errors(
        tmp_path,
        [
            host("a", docker={"sha256File": "missing.sha256"}),
            host("b", docker={"sha256File": "empty.sha256"}),
            host("c", docker={"sha256File": "junk.sha256"}),
            host("d", docker={"sha256File": "junk.sha256", "sha256": PIN}),
        ],
    )
    missing = tmp_path / "missing.sha256"
    assert errors == [
        f"hosts[0].docker.sha256File: 'missing.sha256' does not exist (looked at {missing});"
        " create it with `sha256sum ARTIFACT > missing.sha256` (the first word is the"
        " checksum) or set hosts[0].docker.sha256 instead",
        "hosts[1].docker.sha256File: 'empty.sha256' is empty; create it with `sha256sum"
        " ARTIFACT > empty.sha256` (the first word is the checksum) or set"
        " hosts[1].docker.sha256 instead",
        "hosts[2].docker.sha256File: 'junk.sha256' does not start with a sha256 (found"
        " 'not-a-checksum'); create it with `sha256sum ARTIFACT > junk.sha256` (the first word"
        " is the checksum) or set hosts[2].docker.sha256 instead",
        "hosts[3].docker.sha256File: set either sha256 or sha256File, not both",
    ]


def validate_errors(base_dir: Path, raw_hosts: list[Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        validate_hosts(raw_hosts, base_dir=base_dir)
    return caught.value.errors


@pytest.mark.parametrize(
    ("mode", "url", "fragment"),
    [
        ("download", "/srv/docker.tgz", "is not an http(s) URL the host can download"),
        ("download", "~/docker.tgz", "set `artifacts: upload` on the host"),
        ("download", "ftp://m.example/d.tgz", "is not an http(s) URL"),
        ("upload", "docker.tgz", "is neither an http(s) URL nor an absolute or ~ path"),
        ("upload", "https://m.example/{os}.tgz", "uses unknown placeholder {os}"),
    ],
)
def test_url_override_rules(mode: str, url: str, fragment: str) -> None:
    [error] = errors_of(artifacts=mode, docker={"url": url})
    assert error.startswith(f"hosts[0].docker.url: {url!r} ")
    assert fragment in error


@pytest.mark.parametrize(
    ("mode", "url"),
    [
        ("download", "http://10.0.2.2:8080/docker.tgz"),
        ("upload", "https://m.example/docker.tgz"),
        ("upload", "/srv/artifacts/docker.tgz"),
        ("upload", "~/artifacts/docker.tgz"),
    ],
)
def test_url_override_accepted(mode: str, url: str) -> None:
    spec = one_host(artifacts=mode, docker={"url": url})
    assert spec.docker.by_arch["x86_64"].url == url
    assert spec.docker.by_arch["x86_64"].sha256 == DOCKER_X86_SHA
