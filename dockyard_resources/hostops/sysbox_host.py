"""Install, inspect and remove the Docker + sysbox layer of a Dockyard host over SSH.

Round trips for an install: one read-only preflight, the uploads the host's cache lacks
(upload mode only), and one locked install script that ends by reporting the host's state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from dockyard_resources.config.urls import secret_parts
from dockyard_resources.errors import HostOutputError, InputError
from dockyard_resources.hostops import artifacts, preflight
from dockyard_resources.render import facts
from dockyard_resources.render import sysbox_host as render
from dockyard_resources.render.sysbox_host import Artifact, ArtifactsMode, InstallPlan
from dockyard_resources.transport import SshSession, SshTarget, session

Log = Callable[[str], None]
ArtifactKind = Literal["docker", "sysbox"]
# Under TCG an apt install plus unpacking Docker takes minutes; leave room.
INSTALL_TIMEOUT_S = 1800
READ_TIMEOUT_S = 120


def _ignore(_: str) -> None:
    return None


@dataclass(frozen=True)
class ArtifactSpec:
    """`{version, artifacts: {arch: {url, sha256}}}` of one kind, as the resource gets it."""

    kind: ArtifactKind
    version: str
    by_arch: Mapping[str, Mapping[str, Any]]

    @classmethod
    def from_props(cls, kind: ArtifactKind, props: Mapping[str, Any]) -> ArtifactSpec:
        return cls(kind=kind, version=str(props["version"]), by_arch=dict(props["artifacts"]))

    def for_arch(self, arch: str) -> Artifact:
        entry = self.by_arch.get(arch)
        if not entry or not entry.get("url"):
            raise InputError(f"{self.kind}.artifacts has no entry for this host's arch {arch}")
        sha = entry.get("sha256")
        if not sha:
            raise InputError(
                f"{self.kind} {self.version} for {arch} has no pinned sha256: set "
                f"hosts[i].{self.kind}.sha256 for this host"
            )
        return Artifact(self.kind, self.version, str(entry["url"]), str(sha))


@dataclass(frozen=True)
class HostRequest:
    host_name: str
    docker: ArtifactSpec
    sysbox: ArtifactSpec
    mode: ArtifactsMode
    allow_sysbox_restart: bool
    owner: str = ""

    @classmethod
    def from_props(cls, props: Mapping[str, Any]) -> HostRequest:
        return cls(
            host_name=str(props.get("hostName") or props["connection"]["host"]),
            docker=ArtifactSpec.from_props("docker", props["docker"]),
            sysbox=ArtifactSpec.from_props("sysbox", props["sysbox"]),
            mode=cast(ArtifactsMode, props.get("artifactsMode") or "download"),
            allow_sysbox_restart=bool(props.get("allowSysboxRestart", False)),
            owner=str(props.get("owner") or ""),
        )

    def plan(self, arch: str) -> InstallPlan:
        return InstallPlan(
            docker=self.docker.for_arch(arch),
            sysbox=self.sysbox.for_arch(arch),
            mode=self.mode,
            allow_sysbox_restart=self.allow_sysbox_restart,
            owner=self.owner,
        )


@dataclass(frozen=True)
class HostState:
    """What the inspect part of a script found, compared with what the plan installs."""

    distro: str
    kernel: str
    arch: str
    docker: str  # "ok" or why not
    sysbox: str
    unit_sha256: str
    supervisor_sha256: str
    sysctl_sha256: str
    service_active: bool
    sysbox_user: bool
    subuid_lines: int
    subgid_lines: int

    @classmethod
    def from_output(cls, stdout: str) -> HostState:
        d = facts.one(stdout, "state")
        return cls(
            distro=d["distro"],
            kernel=d["kernel"],
            arch=d["arch"],
            docker=d["docker"],
            sysbox=d["sysbox"],
            unit_sha256=d["unitSha256"],
            supervisor_sha256=d["supervisorSha256"],
            sysctl_sha256=d["sysctlSha256"],
            service_active=bool(d["serviceActive"]),
            sysbox_user=bool(d["sysboxUser"]),
            subuid_lines=int(d["subuidLines"]),
            subgid_lines=int(d["subgidLines"]),
        )

    def drift(self, plan: InstallPlan) -> list[str]:
        """Differences from a correct install of `plan`, in words; empty when none."""
        found: list[str] = []
        for artifact, status in ((plan.docker, self.docker), (plan.sysbox, self.sysbox)):
            if status != "ok":
                found.append(f"{artifact.name} {artifact.version}: {status}")
        files = (
            (render.UNIT_PATH, self.unit_sha256, render.render_unit(plan.sysbox.version)),
            (render.SUPERVISOR_PATH, self.supervisor_sha256, render.render_supervisor()),
            (render.SYSCTL_PATH, self.sysctl_sha256, render.render_sysctl()),
        )
        for path, actual, expected in files:
            if not actual:
                found.append(f"{path}: missing")
            elif actual != render.sha256_text(expected):
                found.append(f"{path}: content differs from what Dockyard writes")
        if not self.sysbox_user:
            found.append("user sysbox: missing")
        for path, count in (("/etc/subuid", self.subuid_lines), ("/etc/subgid", self.subgid_lines)):
            if count != 1:
                found.append(f"{path}: {count} sysbox lines (exactly 1 needed)")
        return found


@dataclass(frozen=True)
class InstallOutcome:
    plan: InstallPlan
    state: HostState
    actions: list[str]
    host_key: str
    fingerprint: str


@dataclass(frozen=True)
class RemoveOutcome:
    kept_for: list[str]  # instance unit files that keep the shared parts in place
    actions: list[str]
    other_owners: list[str] = field(default_factory=list)  # other SysboxHosts on this host


def _line_logger(log: Log, actions: list[str]) -> Callable[[str, str], None]:
    def on_line(stream: str, line: str) -> None:
        if stream == "stdout" and line.startswith(render.ACTION_PREFIX):
            action = line[len(render.ACTION_PREFIX) :]
            actions.append(action)
            log(action)

    return on_line


def gather_facts(sess: SshSession, request: HostRequest) -> preflight.HostFacts:
    shas = {
        str(entry["sha256"])
        for spec in (request.docker, request.sysbox)
        for entry in spec.by_arch.values()
        if entry.get("sha256")
    }
    result = sess.run(
        render.preflight_script(tuple(sorted(shas))), step="preflight", timeout=READ_TIMEOUT_S
    )
    return preflight.HostFacts.from_output(result.stdout)


def install(target: SshTarget, request: HostRequest, log: Log = _ignore) -> InstallOutcome:
    """Converge the host onto `request` (create, update and repair all land here)."""
    sess = session(target)
    facts = gather_facts(sess, request)
    preflight.check(request.host_name, facts)
    plan = request.plan(facts.arch)
    log(f"{facts.distro_name}, kernel {facts.kernel}, {facts.arch}")
    actions: list[str] = []
    if plan.mode == "upload":
        sent = artifacts.upload_missing(
            sess,
            [plan.docker, plan.sysbox],
            set(facts.cached_sha256),
            on_line=_line_logger(log, actions),
        )
        for item in sent:
            actions.append(f"artifact uploaded: {item}")
            log(f"uploaded {item}")
    result = sess.run(
        render.install_script(plan),
        step="install docker + sysbox",
        timeout=INSTALL_TIMEOUT_S,
        on_line=_line_logger(log, actions),
        # The script shows URLs without credentials; anything else that echoes one is masked.
        secrets=[*secret_parts(plan.docker.url), *secret_parts(plan.sysbox.url)],
    )
    state = HostState.from_output(result.stdout)
    drift = state.drift(plan)
    if drift:
        raise HostOutputError(
            f"host {request.host_name}: install finished but the host is not as expected: "
            + "; ".join(drift)
        )
    return InstallOutcome(plan, state, actions, sess.host_key, sess.fingerprint)


def inspect(target: SshTarget, plan: InstallPlan) -> tuple[HostState, str, str]:
    """Read-only look at the host: its state plus the host key line and fingerprint."""
    sess = session(target)
    result = sess.run(
        render.inspect_script(plan.docker, plan.sysbox), step="inspect", timeout=READ_TIMEOUT_S
    )
    return HostState.from_output(result.stdout), sess.host_key, sess.fingerprint


def remove(target: SshTarget, owner: str = "", log: Log = _ignore) -> RemoveOutcome:
    """Unregister `owner`; remove the shared layer unless an instance unit or another
    SysboxHost (another stack, a renamed host) still needs it."""
    sess = session(target)
    actions: list[str] = []
    result = sess.run(
        render.remove_script(owner),
        step="remove docker + sysbox",
        timeout=READ_TIMEOUT_S * 3,
        on_line=_line_logger(log, actions),
    )
    kept: list[str] = []
    owners: list[str] = []
    for line in result.stdout.splitlines():
        if line.startswith(render.KEEP_PREFIX):
            kept = line[len(render.KEEP_PREFIX) :].split()
        elif line.startswith(render.OWNERS_PREFIX):
            owners = line[len(render.OWNERS_PREFIX) :].split()
    return RemoveOutcome(kept, actions, owners)
