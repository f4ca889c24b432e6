"""The test bed's choice of artifacts: directory, else official downloads, else stand-ins."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tools.testbed import artifacts as testbed


def _write(directory: Path, name: str, data: bytes, sidecar: str | None = None) -> str:
    path = directory / name
    path.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    (directory / f"{name}.sha256").write_text(f"{sidecar or sha}  {name}\n")
    return sha


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    directory = tmp_path / "artifacts"
    directory.mkdir()
    _write(directory, "docker-29.2.1.tgz", b"docker tarball")
    _write(directory, "sysbox-ce_0.6.7-0.linux_amd64.deb", b"sysbox package")
    return directory


def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(timeout: float = 0) -> bool:
        return False

    monkeypatch.setattr(testbed, "official_reachable", unreachable)


def test_the_environment_variable_wins(shared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_probe(timeout: float = 0) -> bool:
        raise AssertionError("the official sites must not be asked when the variable is set")

    monkeypatch.setattr(testbed, "official_reachable", must_not_probe)
    chosen = testbed.choose({testbed.ENV_VAR: str(shared)})
    assert chosen.source == "directory" and chosen.real_sysbox
    assert chosen.docker.path == shared / "docker-29.2.1.tgz"
    assert chosen.docker.sha256 == hashlib.sha256(b"docker tarball").hexdigest()
    assert chosen.sysbox.path == shared / "sysbox-ce_0.6.7-0.linux_amd64.deb"
    assert str(shared) in chosen.describe()


def test_a_sidecar_that_does_not_match_its_file_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, "docker-29.2.1.tgz", b"docker tarball", sidecar="0" * 64)
    _write(tmp_path, "sysbox-ce_0.6.7-0.linux_amd64.deb", b"sysbox package")
    with pytest.raises(Exception, match="sha256 mismatch"):
        testbed.choose({testbed.ENV_VAR: str(tmp_path)})


def test_a_directory_without_the_files_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(testbed.TestbedArtifactsError, match=testbed.ENV_VAR):
        testbed.choose({testbed.ENV_VAR: str(tmp_path)})
    with pytest.raises(testbed.TestbedArtifactsError, match="is not a directory"):
        testbed.choose({testbed.ENV_VAR: str(tmp_path / "missing")})


def test_official_downloads_when_reachable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(testbed, "official_reachable", lambda timeout=0: True)
    fetched: list[str] = []

    def local_copy(artifact: testbed.HostArtifact) -> Path:
        fetched.append(artifact.url)
        return tmp_path / artifact.name

    monkeypatch.setattr(testbed.host_artifacts, "local_copy", local_copy)
    chosen = testbed.choose({})
    assert chosen.source == "official"
    assert fetched == [a.url for a in testbed.official_artifacts()]
    assert all(url.startswith("https://") for url in fetched)


def test_stand_ins_last_and_labelled(monkeypatch: pytest.MonkeyPatch, shared: Path) -> None:
    _no_network(monkeypatch)
    made = testbed.TestbedArtifacts(
        "standin", "x", testbed.File(shared / "a", "1" * 64), testbed.File(shared / "b", "2" * 64)
    )
    monkeypatch.setattr(testbed, "from_standins", lambda: made)
    chosen = testbed.choose({})
    assert chosen.source == "standin" and not chosen.real_sysbox
    assert "STAND-IN" in chosen.describe() and "WITHOUT isolation" in chosen.describe()


def test_link_points_the_stack_file_paths_at_the_choice(shared: Path, tmp_path: Path) -> None:
    chosen = testbed.from_directory(shared)
    target = tmp_path / "testbed"
    links = testbed.link(chosen, target)
    docker = links[testbed.DOCKER_LINK]
    assert docker.resolve() == chosen.docker.path.resolve()
    sidecar = (target / f"{testbed.DOCKER_LINK}.sha256").read_text().split()
    assert sidecar == [chosen.docker.sha256, testbed.DOCKER_LINK]
    # Linking again (another choice) replaces the links.
    testbed.link(chosen, target)
    assert links[testbed.SYSBOX_LINK].resolve() == chosen.sysbox.path.resolve()


def test_the_testbed_stack_file_names_the_linked_paths() -> None:
    stack = (Path(__file__).resolve().parents[2] / "stacks" / "Pulumi.testbed.yaml").read_text()
    for name in (testbed.DOCKER_LINK, testbed.SYSBOX_LINK):
        assert f"~/.cache/dockyard/testbed/{name}" in stack
        assert f"~/.cache/dockyard/testbed/{name}.sha256" in stack
