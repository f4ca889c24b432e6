"""Host-side scripts and files of a Dockyard host: Docker + sysbox and the shared service.

Everything here is pure text rendering. The host layout lives in these constants so the
install, inspect and remove scripts (and the tests) agree on every path.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final, Literal

from dockyard_resources.render.common import bash_script, template_env

LIB_ROOT: Final = "/usr/local/lib/dockyard"
SUPERVISOR_PATH: Final = f"{LIB_ROOT}/dockyard-sysbox-run"
CACHE_DIR: Final = "/var/cache/dockyard/artifacts"
# Uploads land here first (the cache dir may not exist yet); the install script verifies
# them and moves them into the cache.
UPLOAD_DIR: Final = "/var/tmp"
DATA_DIR: Final = "/var/lib/dockyard-sysbox"
LOG_DIR: Final = "/var/log/dockyard-sysbox"
RUN_DIR: Final = "/run/sysbox"  # hardcoded by sysbox
SYSBOXFS_MOUNTPOINT: Final = "/var/lib/sysboxfs"  # sysbox-fs default, kept: sysbox-runc expects it
SERVICE_NAME: Final = "dockyard-sysbox.service"
UNIT_PATH: Final = f"/etc/systemd/system/{SERVICE_NAME}"
SYSCTL_PATH: Final = "/etc/sysctl.d/99-dockyard-sysbox.conf"
SYSTEMD_DIR: Final = "/etc/systemd/system"
# Instance units (written by the DockyardInstance resource) carry this line; while one
# exists the shared parts stay on the host.
INSTANCE_MARKER: Final = "# dockyard-instance:"
SYSBOX_USER_COMMENT: Final = "Dockyard sysbox"
# Lines the scripts print for the Python side to parse.
ACTION_PREFIX: Final = "dockyard-action: "
STATE_PREFIX: Final = "dockyard-state: "
FACTS_PREFIX: Final = "dockyard-facts: "
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


def cache_path(sha256: str) -> str:
    return f"{CACHE_DIR}/{sha256}"


def upload_path(sha256: str) -> str:
    return f"{UPLOAD_DIR}/dockyard-artifact-{sha256}"


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def owner_file(owner: str) -> str:
    return f"{OWNERS_DIR}/{sha256_text(owner)[:16]}"


@dataclass(frozen=True)
class Artifact:
    """One artifact for the host's architecture."""

    name: str  # "docker" or "sysbox", used in messages
    version: str
    url: str
    sha256: str


@dataclass(frozen=True)
class InstallPlan:
    docker: Artifact
    sysbox: Artifact
    mode: ArtifactsMode
    allow_sysbox_restart: bool
    owner: str = ""


_ENV = template_env()

# --- files installed on the host -------------------------------------------------------------

_SUPERVISOR = _ENV.from_string(
    r"""#!/bin/bash
# Managed by Dockyard (SysboxHost): runs the one shared sysbox-mgr + sysbox-fs pair.
# Ready (sd_notify READY=1) only when both sockets exist AND their daemons are alive;
# exits non-zero as soon as either daemon dies, so systemd restarts the pair.
set -u
dir=$1
notify_socket=${NOTIFY_SOCKET:-}
# The daemons speak sd_notify themselves; readiness is ours to announce, not theirs.
unset NOTIFY_SOCKET
mgr=""
fs=""

stop_all() {
  # sysbox-fs first: it is a client of sysbox-mgr.
  if [ -n "$fs" ]; then kill -TERM "$fs" 2>/dev/null; wait "$fs" 2>/dev/null; fi
  if [ -n "$mgr" ]; then kill -TERM "$mgr" 2>/dev/null; wait "$mgr" 2>/dev/null; fi
}
trap 'stop_all; exit 0' TERM INT

wait_live() {  # socket pid name
  local i
  for i in $(seq 1 1200); do
    if ! kill -0 "$2" 2>/dev/null; then
      echo "dockyard-sysbox: $3 exited before creating $1" >&2
      return 1
    fi
    if [ -S "$1" ]; then return 0; fi
    sleep 0.1
  done
  echo "dockyard-sysbox: $3 did not create $1 within 120s" >&2
  return 1
}

echo "dockyard-sysbox: starting sysbox from $dir"
"$dir/sysbox-mgr" --data-root {{ data_dir }} --log {{ log_dir }}/sysbox-mgr.log &
mgr=$!
wait_live {{ mgr_sock }} "$mgr" sysbox-mgr || { stop_all; exit 1; }
"$dir/sysbox-fs" --log {{ log_dir }}/sysbox-fs.log &
fs=$!
wait_live {{ fs_sock }} "$fs" sysbox-fs || { stop_all; exit 1; }
echo "dockyard-sysbox: ready (sysbox-mgr pid $mgr, sysbox-fs pid $fs)"
NOTIFY_SOCKET=$notify_socket systemd-notify --ready --status="sysbox-mgr $mgr, sysbox-fs $fs"

wait -n "$mgr" "$fs"
echo "dockyard-sysbox: a sysbox daemon exited; stopping the pair so systemd restarts it" >&2
stop_all
exit 1
"""
)

_UNIT = _ENV.from_string(
    """\
# Managed by Dockyard (SysboxHost). Shared by every Dockyard instance on this host:
# instance units Requires= it, so systemd starts it with the first and stops it after the last.
[Unit]
Description=Dockyard shared sysbox (sysbox-mgr + sysbox-fs) {{ version }}
After=network-online.target
StopWhenUnneeded=yes

[Service]
Type=notify
NotifyAccess=all
ExecStartPre=/bin/mkdir -p {{ run_dir }} {{ data_dir }} {{ log_dir }}
# Sockets left by an unclean shutdown would look alive to clients: remove them first.
ExecStartPre=/bin/rm -f {{ stale_sockets }}
ExecStart={{ supervisor }} {{ sysbox_dir }}
ExecStopPost=/bin/rm -f {{ stale_sockets }}
# Only the supervisor gets SIGTERM; it stops sysbox-fs before sysbox-mgr.
KillMode=mixed
Restart=on-failure
RestartSec=2
TimeoutStartSec=180
TimeoutStopSec=60
StandardOutput=append:{{ log_dir }}/dockyard-sysbox.log
StandardError=append:{{ log_dir }}/dockyard-sysbox.log
"""
)


def render_supervisor() -> str:
    return _SUPERVISOR.render(
        data_dir=DATA_DIR,
        log_dir=LOG_DIR,
        mgr_sock=SOCKETS["sysbox-mgr"],
        fs_sock=SOCKETS["sysbox-fs"],
    )


def render_unit(sysbox_version: str) -> str:
    return _UNIT.render(
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

# Emits JSON strings from bash without jq (jq may not be installed yet).
_JSON_HELPERS = _ENV.from_string(
    r"""
jstr() {
  local s=${1//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\n'/\\n}
  s=${s//$'\t'/\\t}
  printf '"%s"' "$s"
}
jbool() { if "$@" >/dev/null 2>&1; then printf true; else printf false; fi; }
jlist() {
  local first=1 item
  printf '['
  for item in "$@"; do
    [ "$first" = 1 ] || printf ','
    first=0
    jstr "$item"
  done
  printf ']'
}
free_mb() {
  local v
  v=$(df -Pm "$1" 2>/dev/null | awk 'NR==2 {print $4}')
  echo "${v:-0}"
}
listening_sockets() {  # unix sockets under /run/sysbox with a listener
  local sock
  for sock in {{ run_dir }}/*.sock; do
    [ -S "$sock" ] || continue
    if ss -xlnH 2>/dev/null | awk '{print $5}' | grep -qxF "$sock"; then echo "$sock"; fi
  done
}
"""
)


def _json_helpers() -> str:
    return _JSON_HELPERS.render(run_dir=RUN_DIR)


_PREFLIGHT = _ENV.from_string(
    r"""
os_id=""; os_version=""; os_pretty=""
if [ -r /etc/os-release ]; then
  os_id=$(. /etc/os-release; echo "${ID:-}")
  os_version=$(. /etc/os-release; echo "${VERSION_ID:-}")
  os_pretty=$(. /etc/os-release; echo "${PRETTY_NAME:-}")
fi
distro_active=()
for unit in sysbox.service sysbox-mgr.service sysbox-fs.service; do
  if systemctl is-active --quiet "$unit" 2>/dev/null; then distro_active+=("$unit"); fi
done
foreign=()
if ! systemctl is-active --quiet {{ service }} 2>/dev/null; then
  mapfile -t foreign < <(listening_sockets)
fi
cached=()
for sha in {{ shas }}; do
  if [ -f {{ cache_dir }}/"$sha" ]; then cached+=("$sha"); fi
done
printf '%s{' {{ facts_prefix | q }}
printf '"distroId":%s,' "$(jstr "$os_id")"
printf '"distroVersion":%s,' "$(jstr "$os_version")"
printf '"distroName":%s,' "$(jstr "$os_pretty")"
printf '"kernel":%s,' "$(jstr "$(uname -r)")"
printf '"arch":%s,' "$(jstr "$(uname -m)")"
printf '"pid1":%s,' "$(jstr "$(cat /proc/1/comm 2>/dev/null || true)")"
printf '"freeMbUsrLocal":%s,' "$(free_mb /usr/local)"
printf '"freeMbVar":%s,' "$(free_mb /var)"
printf '"shiftfs":%s,' "$(jbool grep -qw '^shiftfs' /proc/modules)"
printf '"distroSysboxActive":%s,' "$(jlist "${distro_active[@]}")"
printf '"foreignSockets":%s,' "$(jlist "${foreign[@]}")"
printf '"cloudInit":%s,' "$(jbool command -v cloud-init)"
printf '"aptDpkg":%s,' "$(jbool bash -c 'command -v apt-get && command -v dpkg-deb')"
printf '"cachedSha256":%s' "$(jlist "${cached[@]}")"
printf '}\n'
"""
)


def preflight_script(cache_sha256s: tuple[str, ...]) -> str:
    """Read-only fact gathering: one JSON line prefixed with FACTS_PREFIX."""
    body = _json_helpers() + _PREFLIGHT.render(
        run_dir=RUN_DIR,
        service=SERVICE_NAME,
        cache_dir=CACHE_DIR,
        shas=" ".join(cache_sha256s),
        facts_prefix=FACTS_PREFIX,
    )
    return bash_script(body, locked=False)


# Inspection shared by `read` and the end of every install: one JSON state line.
_INSPECT = _ENV.from_string(
    r"""
install_status() {  # dir sha256 -> "ok" | why it is not
  local dir=$1 sha=$2
  # The install script verified (or built) this dir under the host lock a moment ago:
  # hashing ~250 MB of binaries again would only cost time.
  case " ${verified_dirs:-} " in *" $dir=$sha "*) echo ok; return ;; esac
  if [ ! -d "$dir" ]; then echo missing; return; fi
  if [ "$(cat "$dir/.dockyard-artifact" 2>/dev/null)" != "$sha" ]; then
    echo "other artifact"; return
  fi
  if ! (cd "$dir" && sha256sum --quiet --strict -c .dockyard-manifest >/dev/null 2>&1); then
    echo "binaries changed or missing"; return
  fi
  echo ok
}
file_sha() { if [ -f "$1" ]; then sha256sum "$1" | cut -d' ' -f1; else echo ""; fi; }
subid_count() {
  local n
  n=$(grep -c '^sysbox:' "$1" 2>/dev/null) || true
  echo "${n:-0}"
}
os_pretty=$( (. /etc/os-release 2>/dev/null; echo "${PRETTY_NAME:-unknown}") )
printf '%s{' {{ state_prefix | q }}
printf '"distro":%s,' "$(jstr "$os_pretty")"
printf '"kernel":%s,' "$(jstr "$(uname -r)")"
printf '"arch":%s,' "$(jstr "$(uname -m)")"
printf '"docker":%s,' "$(jstr "$(install_status {{ docker_dir | q }} {{ docker_sha | q }})")"
printf '"sysbox":%s,' "$(jstr "$(install_status {{ sysbox_dir | q }} {{ sysbox_sha | q }})")"
printf '"unitSha256":%s,' "$(jstr "$(file_sha {{ unit_path }})")"
printf '"supervisorSha256":%s,' "$(jstr "$(file_sha {{ supervisor_path }})")"
printf '"sysctlSha256":%s,' "$(jstr "$(file_sha {{ sysctl_path }})")"
printf '"serviceActive":%s,' "$(jbool systemctl is-active --quiet {{ service }})"
printf '"sysboxUser":%s,' "$(jbool id -u sysbox)"
printf '"subuidLines":%s,' "$(subid_count /etc/subuid)"
printf '"subgidLines":%s' "$(subid_count /etc/subgid)"
printf '}\n'
"""
)


def _inspect_body(plan_docker: Artifact, plan_sysbox: Artifact) -> str:
    return _json_helpers() + _INSPECT.render(
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


_INSTALL = _ENV.from_string(
    r"""
action() { echo {{ action_prefix | q }}"$*"; }

# --- 1. cloud-init and package locks ------------------------------------------------------
if command -v cloud-init >/dev/null 2>&1; then
  rc=0
  cloud-init status --wait >/dev/null 2>&1 || rc=$?
  # rc 1 is a cloud-init crash; 2 means "done with recoverable errors".
  if [ "$rc" = 1 ]; then
    echo "cloud-init failed on this host (cloud-init status: rc 1)" >&2
    exit 1
  fi
fi
apt_quiet() {
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -qq "$@" >/dev/null
}

# --- 2. artifacts, verified before anything is installed ----------------------------------
mkdir -p {{ cache_dir }}
verify_sha() {  # file expected name
  local actual
  actual=$(sha256sum "$1" | cut -d' ' -f1)
  if [ "$actual" != "$2" ]; then
    echo "$3 artifact: sha256 mismatch: expected $2, got $actual ($4); nothing was installed" >&2
    return 1
  fi
}
fetch_artifact() {  # name sha url
  local name=$1 sha=$2 url=$3 dest={{ cache_dir }}/$2 incoming={{ upload_dir }}/dockyard-artifact-$2
  if [ -f "$dest" ]; then
    verify_sha "$dest" "$sha" "$name" "cached file $dest" && return 0
    rm -f "$dest"
  fi
{% if mode == "upload" %}
  if [ ! -f "$incoming" ]; then
    echo "$name artifact was not uploaded to $incoming" >&2
    return 1
  fi
  if ! verify_sha "$incoming" "$sha" "$name" "uploaded from $url"; then
    rm -f "$incoming"
    return 1
  fi
  cp "$incoming" "$dest.part"
  mv -f "$dest.part" "$dest"
  rm -f "$incoming"
  action "artifact $name: cached the upload of $url"
{% else %}
  if ! command -v curl >/dev/null 2>&1; then
    apt_quiet update
    apt_quiet install -y --no-install-recommends curl ca-certificates
    action "package curl installed"
  fi
  rm -f "$dest.part"
  local rc=0
  curl -fsSL --retry 5 --retry-delay 3 --retry-connrefused --connect-timeout 30 \
      -o "$dest.part" "$url" || rc=$?
  if [ "$rc" -ne 0 ]; then
    rm -f "$dest.part"
    echo "$name artifact: the host could not download $url (curl exit $rc)." >&2
    echo "If this host has no internet access, set 'artifacts: upload' for it so the" >&2
    echo "machine running Pulumi sends the artifacts, or, for an offline demo on a" >&2
    echo "local VM, use the testbed stack: make up STACK=testbed" >&2
    return 1
  fi
  if ! verify_sha "$dest.part" "$sha" "$name" "downloaded from $url"; then
    rm -f "$dest.part"
    return 1
  fi
  mv -f "$dest.part" "$dest"
  action "artifact $name: downloaded $url"
{% endif %}
}
fetch_artifact docker {{ docker.sha256 | q }} {{ docker.url | q }}
fetch_artifact sysbox {{ sysbox.sha256 | q }} {{ sysbox.url | q }}

# --- 3. prerequisites ---------------------------------------------------------------------
missing=()
for tool in {{ prerequisites }}; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ! command -v fusermount3 >/dev/null 2>&1 && ! command -v fusermount >/dev/null 2>&1; then
  # fuse3 where the distro has it (installing fuse v2 would remove fuse3 on Ubuntu).
  if apt-cache show fuse3 >/dev/null 2>&1; then missing+=(fuse3); else missing+=(fuse); fi
fi
if [ -n "${missing[*]:-}" ]; then
  apt_quiet update
  apt_quiet install -y --no-install-recommends "${missing[@]}"
  action "packages installed: ${missing[*]}"
fi

# --- 4. binaries into versioned directories -----------------------------------------------
# A directory is complete when its stamp names the artifact and its manifest verifies;
# anything else is rebuilt in a temp dir and swapped in with a rename.
install_dir() {  # name dir sha extract-command...
  local name=$1 dir=$2 sha=$3
  shift 3
  if [ "$(cat "$dir/.dockyard-artifact" 2>/dev/null)" = "$sha" ] \
      && (cd "$dir" && sha256sum --quiet --strict -c .dockyard-manifest >/dev/null 2>&1); then
    verified_dirs="${verified_dirs:-} $dir=$sha"
    return 0
  fi
  local tmp=$dir.tmp
  rm -rf "$tmp" "$tmp.x"
  mkdir -p "$tmp.x" "$tmp"
  "$@" "$tmp.x"
  local bin src
  for bin in $BINARIES; do
    src=$(find "$tmp.x" -type f -name "$bin" -path "*/$BINDIR/$bin" | head -n 1)
    if [ -z "$src" ]; then echo "$name artifact lacks $BINDIR/$bin" >&2; return 1; fi
    install -m 0755 "$src" "$tmp/$bin"
  done
  rm -rf "$tmp.x"
  (cd "$tmp" && sha256sum $BINARIES > .dockyard-manifest)
  echo "$sha" > "$tmp/.dockyard-artifact"
  rm -rf "$dir.old"
  if [ -e "$dir" ]; then mv "$dir" "$dir.old"; fi
  mv "$tmp" "$dir"
  rm -rf "$dir.old"
  verified_dirs="${verified_dirs:-} $dir=$sha"
  action "$name binaries installed into $dir"
}
extract_tar() { tar -xzf {{ cache_dir }}/{{ docker.sha256 | q }} -C "$1"; }
extract_deb() { dpkg-deb -x {{ cache_dir }}/{{ sysbox.sha256 | q }} "$1"; }
mkdir -p {{ lib_root }}
BINARIES={{ docker_binaries | q }} BINDIR=docker \
  install_dir docker {{ docker_dir | q }} {{ docker.sha256 | q }} extract_tar
BINARIES={{ sysbox_binaries | q }} BINDIR=usr/bin \
  install_dir sysbox {{ sysbox_dir | q }} {{ sysbox.sha256 | q }} extract_deb
for dir in {{ data_dir }} {{ log_dir }} {{ run_dir }}; do
  if [ ! -d "$dir" ]; then mkdir -p "$dir"; action "directory $dir created"; fi
done

# --- 5. kernel settings, sysbox user, files of the shared service -------------------------
write_file() {  # path mode content; sets wrote=1 when the file changed
  if [ ! -f "$1" ] || [ "$(cat "$1")" != "$3" ]; then
    mkdir -p "$(dirname "$1")"
    printf '%s\n' "$3" > "$1.tmp"
    chmod "$2" "$1.tmp"
    mv -f "$1.tmp" "$1"
    action "file $1 written"
    wrote=1
  fi
}
wrote=0
write_file {{ sysctl_path }} 0644 {{ sysctl | q }}
if [ "$wrote" = 1 ]; then
  # Keys this kernel lacks (e.g. unprivileged_userns_clone outside Debian/Ubuntu) are skipped.
  sysctl -e -q -p {{ sysctl_path }} >/dev/null || true
fi
if ! id -u sysbox >/dev/null 2>&1; then
  useradd -r -s /bin/false -c {{ user_comment | q }} sysbox
  action "user sysbox created"
fi
# Exactly one sysbox line in each subid file: a second one breaks container creation.
for f in /etc/subuid /etc/subgid; do
  if [ ! -e "$f" ]; then : > "$f"; fi  # not touch: a re-run must not change anything
  count=$(grep -c '^sysbox:' "$f" || true)
  if [ "$count" -gt 1 ]; then
    first=$(grep -m1 '^sysbox:' "$f")
    { grep -v '^sysbox:' "$f" || true; echo "$first"; } > "$f.tmp"
    chmod --reference="$f" "$f.tmp"
    mv -f "$f.tmp" "$f"
    action "duplicate sysbox lines removed from $f"
  elif [ "$count" = 0 ]; then
    last=$(awk -F: '{ end = $2 + $3; if (end > max) max = end } END { print max + 0 }' "$f")
    start=$(( last > 100000 ? last : 100000 ))
    echo "sysbox:$start:65536" >> "$f"
    action "sysbox line added to $f"
  fi
done
{% if owner %}
mkdir -p {{ owners_dir }}
if [ "$(cat {{ owner_file }} 2>/dev/null)" != {{ owner | q }} ]; then
  printf '%s\n' {{ owner | q }} > {{ owner_file }}.tmp
  mv -f {{ owner_file }}.tmp {{ owner_file }}
  action "owner "{{ owner | q }}" registered"
fi
{% endif %}
wrote=0
write_file {{ supervisor_path }} 0755 {{ supervisor | q }}
write_file {{ unit_path }} 0644 {{ unit | q }}
unit_changed=$wrote
if [ "$unit_changed" = 1 ]; then systemctl daemon-reload; fi

# --- 6. verify: the service starts and both sockets answer --------------------------------
sysbox_running() {
  local sock
  for sock in {{ sockets }}; do
    [ -S "$sock" ] || return 1
    ss -xlnH | awk '{print $5}' | grep -qxF "$sock" || return 1
  done
}
show_service_log() {
  tail -n 30 {{ log_dir }}/dockyard-sysbox.log >&2 2>/dev/null || true
  systemctl status --no-pager {{ service }} >&2 2>/dev/null || true
}
if systemctl is-active --quiet {{ service }}; then
  if [ "$unit_changed" = 1 ]; then
{% if allow_restart %}
    systemctl restart {{ service }}
    action "service {{ service }} restarted (allowSysboxRestart)"
{% else %}
    echo "{{ service }} is running: its new definition applies at its next start" >&2
{% endif %}
  fi
  if ! sysbox_running; then
    echo "{{ service }} is active but its sockets do not answer" >&2
    show_service_log
    exit 1
  fi
else
  # A transient unit that Requires= the service starts it, checks it while it is needed,
  # and lets StopWhenUnneeded stop it again; the explicit stop makes that synchronous.
  if ! systemd-run --quiet --wait --collect --unit="dockyard-sysbox-verify-$$" \
      --property=Requires={{ service }} --property=After={{ service }} \
      /bin/bash -c "$(declare -f sysbox_running); sysbox_running"; then
    echo "{{ service }} failed its start check (both sockets must answer)" >&2
    show_service_log
    systemctl stop {{ service }} 2>/dev/null || true
    exit 1
  fi
  systemctl stop {{ service }}
fi

# --- 7. old versions and cache entries nobody uses ----------------------------------------
if ! grep -lsF {{ instance_marker | q }} {{ systemd_dir }}/*.service >/dev/null; then
  for old in {{ lib_root }}/docker-* {{ lib_root }}/sysbox-*; do
    [ -d "$old" ] || continue
    case "$old" in {{ docker_dir | q }}|{{ sysbox_dir | q }}) continue ;; esac
    rm -rf "$old"
    action "old version $old removed"
  done
fi
for cached in {{ cache_dir }}/*; do
  [ -e "$cached" ] || continue
  case "${cached##*/}" in {{ docker.sha256 }}|{{ sysbox.sha256 }}) continue ;; esac
  rm -f "$cached"
  action "unused cache entry $cached removed"
done
"""
)


def install_script(plan: InstallPlan) -> str:
    """The idempotent install (steps 2-6 of create), ending with the inspect state line."""
    body = _INSTALL.render(
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
        cache_dir=CACHE_DIR,
        upload_dir=UPLOAD_DIR,
        lib_root=LIB_ROOT,
        data_dir=DATA_DIR,
        log_dir=LOG_DIR,
        run_dir=RUN_DIR,
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
    return bash_script(body + _inspect_body(plan.docker, plan.sysbox))


_REMOVE = _ENV.from_string(
    r"""
action() { echo {{ action_prefix | q }}"$*"; }
{% if owner %}
if [ -f {{ owner_file }} ]; then
  rm -f {{ owner_file }}
  action "owner "{{ owner | q }}" removed"
fi
{% endif %}
mapfile -t instances < <(grep -lsF {{ instance_marker | q }} {{ systemd_dir }}/*.service || true)
mapfile -t owners < <(cat {{ owners_dir }}/* 2>/dev/null || true)
if [ -n "${instances[*]:-}" ] || [ -n "${owners[*]:-}" ]; then
  echo {{ keep_prefix | q }}"${instances[*]:-}"
  echo {{ owners_prefix | q }}"${owners[*]:-}"
  exit 0
fi
if [ -f {{ unit_path }} ] || systemctl is-active --quiet {{ service }}; then
  systemctl stop {{ service }} 2>/dev/null || true
fi
for f in {{ unit_path }} {{ supervisor_path }} {{ sysctl_path }}; do
  if [ -e "$f" ]; then rm -f "$f"; action "file $f removed"; fi
done
systemctl daemon-reload
systemctl reset-failed {{ service }} 2>/dev/null || true
for d in {{ lib_root }}/docker-* {{ lib_root }}/sysbox-* {{ data_dir }} {{ log_dir }} \
    {{ cache_root }}; do
  if [ -e "$d" ]; then rm -rf "$d"; action "directory $d removed"; fi
done
rmdir {{ owners_dir }} 2>/dev/null || true
rmdir {{ lib_root }} 2>/dev/null && action "directory {{ lib_root }} removed" || true
rm -f {{ stale_sockets }}
rmdir {{ run_dir }} 2>/dev/null || true
if ! mountpoint -q {{ sysboxfs }}; then rmdir {{ sysboxfs }} 2>/dev/null || true; fi
# Only our own user: a distro sysbox package's user is not ours to delete.
if [ "$(getent passwd sysbox | cut -d: -f5)" = {{ user_comment | q }} ]; then
  userdel sysbox
  action "user sysbox removed"
fi
for f in /etc/subuid /etc/subgid; do
  if grep -q '^sysbox:' "$f" 2>/dev/null; then
    { grep -v '^sysbox:' "$f" || true; } > "$f.tmp"
    chmod --reference="$f" "$f.tmp"
    mv -f "$f.tmp" "$f"
    action "sysbox lines removed from $f"
  fi
done
"""
)


def remove_script(owner: str = "") -> str:
    """Unregister `owner`, then remove every shared part unless a Dockyard instance unit or
    another owner remains (then print why)."""
    body = _REMOVE.render(
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
        cache_root=CACHE_DIR.rsplit("/", 1)[0],
        stale_sockets=" ".join(STALE_SOCKETS),
        run_dir=RUN_DIR,
        sysboxfs=SYSBOXFS_MOUNTPOINT,
        user_comment=SYSBOX_USER_COMMENT,
    )
    return bash_script(body)
