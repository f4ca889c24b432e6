"""Debian base image for local VMs: debootstrap + `mkfs.ext4 -d`, cached by input hash.

The image is a raw ext4 file system (no partition table) plus the kernel and
initrd taken out of it, so QEMU boots it with `-kernel/-initrd` and no
bootloader. Nothing per-VM lives in it (see guest_config.sh).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from dockyard_resources.errors import DockyardError
from dockyard_resources.paths import images_dir

# Bump when the build procedure changes in a way the inputs below do not show.
BUILDER_VERSION = "1"
SUPPORTED_SUITES = ("trixie", "bookworm")
DEFAULT_SUITE = "trixie"
MIRROR = "http://deb.debian.org/debian"
IMAGE_SIZE = "4G"  # sparse; each VM's overlay is grown to its diskGb

BASE_PACKAGES = (
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "sudo",
    "iptables",
    "iproute2",
    "kmod",
    "udev",
    "apparmor",
    "ca-certificates",
    "curl",
    "rsync",
    "jq",
    "fuse3",
    "procps",
    "e2fsprogs",
    "netbase",
    "linux-image-cloud-amd64",
    "initramfs-tools",
)
# Only for the offline STAND-IN artifacts (their binaries come from these
# packages) and for trying Docker by hand; their units are masked in the guest.
STANDIN_PACKAGES = ("docker.io", "containerd", "runc", "tini", "busybox-static")
SUITE_PACKAGES = {"trixie": ("docker-cli",), "bookworm": ()}
# Kept next to the image: tools/standins assembles the Docker-layout tarball from them.
KEPT_DEBS = ("docker.io", "docker-cli", "containerd", "runc", "tini")


class ImageBuildError(DockyardError):
    """The image could not be built; the message carries the failing step's output tail."""


@dataclass(frozen=True)
class BaseImage:
    """A built, cached image: everything a runner needs to boot it."""

    key: str
    suite: str
    directory: Path
    raw: Path
    kernel: Path
    initrd: Path
    debs: Path
    build_id: str
    built: bool  # True only for the call that actually built it

    def manifest(self) -> dict[str, object]:
        data = json.loads((self.directory / "build.json").read_text())
        assert isinstance(data, dict)
        return data


def package_list(suite: str) -> tuple[str, ...]:
    _check_suite(suite)
    return BASE_PACKAGES + STANDIN_PACKAGES + SUITE_PACKAGES[suite]


def guest_config_script() -> str:
    return resources.files("dockyard_resources.vm").joinpath("guest_config.sh").read_text()


def image_key(suite: str) -> str:
    """Hash of every input that shapes the image; a changed input means a new image."""
    inputs = {
        "builder": BUILDER_VERSION,
        "suite": suite,
        "mirror": MIRROR,
        "packages": sorted(package_list(suite)),
        "config": guest_config_script(),
        "size": IMAGE_SIZE,
    }
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
    return f"{suite}-{digest[:16]}"


def ensure_image(suite: str = DEFAULT_SUITE, *, log: bool = True) -> BaseImage:
    """Return the cached image for `suite`, building it first when missing.

    Concurrent callers (processes or threads) serialise on a file lock, so only
    one of them builds; the others then find the finished image.
    """
    _check_suite(suite)
    key = image_key(suite)
    root = images_dir()
    root.mkdir(parents=True, exist_ok=True)
    final = root / key
    with _locked(root / f"{key}.lock"):
        if _complete(final):
            return _load(final, suite, built=False)
        _build(suite, key, final, log=log)
        return _load(final, suite, built=True)


def cached_image(key: str) -> BaseImage:
    """The already built image `key` (a VM's overlay stays tied to the image it was made on)."""
    directory = images_dir() / key
    if not _complete(directory):
        raise ImageBuildError(f"image {key} is not in {images_dir()}: its VM must be recreated")
    return _load(directory, key.split("-", 1)[0], built=False)


def _check_suite(suite: str) -> None:
    if suite not in SUPPORTED_SUITES:
        raise ImageBuildError(f"suite {suite!r} is not supported; use one of {SUPPORTED_SUITES}")


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    with open(lock_path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _complete(directory: Path) -> bool:
    # build.json is written last, before the atomic rename.
    return (directory / "build.json").is_file()


def _load(directory: Path, suite: str, *, built: bool) -> BaseImage:
    manifest = json.loads((directory / "build.json").read_text())
    return BaseImage(
        key=directory.name,
        suite=suite,
        directory=directory,
        raw=directory / "base.raw",
        kernel=directory / "vmlinuz",
        initrd=directory / "initrd.img",
        debs=directory / "debs",
        build_id=str(manifest["buildId"]),
        built=built,
    )


def _run(step: str, argv: list[str], *, log: bool) -> str:
    if log:
        print(f"[dockyard image] {step}: {' '.join(argv[:6])} ...", file=sys.stderr)
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
        raise ImageBuildError(f"{step} failed with exit code {proc.returncode}:\n{tail}")
    return proc.stdout


def debootstrap(
    suite: str, rootfs: Path, packages: Sequence[str], *, cache_root: Path, log: bool
) -> None:
    """A minbase Debian `suite` with `packages` in `rootfs`, from MIRROR. The .debs are kept
    in `cache_root`/apt-cache/`suite`, shared by every image built there."""
    apt_cache = cache_root / "apt-cache" / suite
    apt_cache.mkdir(parents=True, exist_ok=True)
    _run(
        "debootstrap",
        [
            *("nice", "-n", "10", "debootstrap", "--variant=minbase"),
            f"--include={','.join(packages)}",
            f"--cache-dir={apt_cache}",
            *(suite, str(rootfs), MIRROR),
        ],
        log=log,
    )


def _build(suite: str, key: str, final: Path, *, log: bool) -> None:
    if os.geteuid() != 0:
        raise ImageBuildError("building the VM image needs root (debootstrap, chroot)")
    for tool in ("debootstrap", "mkfs.ext4", "chroot"):
        if shutil.which(tool) is None:
            raise ImageBuildError(f"{tool} not found: install debootstrap and e2fsprogs")
    work = final.parent / f".build-{key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    started = time.monotonic()
    try:
        rootfs = work / "rootfs"
        debootstrap(suite, rootfs, package_list(suite), cache_root=final.parent, log=log)
        debootstrap_s = time.monotonic() - started
        script = rootfs / "tmp" / "dockyard-config.sh"
        script.write_text(guest_config_script())
        _run("configure", ["chroot", str(rootfs), "/bin/sh", "/tmp/dockyard-config.sh"], log=log)
        script.unlink()
        versions = _run(
            "package versions",
            ["chroot", str(rootfs), "dpkg-query", "-W", "-f", "${Package}=${Version}\\n"],
            log=False,
        )
        _keep_debs(rootfs, work / "debs")
        _extract_boot_files(rootfs, work)
        _run("clean", ["chroot", str(rootfs), "apt-get", "clean"], log=False)
        shutil.rmtree(rootfs / "var" / "lib" / "apt" / "lists", ignore_errors=True)
        (rootfs / "var" / "lib" / "apt" / "lists" / "partial").mkdir(parents=True)
        _run(
            "mkfs.ext4",
            [
                "mkfs.ext4",
                "-q",
                "-F",
                "-L",
                "dyroot",
                "-d",
                str(rootfs),
                str(work / "base.raw"),
                IMAGE_SIZE,
            ],
            log=log,
        )
        shutil.rmtree(rootfs)
        manifest = {
            "buildId": uuid.uuid4().hex,
            "key": key,
            "suite": suite,
            "builderVersion": BUILDER_VERSION,
            "builtAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "debootstrapSeconds": round(debootstrap_s, 1),
            "buildSeconds": round(time.monotonic() - started, 1),
            "packages": sorted(line for line in versions.splitlines() if line),
        }
        (work / "build.json").write_text(json.dumps(manifest, indent=2) + "\n")
        os.rename(work, final)
        if log:
            print(
                f"[dockyard image] built {final} in {manifest['buildSeconds']} s", file=sys.stderr
            )
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def _keep_debs(rootfs: Path, target: Path) -> None:
    target.mkdir()
    archives = rootfs / "var" / "cache" / "apt" / "archives"
    for deb in archives.glob("*.deb"):
        if deb.name.split("_", 1)[0] in KEPT_DEBS:
            shutil.copy2(deb, target / deb.name)


def _extract_boot_files(rootfs: Path, work: Path) -> None:
    boot = rootfs / "boot"
    kernels = sorted(boot.glob("vmlinuz-*"))
    initrds = sorted(boot.glob("initrd.img-*"))
    if not kernels or not initrds:
        raise ImageBuildError(f"no kernel/initrd in {boot}: did linux-image-cloud-amd64 install?")
    shutil.copy2(kernels[-1], work / "vmlinuz")
    shutil.copy2(initrds[-1], work / "initrd.img")


def main() -> None:
    parser = argparse.ArgumentParser(description="Build (or find) the cached Dockyard VM image.")
    parser.add_argument("--suite", default=DEFAULT_SUITE, choices=SUPPORTED_SUITES)
    args = parser.parse_args()
    image = ensure_image(args.suite)
    print(json.dumps({"directory": str(image.directory), "built": image.built}))


if __name__ == "__main__":
    main()
