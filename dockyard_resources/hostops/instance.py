"""Install, inspect and remove one Dockyard instance on a host over SSH.

Rendering lives in `render.instance`, the text of the scripts run here in
`render/templates/instance/` (claim, install, park, activate, inspect, stop, remove and the
pieces they include); this module renders them and decides the order of steps and which of
them run under the host lock. Checks and claims across instances (ownership, nesting, root,
user, group, unit file, networks: hostops/network_claims.py) and systemd's reload and enable
run under the host lock; the
instance's own directories, files and rules under the lock of its root alone; waiting for
dockerd to start or stop under neither, so instances created in parallel do not queue
behind each other's work.
"""

from __future__ import annotations

import base64
import ipaddress
import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol

from dockyard_resources.config.network_request import NetworkRequest
from dockyard_resources.config.networks import InstanceNetworks
from dockyard_resources.config.values import (
    FORBIDDEN_TREES,
    HOME_PARENTS,
    ROOT_STAGING_MARK,
    SYSTEM_DIRS,
)
from dockyard_resources.errors import DockyardError
from dockyard_resources.hostops import network_claims
from dockyard_resources.render import facts, iptables
from dockyard_resources.render.common import (
    HOST_LOCK,
    RELEASE_HOST_LOCK,
    bash_script,
    hold_dir_lock,
    render,
)
from dockyard_resources.render.instance import (
    DIR_MODES,
    GROUP_RECORD_FILE,
    ROOT_MARKER_FILE,
    InstanceIdentity,
    InstanceSpec,
    instance_files,
)
from dockyard_resources.render.layout import (
    SYSBOX_SERVICE,
    SYSTEMD_DIR,
)
from dockyard_resources.transport.errors import CommandFailed

CHANGED_MARK = "DOCKYARD_CHANGED="
# What delete left on the host and why (another owner's instance, a root without our marker).
KEEP_MARK = "DOCKYARD_KEEP="
# Left by earlier versions (the DinD ownership watcher, see docs/instances.md): removed.
OBSOLETE_FILES = (("bin", "dockyard-dind-watcher"), ("run", "dind-watcher.pid"))


def guards() -> str:
    """The ownership and path checks (instance_guards.sh), sourced into scripts verbatim."""
    return resources.files("dockyard_resources.hostops").joinpath("instance_guards.sh").read_text()


def _system_dir_patterns() -> dict[str, str]:
    """Case patterns of every system directory and tree and every home directory, from the
    config layer's own lists (the host never trusts that inputs went through it)."""
    trees = sorted(FORBIDDEN_TREES)

    def covered(path: str) -> bool:  # already matched by a tree's "<tree>/*" pattern
        return any(path.startswith(tree + "/") for tree in trees)

    return {
        "exact": "|".join(p for p in sorted(SYSTEM_DIRS | set(trees)) if not covered(p)),
        "inside": "|".join(f"{tree}/*" for tree in trees if not covered(tree)),
        "nested": "|".join(f"{home}/*/*" for home in HOME_PARENTS),
        "homes": "|".join(f"{home}/*" for home in HOME_PARENTS),
    }


def _system_dir_guard() -> str:
    """Case statements refusing every system directory and tree and every home directory
    as the root `$root` (system-dir-guard.sh.j2, included by the install and remove scripts)."""
    return render("instance/system-dir-guard.sh.j2", dir_guard=_system_dir_patterns())


class Runner(Protocol):
    """The part of `transport.SshSession` used here (lets tests pass a fake)."""

    def run(
        self, script: str, *, step: str, sudo: bool = ..., timeout: float = ..., check: bool = ...
    ) -> Any: ...


class InstanceError(DockyardError):
    """The instance cannot be created or changed as asked; the message says why."""


def _quiet(_message: str) -> None:
    return None


# --- network claim ---------------------------------------------------------------------


def claim_networks(
    run: Runner,
    identity: InstanceIdentity,
    request: NetworkRequest,
    log: Callable[[str], None] = _quiet,
) -> InstanceNetworks:
    """The networks of `request` with the parts it leaves open chosen on the host, checked and
    claimed there under the host lock (hostops/network_claims.py)."""
    complete = request.complete()
    if complete is not None:  # the install claims them itself
        return complete
    log("choosing free networks on the host and claiming them (under the host lock)")
    script = network_claims.claim_script(
        identity, request, guards=guards(), dir_guard=_system_dir_patterns()
    )
    result = run.run(script, step=f"claim networks for {identity.prefix}")
    networks = network_claims.parse_claim(result.stdout)
    log(f"claimed bridge {networks.bridge_cidr} and pool {networks.pool_base}")
    return networks


# --- install ----------------------------------------------------------------------------


def _request_of(spec: InstanceSpec) -> NetworkRequest:
    return NetworkRequest(spec.bridge_cidr, spec.fixed_cidr, spec.pool_base, spec.pool_size)


def _install_script(spec: InstanceSpec, *, adopt: bool = False, enabled: bool = True) -> str:
    """The converging install: checks and claims under the host lock, the instance's own
    files under the lock of its root. `adopt` (updates only) accepts the unowned unit, root
    and user of an instance made by an earlier Dockyard version.
    `enabled=False` parks the instance: everything stays installed, the unit is disabled."""
    dirs = [(spec.path(d) if d else spec.root, f"{mode:04o}") for d, mode in DIR_MODES.items()]
    puts = [
        (
            f.path,
            f"{f.mode:o}",
            f"root:{spec.group}" if f.group_readable else "root:root",
            base64.b64encode(f.content.encode()).decode(),
        )
        for f in instance_files(spec)
    ]
    claim = next(put for put in puts if put[0] == spec.unit_path)
    body = render(
        "instance/install.sh.j2",
        spec=spec,
        adopt=adopt,
        enabled=enabled,
        guards=guards(),
        dir_guard=_system_dir_patterns(),
        dirs=dirs,
        claim=claim,
        puts=[put for put in puts if put is not claim],
        networks=network_claims.claim_context(spec, _request_of(spec)),
        hold_root_lock=hold_dir_lock("root"),
        release_host_lock=RELEASE_HOST_LOCK,
        obsolete=[spec.path(*p) for p in OBSOLETE_FILES],
        systemd_dir=SYSTEMD_DIR,
        sysbox_service=SYSBOX_SERVICE,
        root_marker_file=ROOT_MARKER_FILE,
        group_record_file=GROUP_RECORD_FILE,
        staging_mark=ROOT_STAGING_MARK,
        changed_mark=CHANGED_MARK,
    )
    return bash_script(body)


def _stale_binaries_function(spec: InstanceSpec) -> str:
    """`dy_stale_binaries`: prints why the running daemons are not this install's binaries
    (the file they run was replaced or moved), nothing when they are or nothing runs.
    The install and inspect scripts include its template, stale-binaries.sh.j2."""
    return render("instance/stale-binaries.sh.j2", spec=spec).rstrip("\n")


def _park_script(spec: InstanceSpec) -> str:
    """Stop a parked instance; the shared sysbox service stops with the last user of it."""
    return bash_script(render("instance/park.sh.j2", spec=spec), locked=False)


# Restarts of one host's instances wait for each other: an upgrade that restarts them all
# never has them all down at once.
RESTART_LOCK = "/run/dockyard-restart.lock"


def _activate_script(spec: InstanceSpec, restart: bool) -> str:
    """Start the unit; with `restart`, a running unit restarts (one instance of the host at
    a time), while a stopped one just starts (a new instance never waits for the others)."""
    body = render("instance/activate.sh.j2", spec=spec, restart=restart, restart_lock=RESTART_LOCK)
    return bash_script(body, locked=False)


def _install_step(spec: InstanceSpec) -> str:
    return f"install instance {spec.prefix}"


def install(
    run: Runner,
    spec: InstanceSpec,
    *,
    adopt: bool = False,
    enabled: bool = True,
    log: Callable[[str], None] = _quiet,
) -> None:
    """Converge the instance to `spec` and leave it running (restarted only on change), or,
    with `enabled=False`, installed but stopped and disabled (its data and networks kept)."""
    log("checking ownership, claiming networks and installing (under the host lock)")
    result = run.run(_install_script(spec, adopt=adopt, enabled=enabled), step=_install_step(spec))
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


# --- create: install, or leave nothing of a failed one behind -------------------------------

# The install script's exit code for a refusal (the preflight and dy_refuse): it comes before
# any change. So does a timeout waiting for the host lock (exit 75 naming HOST_LOCK; the same
# code for the root's lock comes after the claims).
INSTALL_REFUSED_EXIT = 3
LOCK_TIMEOUT_EXIT = 75


def _exists_script(spec: InstanceSpec) -> str:
    return bash_script(render("instance/exists.sh.j2", spec=spec), locked=False)


def _changed_nothing(failure: Exception, spec: InstanceSpec) -> bool:
    """True for failures that come before the install changes anything on the host."""
    if isinstance(failure, InstanceError):  # refused on this side, before any script ran
        return True
    if not isinstance(failure, CommandFailed) or failure.step != _install_step(spec):
        return False
    return failure.exit_code == INSTALL_REFUSED_EXIT or (
        failure.exit_code == LOCK_TIMEOUT_EXIT and HOST_LOCK in failure.stderr_tail
    )


def create(
    run: Runner, spec: InstanceSpec, *, enabled: bool = True, log: Callable[[str], None] = _quiet
) -> None:
    """Install a new instance (see `install`). A create that fails once the host changed
    leaves nothing behind to loop: Pulumi keeps no state of a failed create, so no destroy
    would remove what it made, and its unit would restart every few seconds forever. What
    the create made goes again; an instance that was on the host before it (this owner's:
    another owner's is refused before any change) keeps its data and is stopped and disabled."""
    existed = run.run(_exists_script(spec), step=f"look for {spec.prefix} on the host")
    try:
        install(run, spec, enabled=enabled, log=log)
    except Exception as failure:
        if _changed_nothing(failure, spec):
            raise
        _undo_failed_create(run, spec, failure, existed=existed.stdout.strip() == "1", log=log)
        raise


def _undo_failed_create(
    run: Runner,
    spec: InstanceSpec,
    failure: Exception,
    *,
    existed: bool,
    log: Callable[[str], None],
) -> None:
    try:
        if existed:
            log(
                f"create failed: stopping and disabling {spec.service_name}; its root, data,"
                " user and group were on the host before and stay (the next up tries again)"
            )
            run.run(_stop_script(spec), step=f"stop {spec.service_name}", timeout=300)
        else:
            log("create failed: removing what it made on the host")
            remove(run, spec, log=log)
    except Exception as cleanup:
        raise InstanceError(
            f"create of instance {spec.prefix} failed ({failure}), and so did undoing it"
            f" ({cleanup}); {spec.service_name} may be left on the host: the next `pulumi up`"
            " converges over it, or remove it by hand (docs/instances.md, Partial failures)"
        ) from cleanup


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
    # Why root must not run the binaries of dockerDir or sysboxDir (someone else can change
    # a directory on the way); install refuses them.
    untrusted_binaries: str = ""

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
                (
                    not self.untrusted_binaries,
                    f"binaries root must not run: {self.untrusted_binaries}",
                ),
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
            (not self.untrusted_binaries, f"binaries root must not run: {self.untrusted_binaries}"),
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
    body = render(
        "instance/inspect.sh.j2",
        spec=spec,
        fact_helper=facts.SHELL_HELPER,
        guards=guards(),
        files=instance_files(spec),
        rules_ok=iptables.all_present_command(spec.rules(), spec.tag),
    )
    return bash_script(body, locked=False)


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
        untrusted_binaries=values.get("untrusted", ""),
    )


def inspect(run: Runner, spec: InstanceSpec) -> InstanceState:
    result = run.run(_inspect_script(spec), step=f"inspect instance {spec.prefix}")
    return parse_state(result.stdout)


# --- remove -----------------------------------------------------------------------------


def _stop_script(spec: InstanceSpec) -> str:
    """Unlocked: kill containers fast (their data goes anyway), then stop and disable.
    Another owner's instance of the same name is left alone (the locked remove says so)."""
    return bash_script(render("instance/stop.sh.j2", spec=spec, guards=guards()), locked=False)


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
    body = render(
        "instance/remove.sh.j2",
        spec=spec,
        bridges=list(bridges),
        guards=guards(),
        dir_guard=_system_dir_patterns(),
        sweep=iptables.sweep_function(spec.tag),
        keep_mark=KEEP_MARK,
        staging_mark=ROOT_STAGING_MARK,
        hold_root_lock=hold_dir_lock("root"),
        networks=network_claims.release_context(spec),
    )
    return bash_script(body)


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
