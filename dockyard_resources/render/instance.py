"""Everything one Dockyard instance puts on a host, rendered as text (pure, no I/O).

An instance is a system user and group `<prefix>docker`, a root directory, its own containerd
and dockerd under one systemd unit, instance-scoped iptables rules and a `docker` wrapper.
`hostops.instance` ships these files and runs the scripts.

Design choices (see docs/instances.md):
- One unit `<prefix>docker.service`. Its start script runs containerd in the background and
  then `exec`s dockerd, so dockerd is the unit's main process and its sd_notify READY
  (`Type=notify`) marks the start; an ExecStartPost additionally waits until `docker info`
  answers, so `systemctl start` returns only when the API is usable.
- The bridge is named per instance (`"bridge"` in daemon.json, i.e. `-b`). Docker does not
  create a bridge with a non-default name, and `-b` excludes `--bip`, so the network script
  creates the bridge with the gateway address `bridgeCidr` itself before dockerd starts.
- Paths (data-root, exec-root, pidfile, socket, containerd, group) are dockerd flags; network
  and runtime settings live in daemon.json (dockerd refuses a setting given both ways).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any

from dockyard_resources.render import iptables
from dockyard_resources.render.common import quote, quote_all, template_env

SYSBOX_UNIT = "dockyard-sysbox.service"
UNIT_DIR = "/etc/systemd/system"
# Header lines of an instance unit: the prefix, the root and the owner (the Pulumi resource,
# `project/stack/resource`). Other instances, the SysboxHost and delete read them.
MARKER = "# dockyard-instance: "
ROOT_MARKER = "# dockyard-root: "
OWNER_MARKER = "# dockyard-owner: "
# `owner=` and `prefix=` lines in the root: a directory without it is not an instance root.
ROOT_MARKER_FILE = ".dockyard-instance"
# Seconds the unit's ExecStartPost waits for `docker info` after dockerd reported ready.
READY_TIMEOUT_S = 120
# Seconds dockerd gives containers to stop on shutdown before killing them.
SHUTDOWN_TIMEOUT_S = 15
# Directories under the root and their modes; all belong to root and the instance group.
# The root and lib/ let others traverse (never list): sysbox maps a container's root to an
# unprivileged uid range, which must reach the container's root filesystem below lib/docker.
TRAVERSABLE_MODE = 0o751
PRIVATE_MODE = 0o750
DIR_MODES: dict[str, int] = {
    "": TRAVERSABLE_MODE,
    "bin": PRIVATE_MODE,
    "etc": PRIVATE_MODE,
    "lib": TRAVERSABLE_MODE,
    "log": PRIVATE_MODE,
    "run": PRIVATE_MODE,
}
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class InstanceSpec:
    """Validated inputs of one instance; every host path is derived from `root`."""

    prefix: str
    root: str
    docker_dir: str
    sysbox_dir: str
    bridge_cidr: ipaddress.IPv4Interface
    fixed_cidr: ipaddress.IPv4Network
    pool_base: ipaddress.IPv4Network
    pool_size: int
    members: tuple[str, ...] = field(default=())
    # `project/stack/resource` of the Pulumi resource that made the instance; written into
    # the unit, the root's marker and the user's comment, checked before any change.
    owner: str = ""
    # Drop new connections toward this instance's containers from anywhere but the instance
    # itself (docs/security.md); `networkIsolation: false` turns that off.
    network_isolation: bool = True

    @classmethod
    def from_props(cls, props: dict[str, Any]) -> InstanceSpec:
        """Build from Pulumi properties (numbers arrive as floats)."""
        return cls(
            prefix=str(props["prefix"]),
            root=str(props["root"]),
            docker_dir=str(props["dockerDir"]).rstrip("/") or "/",
            sysbox_dir=str(props["sysboxDir"]).rstrip("/") or "/",
            bridge_cidr=ipaddress.IPv4Interface(str(props["bridgeCidr"])),
            fixed_cidr=ipaddress.IPv4Network(str(props["fixedCidr"])),
            pool_base=ipaddress.IPv4Network(str(props["poolBase"])),
            pool_size=int(props["poolSize"]),
            members=tuple(str(m) for m in props.get("members") or ()),
            owner=str(props.get("owner") or ""),
            # Absent in the state of instances made before the option existed: isolated.
            network_isolation=props.get("networkIsolation") is not False,
        )

    # Names
    @property
    def user(self) -> str:
        return f"{self.prefix}docker"

    @property
    def group(self) -> str:
        return f"{self.prefix}docker"

    @property
    def service_name(self) -> str:
        return f"{self.prefix}docker.service"

    @property
    def bridge_name(self) -> str:
        return f"{self.prefix}docker0"

    @property
    def tag(self) -> str:
        return iptables.tag_for(self.prefix)

    # Paths
    def path(self, *parts: str) -> str:
        return "/".join((self.root, *parts))

    @property
    def marker_path(self) -> str:
        return self.path(ROOT_MARKER_FILE)

    @property
    def user_comment(self) -> str:
        """The system user's comment (GECOS): names the instance and its owner."""
        return f"Dockyard instance {self.prefix} ({self.owner})"

    @property
    def unit_path(self) -> str:
        return f"{UNIT_DIR}/{self.service_name}"

    @property
    def socket_path(self) -> str:
        return self.path("run", "docker.sock")

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def containerd_socket(self) -> str:
        return self.path("run", "containerd", "containerd.sock")

    @property
    def networks(self) -> dict[str, Any]:
        return {
            "bridge": str(self.bridge_cidr),
            "bridgeNetwork": str(self.bridge_cidr.network),
            "fixedCidr": str(self.fixed_cidr),
            "poolBase": str(self.pool_base),
            "poolSize": self.pool_size,
        }

    def rules(self) -> list[iptables.Rule]:
        return iptables.instance_rules(
            self.bridge_name, self.fixed_cidr, self.pool_base, isolate=self.network_isolation
        )


# --- configuration files -------------------------------------------------------------


def daemon_json(spec: InstanceSpec) -> str:
    config = {
        "bridge": spec.bridge_name,
        "fixed-cidr": str(spec.fixed_cidr),
        "default-address-pools": [{"base": str(spec.pool_base), "size": spec.pool_size}],
        "iptables": False,
        "ip6tables": False,
        "ip-masq": False,
        "ipv6": False,
        # The overlay2 graph driver, not Docker 29's default containerd image store: sysbox
        # 0.6.7 tracks overlay2 rootfs paths across stop/start (see docs/instances.md).
        "features": {"containerd-snapshotter": False},
        "storage-driver": "overlay2",
        "runtimes": {"sysbox-runc": {"path": spec.path("bin", "sysbox-runc")}},
        "default-runtime": "sysbox-runc",
        "shutdown-timeout": SHUTDOWN_TIMEOUT_S,
        "log-driver": "json-file",
        "log-opts": {"max-size": "10m", "max-file": "3"},
    }
    return json.dumps(config, indent=2, sort_keys=True) + "\n"


_CONTAINERD_TOML = """\
# Generated by Dockyard for instance {{ spec.prefix }}: this containerd serves only
# {{ spec.prefix }}docker. Shim sockets still live under the shared /run/containerd/s/.
version = 2
root = "{{ spec.path('lib', 'containerd') }}"
state = "{{ spec.path('run', 'containerd') }}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{{ spec.containerd_socket }}"

[ttrpc]
  address = "{{ spec.containerd_socket }}.ttrpc"

[debug]
  address = "{{ spec.path('run', 'containerd', 'debug.sock') }}"
"""


def containerd_toml(spec: InstanceSpec) -> str:
    return template_env().from_string(_CONTAINERD_TOML).render(spec=spec)


def instance_manifest(spec: InstanceSpec) -> str:
    """etc/instance.json: lets other instances' conflict checks see this one's networks."""
    return json.dumps({"prefix": spec.prefix, "networks": spec.networks}, sort_keys=True) + "\n"


# --- scripts in <root>/bin ---------------------------------------------------------------


def docker_wrapper(spec: InstanceSpec) -> str:
    return (
        "#!/bin/sh\n"
        f"# Docker CLI bound to Dockyard instance {spec.prefix}\n"
        f'exec {quote(spec.docker_dir + "/docker")} -H {quote(spec.docker_host)} "$@"\n'
    )


_START = """\
#!/bin/bash
# ExecStart of {{ spec.service_name }}: containerd in the background, then dockerd in the
# foreground via exec, so dockerd is the main process whose sd_notify READY ends the start.
set -euo pipefail
export PATH={{ (spec.docker_dir + ':' + spec.path('bin') + ':' + system_path) | q }}
log={{ spec.path('log') | q }}
sock={{ spec.containerd_socket | q }}
pidfile={{ spec.path('run', 'containerd.pid') | q }}
mkdir -p {{ spec.path('run', 'containerd') | q }}
rm -f "$sock" "$sock.ttrpc"
# containerd speaks sd_notify as well: keep it from reporting this unit ready.
NOTIFY_SOCKET= containerd --config {{ spec.path('etc', 'containerd.toml') | q }} \\
  >>"$log/containerd.log" 2>&1 &
echo $! >"$pidfile"
for _ in $(seq 1 600); do
  [ -S "$sock" ] && break
  if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "containerd exited during start; see $log/containerd.log" >&2
    tail -n 20 "$log/containerd.log" >&2 || true
    exit 1
  fi
  sleep 0.2
done
[ -S "$sock" ] || { echo "containerd socket $sock did not appear" >&2; exit 1; }
exec dockerd \\
  --config-file {{ spec.path('etc', 'daemon.json') | q }} \\
  --data-root {{ spec.path('lib', 'docker') | q }} \\
  --exec-root {{ spec.path('run', 'docker') | q }} \\
  --pidfile {{ spec.path('run', 'docker.pid') | q }} \\
  -H {{ spec.docker_host | q }} \\
  --containerd "$sock" \\
  --group {{ spec.group | q }} \\
  >>"$log/dockerd.log" 2>&1
"""


def start_script(spec: InstanceSpec) -> str:
    return template_env().from_string(_START).render(spec=spec, system_path=SYSTEM_PATH)


_STOP = """\
#!/bin/bash
# ExecStop of {{ spec.service_name }}: dockerd first (it stops containers through
# containerd), then containerd; systemd kills whatever is left in the unit afterwards.
set -uo pipefail
wait_gone() {  # pid seconds
  local i
  for i in $(seq 1 $(($2 * 5))); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.2; done
  return 1
}
main=${1:-}
[ -n "$main" ] || main=$(cat {{ spec.path('run', 'docker.pid') | q }} 2>/dev/null || true)
if [ -n "$main" ] && ! grep -qF /{{ spec.service_name }} "/proc/$main/cgroup" 2>/dev/null; then
  main=""
fi
if [ -n "$main" ] && kill -TERM "$main" 2>/dev/null; then
  wait_gone "$main" {{ shutdown + 45 }} || true
fi
cpid=$(cat {{ spec.path('run', 'containerd.pid') | q }} 2>/dev/null || true)
# A pid file can outlive its process: only a pid in this unit's cgroup is ours to stop.
if [ -n "$cpid" ] && ! grep -qF /{{ spec.service_name }} "/proc/$cpid/cgroup" 2>/dev/null; then
  cpid=""
fi
if [ -n "$cpid" ] && kill -TERM "$cpid" 2>/dev/null; then
  wait_gone "$cpid" 20 || kill -KILL "$cpid" 2>/dev/null || true
fi
exit 0
"""


def stop_script(spec: InstanceSpec) -> str:
    return template_env().from_string(_STOP).render(spec=spec, shutdown=SHUTDOWN_TIMEOUT_S)


_WAIT_READY = """\
#!/bin/bash
# ExecStartPost of {{ spec.service_name }}: the start counts only once the API answers.
set -uo pipefail
for _ in $(seq 1 {{ timeout * 2 }}); do
  if {{ (spec.docker_dir + '/docker') | q }} -H {{ spec.docker_host | q }} info \\
       --format '{{ '{{' }}.ID{{ '}}' }}' >/dev/null 2>&1; then
    exit 0
  fi
  sleep 0.5
done
echo "docker API on {{ spec.socket_path }} did not answer within {{ timeout }}s" >&2
exit 1
"""


def wait_ready_script(spec: InstanceSpec) -> str:
    return template_env().from_string(_WAIT_READY).render(spec=spec, timeout=READY_TIMEOUT_S)


_NET = """\
#!/bin/bash
# Network plumbing of {{ spec.service_name }}: `up` before dockerd starts (bridge,
# ip_forward, rules), `down` after it stops (rules only: the bridge stays until delete),
# `check` exits 0 only when bridge and every rule are present. Rules carry the comment
# {{ spec.tag }} so this never touches another instance's rules or Docker's chains.
# Guards (replies, own traffic, drops toward the containers and to cloud metadata) go to the
# top of FORWARD, the containers' outbound ACCEPTs to its end (render/iptables.py).
set -euo pipefail
export PATH={{ system_path | q }}
bridge={{ spec.bridge_name | q }}
gateway={{ (spec.bridge_cidr | string) | q }}
{{ sweep }}
up() {
  if ! ip link show dev "$bridge" >/dev/null 2>&1; then
    ip link add name "$bridge" type bridge
  fi
  if ! ip -4 addr show dev "$bridge" | grep -qF " $gateway "; then
    ip -4 addr flush dev "$bridge"
    ip addr add "$gateway" dev "$bridge"
  fi
  ip link set dev "$bridge" up
  sysctl -q -w net.ipv4.ip_forward=1
  # Drop rules of an older configuration, then add the current ones.
  if ! check_rules; then
    dockyard_sweep_rules
{{ add | indent(4, first=True) }}
  fi
}
check_rules() {
  {{ all_present }}
}
case "${1:-}" in
  up) up ;;
  down) dockyard_sweep_rules ;;
  check) ip link show dev "$bridge" >/dev/null 2>&1 && check_rules ;;
  *) echo "usage: $0 up|down|check" >&2; exit 2 ;;
esac
"""


def net_script(spec: InstanceSpec) -> str:
    rules = spec.rules()
    return (
        template_env()
        .from_string(_NET)
        .render(
            spec=spec,
            system_path=SYSTEM_PATH,
            sweep=iptables.sweep_function(spec.tag),
            add=iptables.add_commands(rules, spec.tag).rstrip("\n"),
            all_present=iptables.all_present_command(rules, spec.tag),
        )
    )


# --- the unit -------------------------------------------------------------------------------


_UNIT = """\
{{ marker }}{{ spec.prefix }}
{{ root_marker }}{{ spec.root }}
{{ owner_marker }}{{ spec.owner }}
# Generated by Dockyard: isolated dockerd + containerd for instance {{ spec.prefix }}.
[Unit]
Description=Dockyard instance {{ spec.prefix }} (dockerd + containerd on {{ spec.socket_path }})
Requires={{ sysbox_unit }}
After={{ sysbox_unit }} network-online.target
Wants=network-online.target

[Service]
Type=notify
NotifyAccess=main
Environment=PATH={{ spec.docker_dir }}:{{ spec.path('bin') }}:{{ system_path }}
ExecStartPre={{ spec.path('bin', 'dockyard-net') }} up
ExecStartPre=/bin/rm -f {{ spec.socket_path }} {{ spec.containerd_socket }}
ExecStart={{ spec.path('bin', 'dockyard-start') }}
ExecStartPost={{ spec.path('bin', 'dockyard-wait-ready') }}
ExecStop={{ spec.path('bin', 'dockyard-stop') }} $MAINPID
ExecStopPost={{ spec.path('bin', 'dockyard-net') }} down
Restart=on-failure
RestartSec=5
TimeoutStartSec=300
TimeoutStopSec=120
LimitNOFILE=infinity
LimitNPROC=infinity
TasksMax=infinity
Delegate=yes
OOMScoreAdjust=-500

[Install]
WantedBy=multi-user.target
"""


def unit_file(spec: InstanceSpec) -> str:
    return (
        template_env()
        .from_string(_UNIT)
        .render(
            spec=spec,
            marker=MARKER,
            root_marker=ROOT_MARKER,
            owner_marker=OWNER_MARKER,
            sysbox_unit=SYSBOX_UNIT,
            system_path=SYSTEM_PATH,
        )
    )


# --- what goes where ------------------------------------------------------------------------


@dataclass(frozen=True)
class HostFile:
    path: str
    content: str
    mode: int
    # The instance group where its members need to read the file; else root's own.
    group_readable: bool = True

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content.encode()).hexdigest()


def instance_files(spec: InstanceSpec) -> list[HostFile]:
    """Every managed file of the instance (the sysbox-runc copy is installed separately)."""
    return [
        HostFile(spec.path("etc", "daemon.json"), daemon_json(spec), 0o640),
        HostFile(spec.path("etc", "containerd.toml"), containerd_toml(spec), 0o640),
        HostFile(spec.path("etc", "instance.json"), instance_manifest(spec), 0o644),
        HostFile(spec.path("bin", "docker"), docker_wrapper(spec), 0o755),
        HostFile(spec.path("bin", "dockyard-start"), start_script(spec), 0o755),
        HostFile(spec.path("bin", "dockyard-stop"), stop_script(spec), 0o755),
        HostFile(spec.path("bin", "dockyard-wait-ready"), wait_ready_script(spec), 0o755),
        HostFile(spec.path("bin", "dockyard-net"), net_script(spec), 0o755),
        HostFile(spec.unit_path, unit_file(spec), 0o644, group_readable=False),
        HostFile(spec.marker_path, root_marker(spec), 0o644, group_readable=False),
    ]


def root_marker(spec: InstanceSpec) -> str:
    return f"owner={spec.owner}\nprefix={spec.prefix}\n"


def ssh_forward(spec: InstanceSpec, connection: dict[str, Any]) -> str:
    """A ready-to-paste `ssh -L` that forwards the socket, and how to point Docker at it."""
    local = f"/tmp/{spec.prefix}docker.sock"
    user = connection.get("user") or "root"
    port = int(connection.get("port") or 22)
    host = connection.get("host", "HOST")
    command = quote_all(
        [
            "ssh",
            "-N",
            "-o",
            "ExitOnForwardFailure=yes",
            "-o",
            "StreamLocalBindUnlink=yes",
            "-L",
            f"{local}:{spec.socket_path}",
            "-p",
            str(port),
            f"{user}@{host}",
        ]
    )
    return f"{command}  # then: export DOCKER_HOST=unix://{local}"
