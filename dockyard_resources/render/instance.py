"""Everything one Dockyard instance puts on a host, rendered as text (pure: no host I/O).

An instance is a system user and group `<prefix>docker`, a root directory, its own containerd
and dockerd under one systemd unit, instance-scoped iptables rules and a `docker` wrapper.
`hostops.instance` ships these files and runs the scripts.
The text of the scripts, the unit and containerd.toml lives in `templates/instance/`; this
module computes the values they are rendered with (`render.common` states the quoting rule).

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
from dockyard_resources.render.common import quote_all, render
from dockyard_resources.render.layout import (
    INSTANCE_MARKER,
    OWNER_MARKER,
    ROOT_MARKER,
    SYSBOX_SERVICE,
    SYSTEM_PATH,
    SYSTEMD_DIR,
)

# `owner=` and `prefix=` lines in the root: a directory without it is not an instance root.
ROOT_MARKER_FILE = ".dockyard-instance"
# `gid=` of the group the instance made (a group has no comment to name its owner); empty
# while it is being made. Only a group so recorded is the instance's, to keep and to delete.
GROUP_RECORD_FILE = ".dockyard-group"
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


@dataclass(frozen=True, kw_only=True)
class InstanceIdentity:
    """Who an instance is on a host, apart from its networks: prefix, root, owner and the
    names and paths derived from them (what a network claim is made for before its networks
    are known)."""

    prefix: str
    root: str
    # `project/stack/resource` of the Pulumi resource that made the instance; written into
    # the unit, the root's marker, the user's comment and its network claim, checked before
    # any change.
    owner: str = ""

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
        return f"{SYSTEMD_DIR}/{self.service_name}"


@dataclass(frozen=True, kw_only=True)
class InstanceSpec(InstanceIdentity):
    """Validated inputs of one instance; every host path is derived from `root`."""

    docker_dir: str
    sysbox_dir: str
    bridge_cidr: ipaddress.IPv4Interface
    fixed_cidr: ipaddress.IPv4Network
    pool_base: ipaddress.IPv4Network
    pool_size: int
    members: tuple[str, ...] = field(default=())
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


def containerd_toml(spec: InstanceSpec) -> str:
    return render("instance/containerd.toml.j2", spec=spec)


def instance_manifest(spec: InstanceSpec) -> str:
    """etc/instance.json: lets other instances' conflict checks see this one's networks."""
    return json.dumps({"prefix": spec.prefix, "networks": spec.networks}, sort_keys=True) + "\n"


# --- scripts in <root>/bin ---------------------------------------------------------------


def docker_wrapper(spec: InstanceSpec) -> str:
    return render("instance/docker.sh.j2", spec=spec)


def start_script(spec: InstanceSpec) -> str:
    return render("instance/dockyard-start.sh.j2", spec=spec, system_path=SYSTEM_PATH)


def stop_script(spec: InstanceSpec) -> str:
    return render("instance/dockyard-stop.sh.j2", spec=spec, shutdown=SHUTDOWN_TIMEOUT_S)


def wait_ready_script(spec: InstanceSpec) -> str:
    return render("instance/dockyard-wait-ready.sh.j2", spec=spec, timeout=READY_TIMEOUT_S)


def net_script(spec: InstanceSpec) -> str:
    rules = spec.rules()
    return render(
        "instance/dockyard-net.sh.j2",
        spec=spec,
        system_path=SYSTEM_PATH,
        sweep=iptables.sweep_function(spec.tag),
        add=iptables.add_commands(rules, spec.tag).rstrip("\n"),
        all_present=iptables.all_present_command(rules, spec.tag),
    )


# --- the unit -------------------------------------------------------------------------------


def unit_file(spec: InstanceSpec) -> str:
    return render(
        "instance/unit.service.j2",
        spec=spec,
        marker=INSTANCE_MARKER,
        root_marker=ROOT_MARKER,
        owner_marker=OWNER_MARKER,
        sysbox_unit=SYSBOX_SERVICE,
        system_path=SYSTEM_PATH,
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


def _ssh_destination_args(connection: dict[str, Any]) -> list[str]:
    """`-p PORT USER@HOST`, leaving to ~/.ssh/config what a sshConfig stack leaves out."""
    from_config = bool(connection.get("sshConfig"))
    port = connection.get("port")
    args = [] if port is None and from_config else ["-p", str(int(port or 22))]
    return [*args, _ssh_destination(connection, connection, uri=False)]


def _ssh_destination(end: dict[str, Any], connection: dict[str, Any], *, uri: bool) -> str:
    """`[user@]host`, or for `-J` `[user@]host[:port]` (IPv6 in brackets)."""
    from_config = bool(connection.get("sshConfig"))
    host = str(end.get("host", "HOST"))
    user = end.get("user") or (None if from_config else "root")
    if uri:
        port = end.get("port")
        if ":" in host:
            host = f"[{host}]"
        if port is not None or not from_config:
            host = f"{host}:{int(port or 22)}"
    return f"{user}@{host}" if user else host


def root_marker(spec: InstanceSpec) -> str:
    return f"owner={spec.owner}\nprefix={spec.prefix}\n"


def ssh_forward(spec: InstanceSpec, connection: dict[str, Any]) -> str:
    """A ready-to-paste command that forwards the socket with `ssh -L` and prints the
    DOCKER_HOST line to use it: the stack's connection as `ssh` options (key file, jump host;
    with sshConfig, what the stack leaves out comes from ~/.ssh/config, as for Dockyard). The
    local end lives in a fresh `mktemp -d` directory (0700, a random name): in a fixed path
    under /tmp another local user could bind the name first, or after ssh ended, while
    DOCKER_HOST still points there."""
    forward = '"$d"/' + quote_all([f"{spec.prefix}docker.sock:{spec.socket_path}"])
    options = ["-N", "-o", "ExitOnForwardFailure=yes"]
    if connection.get("privateKeyFile"):
        options += ["-i", str(connection["privateKeyFile"])]
    jump = connection.get("jumpHost")
    if isinstance(jump, dict):
        options += ["-J", _ssh_destination(jump, connection, uri=True)]
    ssh = quote_all(["ssh", *options, "-L"])
    target = quote_all(_ssh_destination_args(connection))
    return (
        f'd=$(mktemp -d) && echo "export DOCKER_HOST=unix://$d/{spec.prefix}docker.sock"'
        f" && {ssh} {forward} {target}"
    )
