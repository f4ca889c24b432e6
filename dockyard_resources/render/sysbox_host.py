"""Host-side scripts and files of a Dockyard host: Docker + sysbox and the shared service.

Everything here is pure text rendering. The host layout lives in these constants so the
install, inspect and remove scripts (and the tests) agree on every path; the text itself
lives in `templates/sysbox_host/` (`render.common` states the quoting rule).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Final, Literal

from dockyard_resources.config.urls import public_url
from dockyard_resources.render import facts
from dockyard_resources.render.common import HOLD_HOST_LOCK, bash_script, hold_lock, render
from dockyard_resources.render.layout import INSTANCE_MARKER, SYSBOX_SERVICE, SYSTEMD_DIR

LIB_ROOT: Final = "/usr/local/lib/dockyard"
SUPERVISOR_PATH: Final = f"{LIB_ROOT}/dockyard-sysbox-run"
# Root's alone (0700, and every parent root's and writable by root only): nobody else can
# put, swap or move a file there between its hash and its use.
CACHE_ROOT: Final = "/var/cache/dockyard"
CACHE_DIR: Final = f"{CACHE_ROOT}/artifacts"  # verified artifacts, named by their sha256
# Uploads are staged here (`staging_script` makes it safe first); install moves each into
# the cache and hashes it there, so the bytes it checks are the bytes it unpacks.
UPLOAD_DIR: Final = f"{CACHE_ROOT}/uploads"
# The artifact store's own lock: the cache, the staged uploads, the versioned binary dirs,
# the owner registry that keeps them, and Dockyard's apt runs. SysboxHost installs of
# several stacks take turns here while instance operations (host lock) go on.
ARTIFACT_LOCK: Final = "/run/dockyard-artifacts.lock"
DATA_DIR: Final = "/var/lib/dockyard-sysbox"
LOG_DIR: Final = "/var/log/dockyard-sysbox"
RUN_DIR: Final = "/run/sysbox"  # hardcoded by sysbox
SYSBOXFS_MOUNTPOINT: Final = "/var/lib/sysboxfs"  # sysbox-fs default, kept: sysbox-runc expects it
SERVICE_NAME: Final = SYSBOX_SERVICE
UNIT_PATH: Final = f"{SYSTEMD_DIR}/{SERVICE_NAME}"
SYSCTL_PATH: Final = "/etc/sysctl.d/99-dockyard-sysbox.conf"
SYSBOX_USER_COMMENT: Final = "Dockyard sysbox"
# Lines the scripts print for the Python side to parse.
ACTION_PREFIX: Final = "dockyard-action: "
STATE_PREFIX: Final = f"{facts.PREFIX}state "
FACTS_PREFIX: Final = f"{facts.PREFIX}preflight "
KEEP_PREFIX: Final = "dockyard-keep: "
OWNERS_PREFIX: Final = "dockyard-owners: "
# One file per SysboxHost resource using this host (`project/stack/resource` inside): the
# shared layer stays while any other owner (e.g. another stack, or a renamed host) remains.
OWNERS_DIR: Final = f"{LIB_ROOT}/owners"

SOCKETS: Final = {"sysbox-mgr": f"{RUN_DIR}/sysmgr.sock", "sysbox-fs": f"{RUN_DIR}/sysfs.sock"}
STALE_SOCKETS: Final = (*SOCKETS.values(), f"{RUN_DIR}/sysfs-seccomp.sock")
DOCKER_BINARIES: Final = (
    "dockerd",
    "docker",
    "containerd",
    "ctr",
    "containerd-shim-runc-v2",
    "runc",
    "docker-init",
    "docker-proxy",
)
SYSBOX_BINARIES: Final = ("sysbox-mgr", "sysbox-fs", "sysbox-runc")
PREREQUISITES: Final = ("rsync", "iptables", "jq")

# From the sysbox deb's lib/sysctl.d/99-sysbox-sysctl.conf.
SYSCTL_SETTINGS: Final = (
    ("kernel.unprivileged_userns_clone", "1"),
    ("fs.inotify.max_queued_events", "1048576"),
    ("fs.inotify.max_user_watches", "1048576"),
    ("fs.inotify.max_user_instances", "1048576"),
    ("kernel.keys.maxkeys", "20000"),
    ("kernel.keys.maxbytes", "1400000"),
    ("kernel.pid_max", "4194304"),
)

ArtifactsMode = Literal["download", "upload"]


def docker_dir(version: str) -> str:
    return f"{LIB_ROOT}/docker-{version}"


def sysbox_dir(version: str) -> str:
    return f"{LIB_ROOT}/sysbox-{version}"


def upload_path(sha256: str) -> str:
    """Where an upload of the artifact with this sha256 is staged on the host."""
    return f"{UPLOAD_DIR}/{sha256}"


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def owner_file(owner: str) -> str:
    return f"{OWNERS_DIR}/{sha256_text(owner)[:16]}"


@dataclass(frozen=True)
class Artifact:
    """One artifact for the host's architecture."""

    name: str  # "docker" or "sysbox", used in messages
    version: str
    url: str = field(repr=False)  # may carry credentials: messages use shown_url
    sha256: str

    @property
    def shown_url(self) -> str:
        """The URL as messages show it: without credentials (config/urls.py)."""
        return public_url(self.url)


@dataclass(frozen=True)
class InstallPlan:
    docker: Artifact
    sysbox: Artifact
    mode: ArtifactsMode
    allow_sysbox_restart: bool
    owner: str = ""


# --- files installed on the host -------------------------------------------------------------


def render_supervisor() -> str:
    return render(
        "sysbox_host/supervisor.sh.j2",
        data_dir=DATA_DIR,
        log_dir=LOG_DIR,
        mgr_sock=SOCKETS["sysbox-mgr"],
        fs_sock=SOCKETS["sysbox-fs"],
    )


def render_unit(sysbox_version: str) -> str:
    return render(
        "sysbox_host/unit.service.j2",
        version=sysbox_version,
        run_dir=RUN_DIR,
        data_dir=DATA_DIR,
        log_dir=LOG_DIR,
        stale_sockets=" ".join(STALE_SOCKETS),
        supervisor=SUPERVISOR_PATH,
        sysbox_dir=sysbox_dir(sysbox_version),
    )


def render_sysctl() -> str:
    lines = ["# Managed by Dockyard (SysboxHost): kernel settings sysbox needs."]
    lines += [f"{key} = {value}" for key, value in SYSCTL_SETTINGS]
    return "\n".join(lines) + "\n"


# --- scripts ---------------------------------------------------------------------------------


def _json_helpers() -> str:
    """Bash functions that emit JSON without jq (jq may not be installed yet)."""
    return render("sysbox_host/json-helpers.sh.j2", run_dir=RUN_DIR)


def preflight_script(cache_sha256s: tuple[str, ...]) -> str:
    """Read-only fact gathering: one JSON line prefixed with FACTS_PREFIX."""
    body = _json_helpers() + render(
        "sysbox_host/preflight.sh.j2",
        run_dir=RUN_DIR,
        service=SERVICE_NAME,
        cache_root=CACHE_ROOT,
        cache_dir=CACHE_DIR,
        shas=cache_sha256s,
        facts_prefix=FACTS_PREFIX,
    )
    return bash_script(body, locked=False)


def _inspect_body(plan_docker: Artifact, plan_sysbox: Artifact) -> str:
    """Inspection shared by `read` and the end of every install: one JSON state line."""
    return _json_helpers() + render(
        "sysbox_host/inspect.sh.j2",
        state_prefix=STATE_PREFIX,
        docker_dir=docker_dir(plan_docker.version),
        docker_sha=plan_docker.sha256,
        sysbox_dir=sysbox_dir(plan_sysbox.version),
        sysbox_sha=plan_sysbox.sha256,
        unit_path=UNIT_PATH,
        supervisor_path=SUPERVISOR_PATH,
        sysctl_path=SYSCTL_PATH,
        service=SERVICE_NAME,
    )


def inspect_script(docker: Artifact, sysbox: Artifact) -> str:
    """Read-only: what is installed, compared with what these artifacts would install."""
    return bash_script(_inspect_body(docker, sysbox), locked=False)


def install_script(plan: InstallPlan) -> str:
    """The idempotent install (steps 3-6 of create), ending with the inspect state line. It
    takes the artifact lock, then the host lock, itself (install.sh.j2 says which step
    holds which)."""
    body = render(
        "sysbox_host/install.sh.j2",
        mode=plan.mode,
        allow_restart=plan.allow_sysbox_restart,
        docker=plan.docker,
        sysbox=plan.sysbox,
        docker_dir=docker_dir(plan.docker.version),
        sysbox_dir=sysbox_dir(plan.sysbox.version),
        docker_binaries=" ".join(DOCKER_BINARIES),
        sysbox_binaries=" ".join(SYSBOX_BINARIES),
        prerequisites=" ".join(PREREQUISITES),
        action_prefix=ACTION_PREFIX,
        cache_root=CACHE_ROOT,
        cache_dir=CACHE_DIR,
        upload_dir=UPLOAD_DIR,
        hold_artifact_lock=hold_lock(7, ARTIFACT_LOCK),
        hold_host_lock=HOLD_HOST_LOCK,
        lib_root=LIB_ROOT,
        log_dir=LOG_DIR,
        sysctl_path=SYSCTL_PATH,
        sysctl=render_sysctl().rstrip("\n"),
        user_comment=SYSBOX_USER_COMMENT,
        supervisor_path=SUPERVISOR_PATH,
        supervisor=render_supervisor().rstrip("\n"),
        unit_path=UNIT_PATH,
        unit=render_unit(plan.sysbox.version).rstrip("\n"),
        service=SERVICE_NAME,
        sockets=" ".join(SOCKETS.values()),
        instance_marker=INSTANCE_MARKER,
        systemd_dir=SYSTEMD_DIR,
        owner=plan.owner,
        owners_dir=OWNERS_DIR,
        owner_file=owner_file(plan.owner),
    )
    return bash_script(body + _inspect_body(plan.docker, plan.sysbox), locked=False)


def staging_script(sha256s: tuple[str, ...]) -> str:
    """Make the upload staging directory root's alone (and clear anything but an upload at
    these artifacts' staged paths) before `upload_path(sha)` receives them."""
    body = render(
        "sysbox_host/stage.sh.j2",
        action_prefix=ACTION_PREFIX,
        cache_root=CACHE_ROOT,
        upload_dir=UPLOAD_DIR,
        shas=sha256s,
    )
    return bash_script(hold_lock(7, ARTIFACT_LOCK) + body, locked=False)


def remove_script(owner: str = "") -> str:
    """Unregister `owner`, then remove every shared part unless a Dockyard instance unit or
    another owner remains (then print why)."""
    body = render(
        "sysbox_host/remove.sh.j2",
        owner=owner,
        owner_file=owner_file(owner),
        owners_dir=OWNERS_DIR,
        owners_prefix=OWNERS_PREFIX,
        action_prefix=ACTION_PREFIX,
        keep_prefix=KEEP_PREFIX,
        instance_marker=INSTANCE_MARKER,
        systemd_dir=SYSTEMD_DIR,
        unit_path=UNIT_PATH,
        supervisor_path=SUPERVISOR_PATH,
        sysctl_path=SYSCTL_PATH,
        service=SERVICE_NAME,
        lib_root=LIB_ROOT,
        data_dir=DATA_DIR,
        log_dir=LOG_DIR,
        cache_root=CACHE_ROOT,
        hold_artifact_lock=hold_lock(7, ARTIFACT_LOCK),
        stale_sockets=" ".join(STALE_SOCKETS),
        run_dir=RUN_DIR,
        sysboxfs=SYSBOXFS_MOUNTPOINT,
        user_comment=SYSBOX_USER_COMMENT,
    )
    return bash_script(body)
