"""Install, inspect and remove one Dockyard instance on a host over SSH.

Rendering lives in `render.instance`; this module decides the order of steps and which of
them run under the host lock. Mutations of shared state (users, groups, unit files,
daemon-reload, iptables) run under the lock; waiting for dockerd to start or stop does not,
so instances created in parallel do not queue behind each other's slow starts.
"""

from __future__ import annotations

import base64
import ipaddress
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Protocol

from dockyard_resources.config.values import FORBIDDEN_TREES, HOME_PARENTS, SYSTEM_DIRS
from dockyard_resources.errors import DockyardError
from dockyard_resources.render import facts, iptables
from dockyard_resources.render.common import bash_script, quote, quote_all
from dockyard_resources.render.instance import (
    DIR_MODES,
    ROOT_MARKER_FILE,
    InstanceSpec,
    instance_files,
)
from dockyard_resources.render.layout import (
    INSTANCE_MARKER,
    ROOT_MARKER,
    SYSBOX_SERVICE,
    SYSTEMD_DIR,
)

CHANGED_MARK = "DOCKYARD_CHANGED="
# What delete left on the host and why (another owner's instance, a root without our marker).
KEEP_MARK = "DOCKYARD_KEEP="
# Left by earlier versions (the DinD ownership watcher, see docs/instances.md): removed.
OBSOLETE_FILES = (("bin", "dockyard-dind-watcher"), ("run", "dind-watcher.pid"))


def guards() -> str:
    """The ownership and path checks (instance_guards.sh), sourced into scripts verbatim."""
    return resources.files("dockyard_resources.hostops").joinpath("instance_guards.sh").read_text()


def _system_dir_guard() -> str:
    """Case statements refusing every system directory and tree and every home directory,
    from the config layer's own lists (the host never trusts that inputs went through it)."""
    trees = sorted(FORBIDDEN_TREES)

    def covered(path: str) -> bool:  # already matched by a tree's "<tree>/*" pattern
        return any(path.startswith(tree + "/") for tree in trees)

    exact = "|".join(p for p in sorted(SYSTEM_DIRS | set(trees)) if not covered(p))
    inside = "|".join(f"{tree}/*" for tree in trees if not covered(tree))
    nested = "|".join(f"{home}/*/*" for home in HOME_PARENTS)
    homes = "|".join(f"{home}/*" for home in HOME_PARENTS)
    return (
        'case "$root" in\n'
        f"  {exact}|{inside})\n"
        '    dy_refuse "refusing $root: a system directory is never an instance root" ;;\n'
        f"  {nested}) ;;\n"
        f"  {homes})\n"
        '    dy_refuse "refusing $root: a home directory is never an instance root" ;;\n'
        "esac\n"
    )


class Runner(Protocol):
    """The part of `transport.SshSession` used here (lets tests pass a fake)."""

    def run(
        self, script: str, *, step: str, sudo: bool = ..., timeout: float = ..., check: bool = ...
    ) -> Any: ...


class InstanceError(DockyardError):
    """The instance cannot be created or changed as asked; the message says why."""


# --- conflict check ---------------------------------------------------------------------


@dataclass(frozen=True)
class HostNetworks:
    """What the host already uses: routes, addresses and other instances' networks."""

    routes: list[dict[str, Any]]
    addrs: list[dict[str, Any]]
    own_devices: frozenset[str]
    others: list[dict[str, Any]] = field(default_factory=list)


def _probe_script(spec: InstanceSpec) -> str:
    docker = quote(spec.docker_dir + "/docker")
    return bash_script(
        f"""\
{facts.SHELL_HELPER}
routes=$(ip -j -4 route show table all 2>/dev/null || true)
dy_fact routes "${{routes:-[]}}"
addrs=$(ip -j -4 addr show 2>/dev/null || true)
dy_fact addrs "${{addrs:-[]}}"
own=({quote(spec.bridge_name)})
# Bridges of this instance's own user-defined networks (a re-run must not trip over them).
if [ -S {quote(spec.socket_path)} ] && [ -x {docker} ]; then
  for id in $(timeout 30 {docker} -H {quote(spec.docker_host)} network ls -q --no-trunc \\
                --filter driver=bridge 2>/dev/null); do
    own+=("br-${{id:0:12}}")
  done
fi
dy_fact own "$(jq -cn '$ARGS.positional' --args "${{own[@]}}")"
for unit in {SYSTEMD_DIR}/*.service; do
  [ -f "$unit" ] || continue
  p=$(sed -n 's/^{INSTANCE_MARKER}//p' "$unit" | head -n1)
  r=$(sed -n 's/^{ROOT_MARKER}//p' "$unit" | head -n1)
  [ -n "$p" ] || continue
  manifest=$(jq -c . "$r/etc/instance.json" 2>/dev/null || echo null)
  dy_fact other "$(jq -cn --arg prefix "$p" --arg root "$r" \\
    --argjson manifest "${{manifest:-null}}" '$ARGS.named')"
done
""",
        locked=False,
    )


def parse_probe(stdout: str) -> HostNetworks:
    """The `routes`, `addrs`, `own` and `other` facts of the probe script."""
    found = facts.parse(stdout)

    def last(name: str) -> Any:
        return (found.get(name) or [[]])[-1]

    return HostNetworks(
        routes=list(last("routes")),
        addrs=list(last("addrs")),
        own_devices=frozenset(str(x) for x in last("own")),
        others=list(found.get("other", [])),
    )


def _overlaps(spec: InstanceSpec, what: str, net: ipaddress.IPv4Network) -> list[str]:
    ours = {"bridgeCidr": spec.bridge_cidr.network, "poolBase": spec.pool_base}
    return [f"{key} {mine} overlaps {what}" for key, mine in ours.items() if mine.overlaps(net)]


def _route_conflicts(spec: InstanceSpec, host: HostNetworks) -> list[str]:
    problems: list[str] = []
    for route in host.routes:
        dst, dev = str(route.get("dst", "")), str(route.get("dev", ""))
        skip = dst in ("", "default") or dev in host.own_devices or dev == "lo"
        if skip or route.get("type", "unicast") != "unicast":
            continue
        try:
            net = ipaddress.IPv4Network(dst, strict=False)
        except ValueError:
            continue
        problems += _overlaps(spec, f"the host route {dst} dev {dev}", net)
    return problems


def _address_conflicts(spec: InstanceSpec, host: HostNetworks) -> list[str]:
    problems: list[str] = []
    for link in host.addrs:
        dev = str(link.get("ifname", ""))
        if dev in host.own_devices or dev == "lo":
            continue
        for info in link.get("addr_info", []):
            if info.get("family") == "inet":
                iface = ipaddress.IPv4Interface(f"{info['local']}/{info.get('prefixlen', 32)}")
                problems += _overlaps(spec, f"address {iface} on {dev}", iface.network)
    return problems


def _instance_conflicts(spec: InstanceSpec, host: HostNetworks) -> list[str]:
    problems: list[str] = []
    for other in host.others:
        prefix, root = str(other.get("prefix")), str(other.get("root"))
        if prefix == spec.prefix:
            if root != spec.root:
                problems.append(
                    f"prefix {prefix} is already used on this host by the instance at {root}"
                )
            continue
        if root == spec.root:
            problems.append(f"root {root} is already used on this host by instance {prefix}")
        nets = (other.get("manifest") or {}).get("networks", {})
        for key in ("bridgeNetwork", "poolBase"):
            if nets.get(key):
                what = f"{key} {nets[key]} of Dockyard instance {prefix} (root {root})"
                problems += _overlaps(spec, what, ipaddress.IPv4Network(nets[key]))
    return problems


def find_conflicts(spec: InstanceSpec, host: HostNetworks) -> list[str]:
    """Every way the instance's networks or names collide with what the host already has."""
    problems = (
        _route_conflicts(spec, host)
        + _address_conflicts(spec, host)
        + _instance_conflicts(spec, host)
    )
    # One network often shows up several times (main and local tables): report it once.
    return list(dict.fromkeys(problems))


def check_conflicts(run: Runner, spec: InstanceSpec) -> None:
    result = run.run(_probe_script(spec), step=f"probe networks for {spec.prefix}")
    problems = find_conflicts(spec, parse_probe(result.stdout))
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise InstanceError(
            f"instance {spec.prefix} cannot be created on this host:\n{lines}\n"
            "choose other networks (bridgeCidr/fixedCidr/poolBase) or prefix/root in the"
            " stack config"
        )


# --- install ----------------------------------------------------------------------------


def _install_script(spec: InstanceSpec, *, adopt: bool = False, enabled: bool = True) -> str:
    """The converging install, under the host lock. `adopt` (updates only) accepts the
    unowned unit, root and user of an instance made by an earlier Dockyard version.
    `enabled=False` parks the instance: everything stays installed, the unit is disabled."""
    u, g, root = quote(spec.user), quote(spec.group), quote(spec.root)
    unit = quote(spec.service_name)
    boot = (
        f"systemctl is-enabled -q {unit} 2>/dev/null || systemctl enable -q {unit}"
        if enabled
        else f"systemctl disable -q {unit} 2>/dev/null || true"
    )
    # A running instance gets missing rules or a missing bridge back without a restart.
    repair = (
        f"if systemctl is-active -q {unit}; then {quote(spec.path('bin', 'dockyard-net'))} up; fi"
        if enabled
        else ""
    )
    members = ",".join(spec.members)
    mkdirs = "\n".join(
        f"install -d -o root -g {g} -m {mode:04o} {quote(spec.path(d) if d else spec.root)}"
        for d, mode in DIR_MODES.items()
    )
    puts = []
    for f in instance_files(spec):
        payload = base64.b64encode(f.content.encode()).decode()
        owner = f"root:{spec.group}" if f.group_readable else "root:root"
        puts.append(f"put_file {quote(f.path)} {f.mode:o} {quote(owner)} {payload}")
    puts_text = "\n".join(puts)
    return bash_script(
        f"""\
# Values used in messages, quoted once here.
prefix={quote(spec.prefix)}
docker_dir={quote(spec.docker_dir)}
sysbox_dir={quote(spec.sysbox_dir)}
# Preflight: nothing changes on the host unless all of it holds.
missing=()
for member in {quote_all(spec.members)}; do
  id -u -- "$member" >/dev/null 2>&1 || missing+=("$member")
done
if [ ${{#missing[@]}} -gt 0 ]; then
  echo "members of $prefix: no such user on this host: ${{missing[*]}};" \\
       "create the user(s) first or remove them from members" >&2
  exit 3
fi
[ -x {quote(spec.docker_dir + "/dockerd")} ] || {{
  echo "dockerDir $docker_dir has no dockerd: is the SysboxHost installed?" >&2
  exit 3; }}
[ -x {quote(spec.sysbox_dir + "/sysbox-runc")} ] || {{
  echo "sysboxDir $sysbox_dir has no sysbox-runc: is the SysboxHost installed?" >&2
  exit 3; }}
[ -f {SYSTEMD_DIR}/{SYSBOX_SERVICE} ] || {{
  echo "{SYSBOX_SERVICE} is not installed: create the SysboxHost first" >&2; exit 3; }}
{guards()}
root={root}
owner={quote(spec.owner)}
unit={quote(spec.unit_path)}
[ -n "$owner" ] || dy_refuse "instance $prefix: no owner given"
{_system_dir_guard()}
dy_check_path "$root"
dy_check_nesting "$root" "$unit"
dy_check_owner {quote(spec.prefix)} "$root" "$unit" {u} "$owner" {1 if adopt else 0}

changed=0
put_file() {{  # path mode owner base64: replace only when the content differs
  local tmp="$1.dockyard-new"
  printf '%s' "$4" | base64 -d >"$tmp"
  if cmp -s "$tmp" "$1"; then
    rm -f "$tmp"
  else
    chmod "$2" "$tmp"; chown "$3" "$tmp"; mv -f "$tmp" "$1"; changed=1
  fi
  chmod "$2" "$1"; chown "$3" "$1"
}}

# The root appears complete with its marker or not at all (a rename is atomic), so a run
# cut short leaves nothing a re-run would take for a foreign directory.
if [ ! -d "$root" ]; then
  rm -rf -- "$root".dockyard-new.*
  tmp=$(mktemp -d -- "$root.dockyard-new.XXXXXX")
  printf 'owner=%s\nprefix=%s\n' "$owner" {quote(spec.prefix)} >"$tmp/{ROOT_MARKER_FILE}"
  mv -T -- "$tmp" "$root"
fi
getent group {g} >/dev/null || groupadd --system {g}
if id -u {u} >/dev/null 2>&1; then
  usermod --comment {quote(spec.user_comment)} {u}
else
  useradd --system --gid {g} --home-dir {root} --no-create-home \\
    --shell /usr/sbin/nologin --comment {quote(spec.user_comment)} {u}
fi
{mkdirs}
# Files of earlier Dockyard versions that no longer belong to an instance.
rm -f {quote_all(spec.path(*p) for p in OBSOLETE_FILES)}
{puts_text}
if ! cmp -s {quote(spec.sysbox_dir + "/sysbox-runc")} {quote(spec.path("bin", "sysbox-runc"))}; then
  install -m 0755 -o root -g {g} {quote(spec.sysbox_dir + "/sysbox-runc")} \\
    {quote(spec.path("bin", "sysbox-runc"))}
  changed=1
fi
gpasswd -M {quote(members)} {g} >/dev/null
if [ "$changed" = 1 ]; then systemctl daemon-reload; fi
# Binaries replaced under a running daemon (an upgrade of the SysboxHost's artifacts):
# the instance must restart onto them.
{_stale_binaries_function(spec)}
stale=$(dy_stale_binaries)
if [ -n "$stale" ]; then echo "instance $prefix: $stale: restarting"; changed=1; fi
{boot}
{repair}
echo "{CHANGED_MARK}$changed"
"""
    )


def _stale_binaries_function(spec: InstanceSpec) -> str:
    """`dy_stale_binaries`: prints why the running daemons are not this install's binaries
    (the file they run was replaced or moved), nothing when they are or nothing runs."""
    unit = quote(spec.service_name)
    expected = {
        "dockerd": quote(spec.docker_dir + "/dockerd"),
        "containerd": quote(spec.docker_dir + "/containerd"),
    }
    return f"""\
dy_stale_binaries() {{
  local pid exe
  pid=$(systemctl show -P MainPID {unit} 2>/dev/null || true)
  if [ -n "$pid" ] && [ "$pid" != 0 ] && exe=$(readlink "/proc/$pid/exe" 2>/dev/null); then
    [ "$exe" = {expected["dockerd"]} ] || echo "dockerd runs $exe"
  fi
  pid=$(cat {quote(spec.path("run", "containerd.pid"))} 2>/dev/null || true)
  if [ -n "$pid" ] && grep -qF {quote("/" + spec.service_name)} "/proc/$pid/cgroup" 2>/dev/null \\
      && exe=$(readlink "/proc/$pid/exe" 2>/dev/null); then
    [ "$exe" = {expected["containerd"]} ] || echo "containerd runs $exe"
  fi
  return 0
}}"""


def _park_script(spec: InstanceSpec) -> str:
    """Stop a parked instance; the shared sysbox service stops with the last user of it."""
    return bash_script(f"systemctl stop {quote(spec.service_name)}", locked=False)


# Restarts of one host's instances wait for each other: an upgrade that restarts them all
# never has them all down at once.
RESTART_LOCK = "/run/dockyard-restart.lock"


def _activate_script(spec: InstanceSpec, restart: bool) -> str:
    """Start the unit; with `restart`, a running unit restarts (one instance of the host at
    a time), while a stopped one just starts (a new instance never waits for the others)."""
    unit = quote(spec.service_name)
    restart_lock = f"flock -w 900 {RESTART_LOCK}"
    activate = (
        f"if systemctl is-active -q {unit}; then {restart_lock} systemctl restart {unit};"
        f" else systemctl start {unit}; fi"
        if restart
        else f"systemctl start {unit}"
    )
    return bash_script(
        f"""\
systemctl reset-failed {unit} 2>/dev/null || true
if ! {{ {activate}; }}; then
  echo "--- systemctl status" {quote(spec.service_name)} >&2
  systemctl status --no-pager -l {unit} >&2 || true
  echo "--- dockerd.log" >&2; tail -n 25 {quote(spec.path("log", "dockerd.log"))} >&2 || true
  echo "--- containerd.log" >&2
  tail -n 10 {quote(spec.path("log", "containerd.log"))} >&2 || true
  exit 1
fi
""",
        locked=False,
    )


def _quiet(_message: str) -> None:
    return None


def install(
    run: Runner,
    spec: InstanceSpec,
    *,
    check_networks: bool = True,
    adopt: bool = False,
    enabled: bool = True,
    log: Callable[[str], None] = _quiet,
) -> None:
    """Converge the instance to `spec` and leave it running (restarted only on change), or,
    with `enabled=False`, installed but stopped and disabled (its data and networks kept)."""
    if check_networks:
        log("checking the host's routes, addresses and other instances' networks")
        check_conflicts(run, spec)
    log("checking ownership and installing (under the host lock)")
    result = run.run(
        _install_script(spec, adopt=adopt, enabled=enabled), step=f"install instance {spec.prefix}"
    )
    if not enabled:
        log(f"parking: stopping {spec.service_name} (data, user, group and networks stay)")
        run.run(_park_script(spec), step=f"stop {spec.service_name}", timeout=300)
        return
    changed = f"{CHANGED_MARK}1" in result.stdout
    log(f"{'(re)starting' if changed else 'starting'} {spec.service_name}")
    # Not under the host lock: dockerd needs 10+ s to answer on a slow host.
    run.run(
        _activate_script(spec, restart=changed),
        step=f"{'restart' if changed else 'start'} {spec.service_name}",
    )
    log(f"{spec.service_name} is running; DOCKER_HOST={spec.docker_host}")


# --- inspect ----------------------------------------------------------------------------


@dataclass(frozen=True)
class InstanceState:
    unit_present: bool
    root_present: bool
    user_present: bool
    group_present: bool
    active: str
    enabled: str
    members: tuple[str, ...]
    socket: str  # "owner:group:mode" or ""
    bridge_present: bool
    rules_present: bool
    default_runtime: str
    files_in_sync: bool
    stale_binaries: str = ""  # why the running daemons are not the installed binaries

    @property
    def exists(self) -> bool:
        return any((self.unit_present, self.root_present, self.user_present, self.group_present))

    def problems(self, spec: InstanceSpec, *, enabled: bool = True) -> list[str]:
        if not enabled:  # parked: installed, stopped and disabled, data and networks kept
            parked = [
                (self.unit_present, f"unit {spec.service_name} is missing"),
                (self.active != "active", f"{spec.service_name} runs but enabled is false"),
                (self.enabled != "enabled", f"{spec.service_name} starts at boot"),
                (self.root_present, f"root {spec.root} is missing"),
                (self.bridge_present, f"bridge {spec.bridge_name} is missing"),
                (self.files_in_sync, "instance files differ from the configuration"),
            ]
            return [message for ok, message in parked if not ok]
        checks = [
            (self.unit_present, f"unit {spec.service_name} is missing"),
            (self.active == "active", f"{spec.service_name} is {self.active or 'unknown'}"),
            (self.enabled == "enabled", f"{spec.service_name} is {self.enabled or 'unknown'}"),
            (
                self.socket == f"root:{spec.group}:660",
                f"socket {spec.socket_path} is {self.socket or 'missing'}"
                f" (want root:{spec.group}:660)",
            ),
            (self.bridge_present, f"bridge {spec.bridge_name} is missing"),
            (self.rules_present, f"iptables rules tagged {spec.tag} are incomplete"),
            (
                self.default_runtime == "sysbox-runc",
                f"docker info default runtime is {self.default_runtime or 'unanswered'}",
            ),
            (self.files_in_sync, "instance files differ from the configuration"),
            (not self.stale_binaries, f"{self.stale_binaries}: a restart picks up the new ones"),
        ]
        return [message for ok, message in checks if not ok]

    def health(self, spec: InstanceSpec, *, enabled: bool = True) -> dict[str, Any]:
        return {
            "serviceActive": self.active == "active",
            "serviceEnabled": self.enabled == "enabled",
            "socket": self.socket,
            "bridgePresent": self.bridge_present,
            "rulesPresent": self.rules_present,
            "defaultRuntime": self.default_runtime,
            "filesInSync": self.files_in_sync,
            "problems": self.problems(spec, enabled=enabled),
        }


def _inspect_script(spec: InstanceSpec) -> str:
    docker = quote(spec.docker_dir + "/docker")
    unit = quote(spec.service_name)
    sums = []
    for f in instance_files(spec):
        sums.append(f'[ "$(sha256sum <{quote(f.path)} 2>/dev/null | cut -c1-64)" = {f.sha256} ]')
    sums.append(
        f"cmp -s {quote(spec.sysbox_dir + '/sysbox-runc')} {quote(spec.path('bin', 'sysbox-runc'))}"
    )
    files_ok = " && ".join(sums)
    rules_ok = iptables.all_present_command(spec.rules(), spec.tag)
    return bash_script(
        f"""\
{facts.SHELL_HELPER}
flag() {{ if "$@" >/dev/null 2>&1; then echo 1; else echo 0; fi; }}
socket=""
if [ -S {quote(spec.socket_path)} ]; then socket=$(stat -c '%U:%G:%a' {quote(spec.socket_path)}); fi
runtime=""
if [ -S {quote(spec.socket_path)} ] && [ -x {docker} ]; then
  runtime=$(timeout 30 {docker} -H {quote(spec.docker_host)} info \\
    --format '{{{{.DefaultRuntime}}}}' 2>/dev/null || true)
fi
{_stale_binaries_function(spec)}
dy_fact instance "$(jq -cn \\
  --arg unit "$(flag test -f {quote(spec.unit_path)})" \\
  --arg root "$(flag test -d {quote(spec.root)})" \\
  --arg user "$(flag id -u {quote(spec.user)})" \\
  --arg group "$(flag getent group {quote(spec.group)})" \\
  --arg active "$(systemctl is-active {unit} 2>/dev/null || true)" \\
  --arg enabled "$(systemctl is-enabled {unit} 2>/dev/null || true)" \\
  --arg members "$(getent group {quote(spec.group)} | cut -d: -f4)" \\
  --arg socket "$socket" \\
  --arg bridge "$(flag ip link show dev {quote(spec.bridge_name)})" \\
  --arg rules "$(if {{ {rules_ok}; }}; then echo 1; else echo 0; fi)" \\
  --arg runtime "$runtime" \\
  --arg files "$(if {{ {files_ok}; }}; then echo 1; else echo 0; fi)" \\
  --arg stale "$(dy_stale_binaries | paste -sd ';')" \\
  '$ARGS.named')"
""",
        locked=False,
    )


def parse_state(stdout: str) -> InstanceState:
    """The `instance` fact of the inspect script (all values are strings; flags "1"/"0")."""
    values: dict[str, str] = facts.one(stdout, "instance")
    return InstanceState(
        unit_present=values.get("unit") == "1",
        root_present=values.get("root") == "1",
        user_present=values.get("user") == "1",
        group_present=values.get("group") == "1",
        active=values.get("active", ""),
        enabled=values.get("enabled", ""),
        members=tuple(m for m in values.get("members", "").split(",") if m),
        socket=values.get("socket", ""),
        bridge_present=values.get("bridge") == "1",
        rules_present=values.get("rules") == "1",
        default_runtime=values.get("runtime", ""),
        files_in_sync=values.get("files") == "1",
        stale_binaries=values.get("stale", ""),
    )


def inspect(run: Runner, spec: InstanceSpec) -> InstanceState:
    result = run.run(_inspect_script(spec), step=f"inspect instance {spec.prefix}")
    return parse_state(result.stdout)


# --- remove -----------------------------------------------------------------------------


def _stop_script(spec: InstanceSpec) -> str:
    """Unlocked: kill containers fast (their data goes anyway), then stop and disable.
    Another owner's instance of the same name is left alone (the locked remove says so)."""
    docker = quote(spec.docker_dir + "/docker")
    unit = quote(spec.service_name)
    return bash_script(
        f"""\
{guards()}
dy_is_ours {quote(spec.unit_path)} {quote(spec.root)} {quote(spec.owner)} || exit 0
if [ -S {quote(spec.socket_path)} ] && [ -x {docker} ]; then
  ids=$(timeout 30 {docker} -H {quote(spec.docker_host)} ps -q 2>/dev/null || true)
  if [ -n "$ids" ]; then
    # shellcheck disable=SC2086
    timeout 120 {docker} -H {quote(spec.docker_host)} kill $ids >/dev/null 2>&1 || true
  fi
fi
if systemctl cat {unit} >/dev/null 2>&1; then
  systemctl disable -q {unit} 2>/dev/null || true
  systemctl stop {unit} || true
fi
""",
        locked=False,
    )


def _addr_script() -> str:
    return bash_script("ip -j -4 addr show", locked=False)


def pool_bridges(spec: InstanceSpec, addrs: list[dict[str, Any]]) -> list[str]:
    """Bridges Docker made for this instance's user-defined networks (addresses in its pool)."""
    found = []
    for link in addrs:
        name = str(link.get("ifname", ""))
        if not name.startswith("br-"):
            continue
        for info in link.get("addr_info", []):
            if info.get("family") == "inet" and ipaddress.IPv4Address(info["local"]) in (
                spec.pool_base
            ):
                found.append(name)
                break
    return found


def _remove_script(spec: InstanceSpec, bridges: list[str]) -> str:
    unit = quote(spec.service_name)
    task_dir = quote(spec.path("run", "containerd", "io.containerd.runtime.v2.task"))
    docker_pid, containerd_pid = spec.path("run", "docker.pid"), spec.path("run", "containerd.pid")
    return bash_script(
        f"""\
{guards()}
root={quote(spec.root)}
owner={quote(spec.owner)}
unit_file={quote(spec.unit_path)}
keep() {{ echo "{KEEP_MARK}$*"; }}
{_system_dir_guard()}
if ! dy_is_ours "$unit_file" "$root" "$owner"; then
  keep "instance {spec.prefix} on this host belongs to" \
    "$(dy_unit_field "$unit_file" owner)$(dy_marker_owner "$root"), not to $owner: left alone"
  exit 0
fi
legacy_root=$(dy_legacy_root "$unit_file")
# Leftover processes of this instance only: a pid file outlives its process (a reboot),
# so a pid is killed only while it runs in this instance's unit or container.
for pidfile in {quote(docker_pid)} {quote(containerd_pid)}; do
  pid=$(cat "$pidfile" 2>/dev/null || true)
  if dy_pid_of_unit "$pid" {unit}; then kill -KILL "$pid" 2>/dev/null || true; fi
done
if [ -d {task_dir} ]; then
  for task in {task_dir}/*/*; do
    [ -d "$task" ] || continue
    ns=$(basename "$(dirname "$task")"); id=$(basename "$task")
    for pidfile in "$task/init.pid" "$task/shim.pid"; do
      pid=$(cat "$pidfile" 2>/dev/null || true)
      if dy_pid_of_container "$pid" "$id" || dy_pid_of_unit "$pid" {unit}; then
        kill -KILL "$pid" 2>/dev/null || true
      fi
    done
    # runc state and shim socket live in shared /run/containerd: remove only these ids'.
    [ -n "$ns" ] && [ -n "$id" ] && rm -rf "/run/containerd/runc/$ns/$id"
    shim=$(printf '%s' {quote(spec.containerd_socket)}"/$ns/$id" | sha256sum | cut -c1-64)
    rm -f "/run/containerd/s/$shim"
  done
fi
{iptables.sweep_function(spec.tag)}
dockyard_sweep_rules
for link in {quote_all([spec.bridge_name, *bridges])}; do
  ip link show dev "$link" >/dev/null 2>&1 && ip link del dev "$link"
done
rm -f "$unit_file"
rm -rf "$unit_file.d"
systemctl daemon-reload
systemctl reset-failed {unit} 2>/dev/null || true
marker_owner=$(dy_marker_owner "$root")
ours=0
if [ -n "$marker_owner" ] && [ "$marker_owner" = "$owner" ]; then ours=1; fi
if [ -z "$marker_owner" ] && [ "$legacy_root" = "$root" ]; then ours=1; fi
if [ -d "$root" ] && [ ! -L "$root" ]; then
  if [ "$ours" = 1 ]; then
    # Unmount everything below the root, deepest first (overlay, netns, shm mounts).
    awk -v r="$root" '{{ p = $2; gsub(/\\\\040/, " ", p)
      if (p == r || index(p, r "/") == 1) print p }}' /proc/mounts \\
      | sort -r | while IFS= read -r mnt; do umount -l "$mnt" || true; done
    rm -rf --one-file-system -- "$root"
  else
    keep "root $root left in place: its marker names ${{marker_owner:-nobody}}, not $owner"
  fi
fi
case "$(dy_user_comment {quote(spec.user)})" in
  {quote(spec.user_comment)}|{quote("Dockyard instance " + spec.prefix)})
    userdel {quote(spec.user)} ;;
  "") ;;
  *) keep "user {spec.user} left in place: it is not this instance's" ;;
esac
if getent group {quote(spec.group)} >/dev/null && ! getent passwd {quote(spec.user)} >/dev/null
then
  groupdel {quote(spec.group)}
fi
"""
    )


def remove(run: Runner, spec: InstanceSpec, log: Callable[[str], None] = _quiet) -> list[str]:
    """Delete everything of the instance that belongs to it; a no-op when it is already gone.
    Returns what was left on the host and why (another owner's instance, a foreign root)."""
    log(f"killing its containers and stopping {spec.service_name}")
    run.run(_stop_script(spec), step=f"stop {spec.service_name}", timeout=300)
    log("removing rules, bridges, unit, root, user and group (under the host lock)")
    addrs = json.loads(run.run(_addr_script(), step="list addresses").stdout or "[]")
    result = run.run(
        _remove_script(spec, pool_bridges(spec, addrs)),
        step=f"remove instance {spec.prefix}",
    )
    return [
        line.removeprefix(KEEP_MARK)
        for line in result.stdout.splitlines()
        if line.startswith(KEEP_MARK)
    ]
