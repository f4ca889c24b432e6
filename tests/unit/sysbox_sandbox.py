"""A scratch host for the SysboxHost scripts: every host path moved below a directory in /srv,
the commands that would change this machine replaced by bash functions that record their
calls, and a local attacker played for real.

- Each path the scripts use (`/usr/local/lib/dockyard`, `/var/cache/dockyard`, `/etc/subuid`,
  the locks in /run, ...) is rewritten to `<base><path>`; `Sandbox.path()` maps a host path
  the same way, so a test reads the result where the script wrote it.
- `useradd`, `systemctl`, `cloud-init`, `curl`, ... are bash functions (they win over PATH);
  what `apt-get install` installs is a no-op function from then on. Each records, at the
  moment it runs, whether the host lock and the artifact lock are held (`flock -n` on the
  same file fails while anybody holds it).
- `curl` serves URLs from a table (`Sandbox.serve`), reading the URL from its argv or from a
  config on stdin (`-K -`), and keeps both for the test.
- With `attacker=True`, after every `sha256sum` a process running as uid 65534 (nobody) tries
  to put the attacker's payload in place of each file just hashed: first by writing into it,
  then by a rename in its directory. It succeeds exactly where that user could.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from dockyard_resources.render import common
from dockyard_resources.render import sysbox_host as r
from dockyard_resources.transport import CommandFailed, Result
from dockyard_resources.transport.upload import upload_script

NOBODY = 65534
DOCKER_VERSION = "29.2.1"
SYSBOX_VERSION = "0.6.7"
# Every host path the SysboxHost scripts (and the transport's upload) touch.
HOST_PATHS = (
    r.LIB_ROOT,
    r.CACHE_DIR.rsplit("/", 1)[0],
    "/var/tmp",  # where uploads were once staged: moved so that no test touches the real one
    r.LOG_DIR,
    r.DATA_DIR,
    r.SYSBOXFS_MOUNTPOINT,
    r.RUN_DIR,
    common.HOST_LOCK,
    *((r.ARTIFACT_LOCK,) if hasattr(r, "ARTIFACT_LOCK") else ()),
    r.SYSTEMD_DIR,
    os.path.dirname(r.SYSCTL_PATH),
    "/etc/subuid",
    "/etc/subgid",
)
LOCKS = {"host": common.HOST_LOCK, "artifacts": getattr(r, "ARTIFACT_LOCK", "/run/no-such")}

STUBS = r"""
dy_log() { printf '%s\n' "$*" >>"$DY_WORK/calls"; }
dy_locks() {  # NAME: log NAME with the state of each lock
  local state="" pair held
  for pair in $DY_LOCKS; do
    held=free
    flock -n "${pair#*=}" true || held=held
    state+=" ${pair%%=*}=$held"
  done
  dy_log "$1$state"
}
cloud-init() { dy_locks cloud-init; }
apt-get() {  # records what `install` installs; dy_installed makes it present
  dy_locks apt-get
  local verb="" arg
  for arg in "$@"; do
    case "$arg" in
      -*) ;;
      update | install) verb=$arg ;;
      *) if [ "$verb" = install ]; then printf '%s\n' "$arg" >>"$DY_WORK/packages"; fi ;;
    esac
  done
  dy_installed
}
dy_installed() {
  local p
  while read -r p; do
    case "$p" in fuse3) p=fusermount3 ;; fuse) p=fusermount ;; esac
    eval "$p() { :; }"
  done < <(cat "$DY_WORK/packages" 2>/dev/null || true)
}
dy_installed
apt-cache() { return 0; }
sysctl() { dy_log "sysctl $*"; }
dpkg() { dy_locks dpkg; }  # installing a package is never how sysbox gets there
ss() {  # the sockets named in DY_LISTENING listen
  local sock
  for sock in ${DY_LISTENING:-}; do echo "u_str LISTEN 0 4096 $sock 4711 * 0"; done
}
mountpoint() { return 1; }
useradd() { dy_locks useradd; : >"$DY_WORK/user-sysbox"; }
userdel() { dy_locks userdel; rm -f "$DY_WORK/user-sysbox"; }
id() {
  if [ "$*" = "-u sysbox" ]; then [ -e "$DY_WORK/user-sysbox" ]; else command id "$@"; fi
}
getent() {
  if [ "$*" = "passwd sysbox" ] && [ -e "$DY_WORK/user-sysbox" ]; then
    echo "sysbox:x:999:999:Dockyard sysbox:/nonexistent:/bin/false"
  else
    return 2
  fi
}
systemctl() {  # every unit is as active as DY_SERVICE_ACTIVE says; DY_START_FAILS: units
  dy_locks "systemctl $1"
  dy_log "systemctl $*"
  case "$1" in
    is-active) return "${DY_SERVICE_ACTIVE:-3}" ;;
    start) [[ " ${DY_START_FAILS:-} " != *" $2 "* ]] ;;
  esac
}
systemd-run() { dy_locks systemd-run; }
tar() { dy_locks tar; command tar "$@"; }
dpkg-deb() {  # the test's "deb" is a tar.gz with the deb's file layout
  dy_locks dpkg-deb
  [ "$1" = -x ] && command tar -xzf "$2" -C "$3"
}
curl() {
  dy_locks curl
  printf '%s\n' "$*" >>"$DY_WORK/curl-argv"
  local out="" url="" config=""
  while [ $# -gt 0 ]; do
    case "$1" in
      -o) out=$2; shift 2 ;;
      -K | --config) if [ "$2" = - ]; then config=$(cat); fi; shift 2 ;;
      --retry | --retry-delay | --connect-timeout | --max-time) shift 2 ;;
      -*) shift ;;
      *) url=$1; shift ;;
    esac
  done
  if [ -n "$config" ]; then
    printf '%s\n' "$config" >>"$DY_WORK/curl-config"
    url=$(sed -n 's/^url = "\(.*\)"$/\1/p' <<<"$config")
  fi
  local src
  src=$(awk -v u="$url" '$1 == u { print $2 }' "$DY_WORK/urls")
  if [ -z "$src" ]; then echo "curl: (22) The requested URL returned error: 404" >&2; return 22; fi
  cp "$src" "$out"
}
sha256sum() {
  command sha256sum "$@" || return
  [ -n "${DY_PAYLOAD:-}" ] || return 0
  local f
  for f in "$@"; do
    case "$f" in -*) continue ;; esac
    [ -f "$f" ] || continue
    if setpriv --reuid=65534 --regid=65534 --clear-groups -- /bin/sh -c '
        { cat "$1" >"$2"; } 2>/dev/null && exit 0
        t=$(dirname "$2")/.dy-evil.$$
        cp "$1" "$t" 2>/dev/null && mv -f "$t" "$2" 2>/dev/null' - "$DY_PAYLOAD" "$f"; then
      dy_log "attacker replaced $f"
    fi
  done
}
"""


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str
    calls: list[str]

    @property
    def text(self) -> str:
        return self.out + self.err

    @property
    def actions(self) -> list[str]:
        return [
            line[len(r.ACTION_PREFIX) :]
            for line in self.out.splitlines()
            if line.startswith(r.ACTION_PREFIX)
        ]

    def locks(self) -> list[str]:
        """The recorded calls with the state of both locks, in order."""
        return [call for call in self.calls if " host=" in call]


def tgz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def binary(name: str, kind: str = "genuine") -> bytes:
    return f"#!/bin/sh\necho {kind} {name}\n".encode()


@dataclass(frozen=True)
class SandboxArtifacts:
    """A Docker tarball and a sysbox "deb" (a tar.gz with the deb's layout: dpkg-deb is a stub
    here), and the attacker's payload: both layouts, every binary evil."""

    docker: Path
    sysbox: Path
    payload: Path

    @classmethod
    def build(cls, directory: Path) -> SandboxArtifacts:
        docker = {f"docker/{b}": binary(b) for b in r.DOCKER_BINARIES}
        sysbox = {f"usr/bin/{b}": binary(b) for b in r.SYSBOX_BINARIES}
        evil = {
            **{f"docker/{b}": binary(b, "evil") for b in r.DOCKER_BINARIES},
            **{f"usr/bin/{b}": binary(b, "evil") for b in r.SYSBOX_BINARIES},
        }
        paths = []
        for name, files in (("docker.tgz", docker), ("sysbox.deb", sysbox), ("evil.tgz", evil)):
            path = directory / name
            path.write_bytes(tgz(files))
            path.chmod(0o644)
            paths.append(path)
        return cls(*paths)

    def artifact(self, kind: str, url: str | None = None) -> r.Artifact:
        path = self.docker if kind == "docker" else self.sysbox
        version = DOCKER_VERSION if kind == "docker" else SYSBOX_VERSION
        return r.Artifact(kind, version, url or str(path), sha256(path))

    def plan(
        self,
        mode: r.ArtifactsMode = "upload",
        *,
        owner: str = "dockyard/test/box-sysbox",
        docker_url: str | None = None,
        sysbox_url: str | None = None,
        allow_restart: bool = False,
    ) -> r.InstallPlan:
        return r.InstallPlan(
            self.artifact("docker", docker_url),
            self.artifact("sysbox", sysbox_url),
            mode,
            allow_restart,
            owner,
        )


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Sandbox:
    """The scratch host. `base` is a root-owned 0755 directory in /srv: its parents belong to
    root and only root can write them, as on a real host (pytest's /tmp would not do)."""

    def __init__(self, base: Path, work: Path) -> None:
        self.base = base
        self.work = work
        self._pattern = re.compile(
            "|".join(re.escape(p) for p in sorted(HOST_PATHS, key=len, reverse=True))
        )
        for directory, mode in (
            ("/var", 0o755),
            ("/var/cache", 0o755),
            ("/var/lib", 0o755),
            ("/var/log", 0o755),
            ("/var/tmp", 0o1777),
            ("/usr/local/lib", 0o755),
            ("/run", 0o755),
            (r.SYSTEMD_DIR, 0o755),
            (os.path.dirname(r.SYSCTL_PATH), 0o755),
        ):
            path = self.path(directory)
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(mode)
        (work / "urls").write_text("")
        self.artifacts = SandboxArtifacts.build(work)
        # Readable by the attacker (nobody), unlike pytest's tmp_path.
        self.attacker_dir = base / "attacker"
        self.attacker_dir.mkdir(mode=0o755)
        self.attacker_dir.chmod(0o755)

    def path(self, host_path: str) -> Path:
        return Path(f"{self.base}{host_path}")

    def moved(self, script: str) -> str:
        text = self._pattern.sub(lambda m: f"{self.base}{m.group(0)}", script)
        for match in self._pattern.finditer(text):
            assert text[: match.start()].endswith(str(self.base)), (
                f"host path {match.group(0)} left in the script"
            )
        return text

    def serve(self, url: str, path: Path) -> None:
        with (self.work / "urls").open("a") as table:
            table.write(f"{url} {path}\n")

    def read(self, name: str) -> str:
        file = self.work / name
        return file.read_text() if file.exists() else ""

    def run(self, script: str, *, stdin: bytes = b"", attacker: bool = False, **env: str) -> Ran:
        (self.work / "calls").write_text("")
        locks = " ".join(f"{name}={self.path(path)}" for name, path in LOCKS.items())
        attacker_payload = ""
        if attacker:
            payload = self.attacker_dir / "payload"
            shutil.copy(self.artifacts.payload, payload)
            payload.chmod(0o644)
            attacker_payload = str(payload)
        proc = subprocess.run(
            ["bash", "-c", STUBS + self.moved(script)],
            input=stdin,
            capture_output=True,
            env={
                **os.environ,
                "DY_WORK": str(self.work),
                "DY_LOCKS": locks,
                "DY_PAYLOAD": attacker_payload,
                **env,
            },
            check=False,
        )
        return Ran(
            proc.returncode,
            proc.stdout.decode(errors="replace"),
            proc.stderr.decode(errors="replace"),
            (self.work / "calls").read_text().splitlines(),
        )

    # --- what the tests look at -----------------------------------------------------------

    def installed(self, plan: r.InstallPlan) -> dict[str, bytes]:
        """Every binary in the plan's version dirs (missing ones as b"")."""
        found = {}
        for directory, names in (
            (r.docker_dir(plan.docker.version), r.DOCKER_BINARIES),
            (r.sysbox_dir(plan.sysbox.version), r.SYSBOX_BINARIES),
        ):
            for name in names:
                file = self.path(f"{directory}/{name}")
                found[name] = file.read_bytes() if file.is_file() else b""
        return found

    def cache_entries(self) -> dict[str, str]:
        """Cache file name -> sha256 of its content."""
        cache = self.path(r.CACHE_DIR)
        if not cache.is_dir():
            return {}
        return {f.name: sha256(f) for f in cache.iterdir() if f.is_file()}


def genuine(installed: dict[str, bytes]) -> bool:
    return all(data == binary(name) for name, data in installed.items())


class LocalHost:
    """What `hostops` needs of an `SshSession`, run in the sandbox: `run` and `upload` (the
    transport's own upload script)."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.steps: list[str] = []
        self.secrets: list[Sequence[str]] = []

    def run(
        self,
        script: str,
        *,
        step: str,
        timeout: float | None = None,
        on_line: object = None,
        check: bool = True,
        secrets: Sequence[str] = (),
        env: object = None,
    ) -> Result:
        del timeout, on_line, env
        self.steps.append(step)
        self.secrets.append(tuple(secrets))
        ran = self.sandbox.run(script)
        if check and ran.code:
            raise CommandFailed(step, ran.code, ran.err, ran.out)
        return Result(ran.code, ran.out, ran.err)

    def upload(
        self,
        data: bytes | Path,
        remote_path: str,
        mode: int = 0o644,
        owner: str | None = None,
        *,
        step: str | None = None,
        timeout: float | None = None,
    ) -> None:
        del timeout
        payload = data.read_bytes() if isinstance(data, Path) else data
        step = step or f"upload {remote_path}"
        self.steps.append(step)
        ran = self.sandbox.run(upload_script(remote_path, mode, owner), stdin=payload)
        if ran.code:
            raise CommandFailed(step, ran.code, ran.err, ran.out)


def sandbox_at(work: Path) -> Iterator[Sandbox]:
    base = Path(tempfile.mkdtemp(prefix="dockyard-sbx-", dir="/srv"))
    base.chmod(0o755)
    try:
        yield Sandbox(base, work)
    finally:
        shutil.rmtree(base)
