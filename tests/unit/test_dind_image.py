"""The DinD test image tooling without building it: cache keys, import command, stripping, tar."""

from __future__ import annotations

import json
import os
import shlex
import struct
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tools.testimage import dind_image
from tools.testimage.dind_image import (
    CHANGES,
    KEEP_PATHS,
    PACKAGES,
    STRIP_PACKAGES,
    STRIP_PATHS,
    TAG,
    DindImageError,
    build_dind_image,
    cache_key,
    has_interpreter,
    import_command,
    main,
    parse_args,
    strip_rootfs,
    write_tar,
)


def test_cache_key_names_the_suite_and_is_stable() -> None:
    key = cache_key("trixie")
    assert key == cache_key("trixie")
    prefix, digest = key.rsplit("-", 1)
    assert prefix == "dind-trixie"
    assert len(digest) == 16
    int(digest, 16)


@pytest.mark.parametrize(
    "changed",
    [
        {"packages": (*PACKAGES, "iproute2")},
        {"strip_packages": STRIP_PACKAGES[:-1]},
        {"strip_paths": (*STRIP_PATHS, "usr/share/terminfo")},
        {"keep_paths": KEEP_PATHS[1:]},
    ],
)
def test_cache_key_changes_with_every_input(changed: dict[str, tuple[str, ...]]) -> None:
    assert cache_key("trixie", **changed) != cache_key("trixie")


def test_cache_key_ignores_the_order_of_lists() -> None:
    assert cache_key("trixie", packages=tuple(reversed(PACKAGES))) == cache_key("trixie")


def test_cache_key_follows_the_builder_version(monkeypatch: pytest.MonkeyPatch) -> None:
    before = cache_key("trixie")
    monkeypatch.setattr(dind_image, "BUILDER_VERSION", "test")
    assert cache_key("trixie") != before


def test_import_command_quotes_values_and_applies_every_change() -> None:
    command = import_command("/dy 1/bin/docker", "/var/tmp/my image.tar")
    argv = shlex.split(command)
    assert argv[:2] == ["/dy 1/bin/docker", "import"]
    assert argv[-2:] == ["/var/tmp/my image.tar", TAG]
    changes = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--change"]
    assert changes == list(CHANGES)
    assert "'CMD [\"dockerd\"]'" in command


def test_import_command_takes_another_tag() -> None:
    assert shlex.split(import_command("docker", "x.tar", tag="a/b:c"))[-1] == "a/b:c"


def test_tag_names_docker_26_1() -> None:
    assert TAG == "dockyard-test/dind:26.1"
    assert 'CMD ["dockerd"]' in CHANGES
    assert any(change.startswith("ENV PATH=") for change in CHANGES)


def test_cli_arguments() -> None:
    assert parse_args([]).suite == "trixie"
    assert parse_args(["--suite", "trixie", "--quiet"]).quiet is True
    with pytest.raises(SystemExit):
        parse_args(["--suite", "bookworm"])


def test_unsupported_suite_is_refused() -> None:
    with pytest.raises(ValueError, match="not supported"):
        build_dind_image("bookworm")


def _fake_cache(root: Path, *, size: int = 5) -> Path:
    out = root / "testimages"
    out.mkdir(parents=True)
    key = cache_key("trixie")
    (out / f"{key}.tar").write_bytes(b"x" * size)
    (out / f"{key}.json").write_text(json.dumps({"sha256": "ab" * 32, "sizeBytes": 5}))
    return out / f"{key}.tar"


def test_a_cached_tar_is_returned_without_building(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKYARD_CACHE", str(tmp_path))
    tar = _fake_cache(tmp_path)
    monkeypatch.setattr(dind_image, "_build", _no_build)
    built = build_dind_image()
    assert (built.path, built.sha256, built.size_bytes) == (tar, "ab" * 32, 5)
    assert (built.tag, built.changes, built.built) == (TAG, CHANGES, False)


def test_cli_prints_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DOCKYARD_CACHE", str(tmp_path))
    tar = _fake_cache(tmp_path)
    main(["--quiet"])
    printed = json.loads(capsys.readouterr().out)
    assert printed == {
        "path": str(tar),
        "sha256": "ab" * 32,
        "tag": TAG,
        "sizeBytes": 5,
        "built": False,
    }


def test_a_truncated_tar_is_not_taken_from_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKYARD_CACHE", str(tmp_path))
    _fake_cache(tmp_path, size=3)
    monkeypatch.setattr(dind_image, "_build", _no_build)
    with pytest.raises(AssertionError, match="would build"):
        build_dind_image()


def _no_build(*args: object, **kwargs: object) -> None:
    raise AssertionError("would build")


def test_building_needs_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKYARD_CACHE", str(tmp_path))
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(DindImageError, match="needs root"):
        build_dind_image(log=False)


def _elf(program_header_type: int) -> bytes:
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", header, 32, 64)  # e_phoff
    struct.pack_into("<HH", header, 54, 56, 1)  # e_phentsize, e_phnum
    return bytes(header) + struct.pack("<I", program_header_type) + bytes(52)


def test_has_interpreter(tmp_path: Path) -> None:
    dynamic, static, text = tmp_path / "dynamic", tmp_path / "static", tmp_path / "script"
    dynamic.write_bytes(_elf(3))
    static.write_bytes(_elf(1))
    text.write_text("#!/bin/sh\necho hi\n" * 10)
    assert has_interpreter(dynamic)
    assert not has_interpreter(static)
    assert not has_interpreter(text)


def _rootfs(tmp_path: Path) -> Path:
    rootfs = tmp_path / "rootfs"
    info = rootfs / "var/lib/dpkg/info"
    info.mkdir(parents=True)
    (info / "dpkg.list").write_text(
        "/.\n/usr\n/usr/bin\n/usr/bin/dpkg\n/usr/bin/update-alternatives\n"
        "/usr/share/dpkg\n/usr/share/dpkg/cputable\n"
    )
    for name in ("usr/bin/dpkg", "usr/bin/update-alternatives", "usr/share/dpkg/cputable"):
        (rootfs / name).parent.mkdir(parents=True, exist_ok=True)
        (rootfs / name).write_text(name)
    (rootfs / "usr/bin/dockerd").write_text("dockerd")
    (rootfs / "var/lib/dpkg/alternatives").mkdir()
    (rootfs / "var/lib/dpkg/status").write_text("")
    (rootfs / "usr/share/doc/docker.io").mkdir(parents=True)
    return rootfs


def test_strip_removes_package_files_and_paths_but_keeps_keep_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rootfs = _rootfs(tmp_path)
    monkeypatch.setattr(dind_image, "STRIP_PACKAGES", ("dpkg",))
    strip_rootfs(rootfs)
    assert (rootfs / "usr/bin/update-alternatives").is_file()
    assert (rootfs / "var/lib/dpkg/alternatives").is_dir()
    assert (rootfs / "usr/bin/dockerd").is_file()
    assert not (rootfs / "usr/bin/dpkg").exists()
    assert not (rootfs / "usr/share/dpkg").exists()  # emptied package directory
    assert not (rootfs / "var/lib/dpkg/status").exists()
    assert not (rootfs / "usr/share/doc/docker.io").exists()
    assert (rootfs / "usr/share/doc").is_dir()


def test_strip_refuses_a_package_that_is_not_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dind_image, "STRIP_PACKAGES", ("no-such-package",))
    with pytest.raises(DindImageError, match="not installed"):
        strip_rootfs(_rootfs(tmp_path))


def test_strip_never_follows_a_symlink_out_of_the_rootfs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rootfs = _rootfs(tmp_path)
    outside = tmp_path / "host-share"
    outside.mkdir()
    (outside / "precious").write_text("keep me")
    (rootfs / "usr/share/dpkg/cputable").unlink()
    (rootfs / "usr/share/dpkg").rmdir()
    (rootfs / "usr/share/dpkg").symlink_to(outside)
    (rootfs / "var/lib/dpkg/info/dpkg.list").write_text("/usr/share/dpkg/precious\n")
    monkeypatch.setattr(dind_image, "STRIP_PACKAGES", ("dpkg",))
    with pytest.raises(DindImageError, match="outside"):
        strip_rootfs(rootfs)
    assert (outside / "precious").read_text() == "keep me"


def test_tar_is_sorted_with_fixed_mtime_and_empty_dev(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    for directory in ("usr/sbin", "dev", "proc/1", "sys/kernel", "etc"):
        (rootfs / directory).mkdir(parents=True)
    (rootfs / "usr/sbin/dockerd").write_text("dockerd")
    (rootfs / "usr/sbin/dockerd").chmod(0o755)
    (rootfs / "dev/null").write_text("not a device here")
    (rootfs / "bin").symlink_to("usr/bin")
    (rootfs / "etc/b").write_text("b")
    (rootfs / "etc/a").write_text("a")
    target = tmp_path / "image.tar"
    write_tar(rootfs, target)
    with tarfile.open(target) as tar:
        members = tar.getmembers()
    names = [member.name for member in members]
    assert names == [
        ".",
        "./bin",
        "./dev",
        "./etc",
        "./etc/a",
        "./etc/b",
        "./proc",
        "./sys",
        "./usr",
        "./usr/sbin",
        "./usr/sbin/dockerd",
    ]
    by_name = {member.name: member for member in members}
    assert by_name["./bin"].issym() and by_name["./bin"].linkname == "usr/bin"
    assert by_name["./usr/sbin/dockerd"].mode == 0o755
    assert {member.mtime for member in members} == {dind_image.SOURCE_DATE_EPOCH}


def test_tar_failure_is_reported(tmp_path: Path) -> None:
    with pytest.raises(DindImageError, match="tar failed"):
        write_tar(tmp_path / "missing", tmp_path / "image.tar")


def test_module_runs_as_a_script_help() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.testimage.dind_image",
            "--help",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert "--suite" in proc.stdout
