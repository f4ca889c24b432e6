"""Artifact URLs with credentials (config/urls.py): what messages show of them, what is
masked, and that no message on the way (stack-file validation, the provider's check, the
local fetch of upload mode, progress lines) shows the user, password or signature.
tests/unit/test_sysbox_behaviour.py covers the host side (curl's argv, the script's lines);
tests/program/test_secrets_and_outputs.py the secret marking of the resource."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dockyard_resources.config.urls import has_credentials, public_url, secret_parts
from dockyard_resources.hostops import artifacts
from dockyard_resources.providers.sysbox_host import check_props
from dockyard_resources.render import sysbox_host as r
from dockyard_resources.transport.masking import mask, mask_pieces
from tests.unit.test_config_artifacts import errors_of
from tests.unit.test_sysbox_provider import inputs

SIGNED = "https://mirror.test/d/docker.tgz?X-Amz-Credential=AKIAEXAMPLE&X-Amz-Signature=5ec12e7"
WITH_USER = "https://ci-bot:s3cr3t-t0ken@mirror.test:8443/d/docker.tgz"
SECRETS = ("AKIAEXAMPLE", "5ec12e7", "s3cr3t-t0ken", "ci-bot")


@pytest.mark.parametrize(
    ("url", "shown", "secret"),
    [
        (SIGNED, "https://mirror.test/d/docker.tgz", True),
        (WITH_USER, "https://mirror.test:8443/d/docker.tgz", True),
        ("https://m.test/a.tgz#sig=abcd", "https://m.test/a.tgz", True),
        ("https://m.test/a.tgz?", "https://m.test/a.tgz", True),
        ("http://[fd00::1]:8080/a.tgz?token=abcd", "http://[fd00::1]:8080/a.tgz", True),
        ("https://download.docker.com/linux/static/stable/x86_64/docker-29.2.1.tgz", None, False),
        ("/srv/artifacts/sysbox.deb", None, False),
        ("~/artifacts/docker.tgz", None, False),
    ],
)
def test_public_url_and_credentials(url: str, shown: str | None, secret: bool) -> None:
    assert public_url(url) == (shown or url)
    assert has_credentials(url) is secret
    assert bool(secret_parts(url)) is secret


def test_secret_parts_mask_every_piece_of_an_echoed_url() -> None:
    pieces = mask_pieces([*secret_parts(SIGNED), *secret_parts(WITH_USER)])
    for line in (
        f"curl: (22) The requested URL returned error: 403 for {SIGNED}",
        f"fetching {WITH_USER} failed",
        "X-Amz-Credential=AKIAEXAMPLE&X-Amz-Signature=5ec12e7",
        "user ci-bot:s3cr3t-t0ken",
    ):
        masked = mask(line, pieces)
        for secret in SECRETS:
            assert secret not in masked, masked


@pytest.mark.parametrize(
    ("mode", "url"),
    [
        ("download", "https://ci-bot:s3cr3t-t0ken@mirror.test/docker tgz"),  # a space
        ("upload", "https://mirror.test/{os}.tgz?X-Amz-Signature=5ec12e7"),  # unknown {os}
        ("download", "ftp://ci-bot:s3cr3t-t0ken@mirror.test/docker.tgz"),  # not http(s)
    ],
)
def test_stack_file_errors_name_the_url_without_its_credentials(mode: str, url: str) -> None:
    [error] = errors_of(artifacts=mode, docker={"url": url})
    assert error.startswith("hosts[0].docker.url: ")
    assert public_url(url)[:40] in error
    for secret in SECRETS:
        assert secret not in error, error


def test_the_providers_check_names_the_url_without_its_credentials() -> None:
    news: dict[str, Any] = inputs()
    news["docker"]["artifacts"]["x86_64"]["url"] = "https://ci-bot:s3cr3t-t0ken@m.test/a b"
    problems = dict(check_props({}, news))
    message = problems["docker.artifacts.x86_64.url"]
    assert "https://m.test/a b" in message
    for secret in SECRETS:
        assert secret not in message


def test_upload_mode_fetch_errors_and_progress_show_the_url_without_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKYARD_CACHE", str(tmp_path / "cache"))
    artifact = r.Artifact("docker", "29.2.1", SIGNED, "a" * 64)

    def refused(url: str, dest: Path) -> None:
        raise OSError(f"HTTP Error 403: Forbidden ({url})")

    monkeypatch.setattr(artifacts, "_fetch", refused)
    with pytest.raises(artifacts.ArtifactError) as failed:
        artifacts.local_copy(artifact)
    message = str(failed.value)
    assert "cannot fetch https://mirror.test/d/docker.tgz: HTTP Error 403" in message
    for secret in SECRETS:
        assert secret not in message
    assert SIGNED not in repr(artifact)

    source = tmp_path / "docker.tgz"
    source.write_bytes(b"docker")
    local = r.Artifact("docker", "29.2.1", WITH_USER, artifacts.sha256_file(source))
    monkeypatch.setattr(artifacts, "local_copy", lambda _artifact: source)

    class Host:
        def run(self, *_a: object, **_k: object) -> None:
            return None

        def upload(self, *_a: object, **_k: object) -> None:
            return None

    sent = artifacts.upload_missing(Host(), [local], set())  # type: ignore[arg-type]
    assert sent == ["docker (https://mirror.test:8443/d/docker.tgz)"]
