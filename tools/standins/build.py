"""Build the offline STAND-IN artifacts (test tooling; never product defaults).

- `docker-<ver>-standin-x86_64.tgz`: Docker's static-tarball layout
  (`docker/dockerd, docker, containerd, ctr, containerd-shim-runc-v2, runc,
  docker-init, docker-proxy`) filled with Debian's packaged binaries, which
  are a different Docker version.
- `sysbox-ce-<ver>-standin-amd64.deb`: the sysbox deb's file layout with the
  Go stand-in of `sysbox/main.go` (see there for what it does and does not do).

Each artifact gets a `<file>.sha256` sidecar (`<hex>  <name>`). Outputs are
cached under `${DOCKYARD_CACHE}/standins/` by a hash of their inputs, and built
reproducibly (fixed mtimes, owners, ordering).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dockyard_resources.paths import standins_dir
from dockyard_resources.vm import image

DOCKER_VERSION = "29.2.1"  # the version the stand-in is named after, not what it contains
SYSBOX_VERSION = "0.6.7"
BUILD_VERSION = "1"
SOURCE_DATE_EPOCH = "1700000000"
SYSBOX_SOURCE = Path(__file__).resolve().parent / "sysbox"

# tarball member -> (Debian package, path candidates inside it)
DOCKER_LAYOUT: dict[str, tuple[str, tuple[str, ...]]] = {
    "dockerd": ("docker.io", ("usr/sbin/dockerd", "usr/bin/dockerd")),
    "docker": ("docker-cli", ("usr/bin/docker",)),
    "containerd": ("containerd", ("usr/bin/containerd",)),
    "ctr": ("containerd", ("usr/bin/ctr",)),
    "containerd-shim-runc-v2": ("containerd", ("usr/bin/containerd-shim-runc-v2",)),
    "runc": ("runc", ("usr/sbin/runc", "usr/bin/runc")),
    "docker-init": ("tini", ("usr/bin/tini-static",)),
    "docker-proxy": (
        "docker.io",
        ("usr/sbin/docker-proxy", "usr/bin/docker-proxy", "usr/libexec/docker/docker-proxy"),
    ),
}


@dataclass(frozen=True)
class Artifact:
    path: Path
    sha256: str

    @property
    def sha256_file(self) -> Path:
        return self.path.with_name(self.path.name + ".sha256")

    def as_dict(self) -> dict[str, str]:
        return {"path": str(self.path), "sha256": self.sha256, "sha256File": str(self.sha256_file)}


@dataclass(frozen=True)
class Standins:
    docker: Artifact
    sysbox: Artifact


def build_standins(suite: str = image.DEFAULT_SUITE) -> Standins:
    """Return both stand-ins, building whichever is missing or stale."""
    base = image.ensure_image(suite)
    out = standins_dir()
    out.mkdir(parents=True, exist_ok=True)
    docker = _cached(
        out / f"docker-{DOCKER_VERSION}-standin-x86_64.tgz",
        _inputs_hash("docker", [*sorted(base.debs.glob("*.deb"))]),
        lambda target: build_docker_tarball(base.debs, target),
    )
    sysbox = _cached(
        out / f"sysbox-ce-{SYSBOX_VERSION}-standin-amd64.deb",
        _inputs_hash("sysbox", sorted(SYSBOX_SOURCE.glob("*"))),
        build_sysbox_deb,
    )
    return Standins(docker=docker, sysbox=sysbox)


def _inputs_hash(kind: str, files: list[Path]) -> str:
    digest = hashlib.sha256(f"{kind}:{BUILD_VERSION}:{DOCKER_VERSION}:{SYSBOX_VERSION}".encode())
    for path in files:
        digest.update(path.name.encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _cached(target: Path, inputs: str, build: object) -> Artifact:
    stamp = target.with_name(target.name + ".inputs")
    sidecar = target.with_name(target.name + ".sha256")
    fresh = target.is_file() and sidecar.is_file() and stamp.is_file()
    if fresh and stamp.read_text().strip() == inputs:
        return Artifact(target, sidecar.read_text().split()[0])
    with tempfile.TemporaryDirectory(prefix=".standin-", dir=target.parent) as tmp:
        staging = Path(tmp) / target.name
        assert callable(build)
        build(staging)
        sha = hashlib.sha256(staging.read_bytes()).hexdigest()
        os.replace(staging, target)
    sidecar.write_text(f"{sha}  {target.name}\n")
    stamp.write_text(inputs + "\n")
    return Artifact(target, sha)


def _run(argv: list[str], **kwargs: object) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): {proc.stderr.strip()}")


def _reproducible_env() -> dict[str, str]:
    return {**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH, "TZ": "UTC", "LC_ALL": "C"}


def build_docker_tarball(debs: Path, target: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="docker-standin-") as tmp:
        root = Path(tmp)
        extracted: dict[str, Path] = {}
        for package in {pkg for pkg, _ in DOCKER_LAYOUT.values()}:
            matches = sorted(debs.glob(f"{package}_*.deb"))
            if not matches:
                raise RuntimeError(f"no {package} .deb in {debs}: rebuild the VM image")
            extracted[package] = root / "pkgs" / package
            extracted[package].mkdir(parents=True)
            _run(["dpkg-deb", "-x", str(matches[-1]), str(extracted[package])])
        layout = root / "out" / "docker"
        layout.mkdir(parents=True)
        for member, (package, candidates) in DOCKER_LAYOUT.items():
            source = next(
                (extracted[package] / c for c in candidates if (extracted[package] / c).exists()),
                None,
            )
            if source is None:
                raise RuntimeError(f"{member}: none of {candidates} in package {package}")
            shutil.copyfile(source.resolve(), layout / member)
            (layout / member).chmod(0o755)
        tar = root / "docker.tar"
        _run(
            [
                "tar",
                "--sort=name",
                "--owner=0",
                "--group=0",
                "--numeric-owner",
                f"--mtime=@{SOURCE_DATE_EPOCH}",
                "-C",
                str(root / "out"),
                "-cf",
                str(tar),
                "docker",
            ],
            env=_reproducible_env(),
        )
        with open(target, "wb") as handle:
            proc = subprocess.run(["gzip", "-n", "-9", "-c", str(tar)], stdout=handle, check=False)
        if proc.returncode != 0:
            raise RuntimeError("gzip failed")


def build_sysbox_deb(target: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="sysbox-standin-") as tmp:
        root = Path(tmp) / "pkg"
        bin_dir = root / "usr" / "bin"
        bin_dir.mkdir(parents=True)
        binary = Path(tmp) / "sysbox-standin"
        go_env = {
            **_reproducible_env(),
            "CGO_ENABLED": "0",
            "GOOS": "linux",
            "GOARCH": "amd64",
            "GOFLAGS": "-mod=mod",
        }
        _run(
            [
                "nice",
                "-n",
                "10",
                "go",
                "build",
                "-trimpath",
                "-ldflags",
                f"-s -w -buildid= -X main.version={SYSBOX_VERSION}",
                "-o",
                str(binary),
                ".",
            ],
            cwd=SYSBOX_SOURCE,
            env=go_env,
        )
        for name in ("sysbox-mgr", "sysbox-fs", "sysbox-runc"):
            shutil.copyfile(binary, bin_dir / name)
            (bin_dir / name).chmod(0o755)
        doc = root / "usr" / "share" / "doc" / "sysbox-ce"
        doc.mkdir(parents=True)
        (doc / "README.STAND-IN").write_text(
            "STAND-IN for sysbox-ce, built by Dockyard's tools/standins for offline tests.\n"
            "It is not sysbox: no user-namespace isolation, no sysbox-fs, no ID mapping.\n"
        )
        control = root / "DEBIAN"
        control.mkdir()
        (control / "control").write_text(
            "Package: sysbox-ce\n"
            f"Version: {SYSBOX_VERSION}-0.standin\n"
            "Architecture: amd64\n"
            "Maintainer: Dockyard test tooling <noreply@invalid>\n"
            "Section: admin\n"
            "Priority: optional\n"
            "Description: STAND-IN for sysbox-ce (offline tests only)\n"
            " Creates sysbox's sockets and pid files and execs runc; provides no isolation.\n"
        )
        for path in sorted(root.rglob("*"), reverse=True):
            os.utime(path, (int(SOURCE_DATE_EPOCH), int(SOURCE_DATE_EPOCH)), follow_symlinks=False)
        _run(
            ["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(root), str(target)],
            env=_reproducible_env(),
        )


def main() -> None:
    standins = build_standins()
    print(
        json.dumps(
            {"docker": standins.docker.as_dict(), "sysbox": standins.sysbox.as_dict()}, indent=2
        )
    )


if __name__ == "__main__":
    main()
