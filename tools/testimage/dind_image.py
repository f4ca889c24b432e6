"""Docker-in-Docker test image: a small Debian rootfs tar for `docker import` (test tooling).

Tests that run Docker inside a sysbox container import this tar on the test host, offline.
It carries Debian trixie's docker.io 26.1 because of its runc 1.1.x: runc >= 1.3.3 inside
DinD breaks under sysbox 0.6.7 with "unsafe procfs detected". The rootfs is a debootstrap
minbase with docker.io, docker-cli, iptables and busybox-static, stripped of what an inner
dockerd never uses (docs, locales, apt, dpkg, perl, ...) so the import stays quick under TCG.
The tar is built once and cached by a hash of its inputs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dockyard_resources.paths import cache_root, images_dir
from dockyard_resources.vm import image

# Bump when the build procedure changes in a way the inputs below do not show.
BUILDER_VERSION = "1"
DEFAULT_SUITE = "trixie"
DOCKER_SERIES = {"trixie": "26.1"}  # suite -> the Docker version its docker.io ships
RUNC_SERIES = "1.1."
TAG_REPOSITORY = "dockyard-test/dind"
TAG = f"{TAG_REPOSITORY}:{DOCKER_SERIES[DEFAULT_SUITE]}"
PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CHANGES = ('CMD ["dockerd"]', f"ENV PATH={PATH_ENV}")
SOURCE_DATE_EPOCH = 1_700_000_000

# docker.io pulls containerd, runc, tini and iptables through Depends; its Recommends
# (git, xz-utils, ca-certificates, apparmor, ...) are for pulls and builds tests never do.
PACKAGES = ("docker.io", "docker-cli", "iptables", "busybox-static")
# Every file these packages installed goes (their directories only when left empty).
STRIP_PACKAGES = (
    "apt",
    "libapt-pkg7.0",
    "sqv",
    "debian-archive-keyring",
    "libstdc++6",
    "libnettle8t64",
    "libhogweed6t64",
    "dpkg",
    "perl-base",
    "debconf",
    "adduser",
    "tzdata",
)
# Globs relative to the rootfs.
STRIP_PATHS = (
    "usr/share/doc/*",
    "usr/share/man/*",
    "usr/share/info/*",
    "usr/share/locale/*",
    "usr/share/lintian",
    "usr/share/bug",
    "usr/share/bash-completion",
    "usr/share/zsh",
    "usr/share/fish",
    "usr/lib/x86_64-linux-gnu/gconv",
    # Docker 26 only starts containerd-shim-runc-v2; ctr is a debugging client.
    "usr/bin/ctr",
    "usr/bin/containerd-shim",
    "usr/bin/containerd-shim-runc-v1",
    "etc/localtime",
    "etc/timezone",
    "var/cache/apt",
    "var/cache/debconf",
    "var/cache/ldconfig/aux-cache",
    "var/lib/apt",
    "var/lib/dpkg/*",
    "var/log/*",
    "run/*",
    "tmp/*",
)
# Survive both strip lists: `update-alternatives --set iptables ...` still switches backends.
KEEP_PATHS = ("usr/bin/update-alternatives", "var/lib/dpkg/alternatives", "run/lock")

# (argv run in a chroot of the stripped rootfs, text its output must contain)
# dockerd is checked too, against the suite's DOCKER_SERIES.
SMOKE_CHECKS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("containerd", "--version"), "containerd "),
    (("containerd-shim-runc-v2", "-v"), "Version:"),
    (("runc", "--version"), f"runc version {RUNC_SERIES}"),
    (("docker", "--version"), "Docker version "),
    (("docker-init", "--version"), "tini version"),
    (("iptables", "--version"), "(nf_tables)"),
    (("iptables-legacy", "--version"), "(legacy)"),
    (("ip6tables-legacy", "--version"), "(legacy)"),
    (("busybox", "echo", "ok"), "ok"),
)
# Every dynamically linked ELF file here must still resolve its libraries after stripping.
ELF_DIRS = ("usr/bin", "usr/sbin", "usr/lib/x86_64-linux-gnu/xtables")
LOADER = "/lib64/ld-linux-x86-64.so.2"
_PT_INTERP = 3


class DindImageError(RuntimeError):
    """The image could not be built; the message carries the failing step's output tail."""


@dataclass(frozen=True)
class DindImage:
    """A built, cached DinD image tar and what `docker import` needs to turn it into an image."""

    path: Path
    sha256: str
    tag: str
    size_bytes: int
    changes: tuple[str, ...]
    built: bool  # True only for the call that actually built it

    def as_json(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "sha256": self.sha256,
            "tag": self.tag,
            "sizeBytes": self.size_bytes,
            "built": self.built,
        }


def testimages_dir() -> Path:
    return cache_root() / "testimages"


def image_tag(suite: str = DEFAULT_SUITE) -> str:
    _check_suite(suite)
    return f"{TAG_REPOSITORY}:{DOCKER_SERIES[suite]}"


def cache_key(
    suite: str = DEFAULT_SUITE,
    *,
    packages: Sequence[str] = PACKAGES,
    strip_packages: Sequence[str] = STRIP_PACKAGES,
    strip_paths: Sequence[str] = STRIP_PATHS,
    keep_paths: Sequence[str] = KEEP_PATHS,
) -> str:
    """`dind-<suite>-<hash>`: the hash covers every input that shapes the tar."""
    inputs = {
        "builder": BUILDER_VERSION,
        "suite": suite,
        "mirror": image.MIRROR,
        "packages": sorted(packages),
        "stripPackages": sorted(strip_packages),
        "stripPaths": sorted(strip_paths),
        "keepPaths": sorted(keep_paths),
    }
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
    return f"dind-{suite}-{digest[:16]}"


def import_command(docker_cli: str, tar_path_on_host: str, *, tag: str = TAG) -> str:
    """Shell command line that imports the tar on a host as `tag` with every CHANGES entry."""
    argv = [docker_cli, "import"]
    for change in CHANGES:
        argv += ["--change", change]
    argv += [tar_path_on_host, tag]
    return shlex.join(argv)


def build_dind_image(suite: str = DEFAULT_SUITE, *, log: bool = True) -> DindImage:
    """Return the cached tar for `suite`, building it first when missing.

    Concurrent callers serialise on a per-key file lock, so only one of them builds.
    """
    _check_suite(suite)
    key = cache_key(suite)
    out = testimages_dir()
    out.mkdir(parents=True, exist_ok=True)
    with image._locked(out / f"{key}.lock"):
        built = not _complete(out, key)
        if built:
            _build(suite, key, out, log=log)
        return _load(out, key, suite, built=built)


def _check_suite(suite: str) -> None:
    if suite not in DOCKER_SERIES:
        raise ValueError(f"suite {suite!r} is not supported; use one of {tuple(DOCKER_SERIES)}")


def _complete(out: Path, key: str) -> bool:
    # The manifest is renamed into place after the tar, so it marks a finished build.
    tar, manifest = out / f"{key}.tar", out / f"{key}.json"
    if not (tar.is_file() and manifest.is_file()):
        return False
    return bool(json.loads(manifest.read_text()).get("sizeBytes") == tar.stat().st_size)


def _load(out: Path, key: str, suite: str, *, built: bool) -> DindImage:
    manifest = json.loads((out / f"{key}.json").read_text())
    tar = out / f"{key}.tar"
    return DindImage(
        path=tar,
        sha256=str(manifest["sha256"]),
        tag=image_tag(suite),
        size_bytes=tar.stat().st_size,
        changes=CHANGES,
        built=built,
    )


def _say(message: str, *, log: bool) -> None:
    if log:
        print(f"[dockyard dind] {message}", file=sys.stderr)


def _run(step: str, argv: Sequence[str], *, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
        raise DindImageError(f"{step} failed with exit code {proc.returncode}:\n{tail}")
    return proc.stdout + proc.stderr


def _check_host() -> None:
    if os.geteuid() != 0:
        raise DindImageError(
            "building the DinD test image needs root (debootstrap, chroot); run the build as root"
        )
    for tool in ("debootstrap", "chroot", "tar"):
        if shutil.which(tool) is None:
            raise DindImageError(f"{tool} not found: install debootstrap and tar")


def _build(suite: str, key: str, out: Path, *, log: bool) -> None:
    _check_host()
    for stale in out.glob(f".build-{key}-*"):  # left by a killed build; we hold the lock
        _remove_tree(stale)
    work = out / f".build-{key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    work.mkdir()
    started = time.monotonic()
    try:
        rootfs = work / "rootfs"
        _say(f"debootstrap {suite} into {rootfs}", log=log)
        _debootstrap(suite, rootfs)
        debootstrap_s = time.monotonic() - started
        versions = _run(
            "package versions",
            ["chroot", str(rootfs), "dpkg-query", "-W", "-f", "${Package}=${Version}\\n"],
        )
        _say("stripping", log=log)
        strip_rootfs(rootfs)
        _reset_host_files(rootfs)
        _check_libraries(rootfs)
        _smoke_check(rootfs, suite)
        tar = work / "image.tar"
        _say("writing tar", log=log)
        write_tar(rootfs, tar)
        size = tar.stat().st_size
        manifest = {
            "key": key,
            "suite": suite,
            "tag": image_tag(suite),
            "builderVersion": BUILDER_VERSION,
            "sha256": _sha256(tar),
            "sizeBytes": size,
            "builtAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "debootstrapSeconds": round(debootstrap_s, 1),
            "buildSeconds": round(time.monotonic() - started, 1),
            "changes": list(CHANGES),
            "packages": sorted(line for line in versions.splitlines() if line),
        }
        (work / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        os.rename(tar, out / f"{key}.tar")
        os.rename(work / "manifest.json", out / f"{key}.json")
        _say(
            f"built {out / key}.tar ({size / 1e6:.0f} MB) in {manifest['buildSeconds']} s", log=log
        )
    finally:
        _remove_tree(work)


def _debootstrap(suite: str, rootfs: Path) -> None:
    # Shares the VM image's package cache, so .debs it already fetched are not fetched again.
    try:
        image.debootstrap(suite, rootfs, PACKAGES, cache_root=images_dir(), log=False)
    except image.ImageBuildError as exc:
        raise DindImageError(str(exc)) from None


def strip_rootfs(rootfs: Path) -> None:
    """Delete STRIP_PACKAGES' files and STRIP_PATHS, sparing KEEP_PATHS."""
    keep = {rootfs / path for path in KEEP_PATHS}
    for package in STRIP_PACKAGES:
        files, directories = _package_paths(rootfs, package)
        for path in files:
            if path not in keep:
                _remove(rootfs, path)
        for directory in sorted(directories, key=lambda p: len(p.parts), reverse=True):
            if directory.is_dir() and not directory.is_symlink() and not any(directory.iterdir()):
                directory.rmdir()
    for pattern in STRIP_PATHS:
        for path in sorted(rootfs.glob(pattern)):
            if path not in keep:
                _remove(rootfs, path)


def _package_paths(rootfs: Path, package: str) -> tuple[list[Path], list[Path]]:
    info = rootfs / "var" / "lib" / "dpkg" / "info"
    candidates = [info / f"{package}.list", info / f"{package}:amd64.list"]
    listing = next((path for path in candidates if path.is_file()), None)
    if listing is None:
        raise DindImageError(f"STRIP_PACKAGES names {package!r}, which is not installed")
    files: list[Path] = []
    directories: list[Path] = []
    for line in listing.read_text().splitlines():
        if line in ("", "/."):
            continue
        path = rootfs / line.lstrip("/")
        if path.is_dir() and not path.is_symlink():
            directories.append(path)
        else:
            files.append(path)
    return files, directories


def _remove(rootfs: Path, path: Path) -> None:
    # An absolute symlink among the parents would point into the host: never follow one out.
    if not path.parent.resolve().is_relative_to(rootfs.resolve()):
        raise DindImageError(f"refusing to remove {path}: it resolves outside {rootfs}")
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _reset_host_files(rootfs: Path) -> None:
    # debootstrap copies the build host's; Docker bind-mounts its own over these.
    for name in ("hostname", "resolv.conf"):
        (rootfs / "etc" / name).write_text("")
    # The inner dockerd runs with defaults (storage driver picked inside sysbox).
    (rootfs / "etc" / "docker" / "daemon.json").unlink(missing_ok=True)


def _dynamic_elf_files(rootfs: Path) -> list[str]:
    found: list[str] = []
    for directory in ELF_DIRS:
        for path in sorted((rootfs / directory).iterdir()):
            if path.is_symlink() or not path.is_file():
                continue
            if path.suffix == ".so" or has_interpreter(path):
                found.append("/" + str(path.relative_to(rootfs)))
    return found


def has_interpreter(path: Path) -> bool:
    """Whether `path` is a 64-bit little-endian ELF with a PT_INTERP (a dynamic executable)."""
    with open(path, "rb") as handle:
        header = handle.read(64)
        if len(header) < 64 or header[:4] != b"\x7fELF" or header[4:6] != b"\x02\x01":
            return False
        phoff = struct.unpack_from("<Q", header, 32)[0]
        phentsize, phnum = struct.unpack_from("<HH", header, 54)
        handle.seek(phoff)
        table = handle.read(phentsize * phnum)
    return any(
        struct.unpack_from("<I", table, i * phentsize)[0] == _PT_INTERP
        for i in range(len(table) // phentsize if phentsize else 0)
    )


def _check_libraries(rootfs: Path) -> None:
    # The loader itself lists dependencies (ldd is just a wrapper around it); one chroot for all.
    script = (
        'for f; do out=$("$LOADER" --list "$f" 2>&1) || { echo "$f: $out"; continue; }; '
        'case "$out" in *"not found"*) echo "$f: $out";; esac; done'
    )
    files = _dynamic_elf_files(rootfs)
    report = _run(
        "library check",
        ["chroot", str(rootfs), "/bin/sh", "-c", script, "sh", *files],
        env={"PATH": PATH_ENV, "LOADER": LOADER},
    )
    if report.strip():
        raise DindImageError(f"unresolved libraries after stripping:\n{report.strip()}")


def _smoke_check(rootfs: Path, suite: str) -> None:
    dockerd = (("dockerd", "--version"), f"Docker version {DOCKER_SERIES[suite]}.")
    for argv, expected in (dockerd, *SMOKE_CHECKS):
        output = _run(" ".join(argv), ["chroot", str(rootfs), *argv], env={"PATH": PATH_ENV})
        if expected not in output:
            raise DindImageError(f"{' '.join(argv)}: expected {expected!r} in {output!r}")


def write_tar(rootfs: Path, target: Path) -> None:
    """Tar `rootfs` as `./...` members: sorted, numeric owners, one mtime, no /dev, /proc, /sys."""
    _run(
        "tar",
        [
            "tar",
            "--create",
            "--file",
            str(target),
            "--directory",
            str(rootfs),
            "--format=gnu",
            "--sort=name",
            "--numeric-owner",
            f"--mtime=@{SOURCE_DATE_EPOCH}",
            "--one-file-system",
            "--anchored",
            "--exclude=./dev/*",
            "--exclude=./proc/*",
            "--exclude=./sys/*",
            ".",
        ],
        env={"LC_ALL": "C", "PATH": PATH_ENV},
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _remove_tree(path: Path) -> None:
    # A killed debootstrap can leave /proc or /sys mounted in the rootfs; never rmtree into them.
    prefix = str(path.resolve()) + "/"
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1].encode().decode("unicode_escape") for line in mounts]
    for point in sorted((p for p in points if p.startswith(prefix)), reverse=True):
        subprocess.run(["umount", "-l", point], check=False)
    shutil.rmtree(path, ignore_errors=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.testimage.dind_image",
        description="Build (or find) the cached Docker-in-Docker test image tar.",
    )
    parser.add_argument("--suite", default=DEFAULT_SUITE, choices=tuple(DOCKER_SERIES))
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        built = build_dind_image(args.suite, log=not args.quiet)
    except DindImageError as error:
        raise SystemExit(f"dind image: {error}") from error
    print(json.dumps(built.as_json()))


if __name__ == "__main__":
    main()
