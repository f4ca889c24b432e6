"""`SysboxHost`: the Pulumi dynamic resource that makes a reachable Linux host a Dockyard host.

check and diff are local (no SSH); create/update converge the host through
`hostops.sysbox_host.install`, read inspects it, delete removes the shared layer unless an
instance still needs it. The provider object is pickled into the state: it holds no
connection and no credential, only code.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi.dynamic as dyn

from dockyard_resources.config import values
from dockyard_resources.config.urls import has_credentials
from dockyard_resources.errors import InputError
from dockyard_resources.hostops import sysbox_host as ops
from dockyard_resources.providers import quiet_errors
from dockyard_resources.providers.inputs import checked, connection_problems, normal
from dockyard_resources.providers.inputs import has_unknown as _unknown
from dockyard_resources.providers.progress import Report, reporter, traced
from dockyard_resources.render import sysbox_host as render
from dockyard_resources.transport import SshTarget

ARCHES = ("x86_64", "aarch64")
MODES = ("download", "upload")
SECRET_OUTPUTS = ["connection"]
# A different machine means a new resource; everything else converges in place.
REPLACE_CONNECTION_KEYS = ("host", "port")
INPUT_KEYS = (
    "connection",
    "hostName",
    "docker",
    "sysbox",
    "artifactsMode",
    "allowSysboxRestart",
    "owner",
)

quiet_errors.install()


def _urls_carry_credentials(spec: Any) -> bool:
    """True when any artifact URL of a `{version, artifacts: {arch: {url, ...}}}` spec holds
    credentials (config/urls.py)."""
    by_arch = spec.get("artifacts") if isinstance(spec, Mapping) else None
    if not isinstance(by_arch, Mapping):
        return False
    return any(
        isinstance(entry, Mapping) and has_credentials(str(entry.get("url") or ""))
        for entry in by_arch.values()
    )


def _secret_if_credentials(spec: pulumi.Input[Mapping[str, Any]]) -> tuple[Any, bool]:
    """The artifact spec as the resource input, a secret when a URL carries credentials,
    and whether its output must be listed as secret. A spec that is (or holds) an Output is
    decided when it resolves, and its output is listed as secret in any case."""
    if isinstance(spec, Mapping) and not _holds_outputs(spec):
        if _urls_carry_credentials(spec):
            return pulumi.Output.secret(spec), True
        return spec, False
    resolved = pulumi.Output.from_input(spec)
    return resolved.apply(
        lambda v: pulumi.Output.secret(v) if _urls_carry_credentials(v) else v
    ), True


def _holds_outputs(value: Any) -> bool:
    if isinstance(value, pulumi.Output) or hasattr(value, "__await__"):
        return True
    if isinstance(value, Mapping):
        return any(_holds_outputs(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_holds_outputs(v) for v in value)
    return False


# --- check ---------------------------------------------------------------------------------


def _check_artifacts(kind: str, spec: Any, mode: Any) -> list[tuple[str, str]]:
    if _unknown(spec):
        return []
    if not isinstance(spec, Mapping):
        return [(kind, "must be a mapping {version, artifacts: {x86_64: {url, sha256}, ...}}")]
    problems: list[tuple[str, str]] = []
    checked(problems, f"{kind}.version", values.version, spec.get("version"))
    by_arch = spec.get("artifacts")
    if _unknown(by_arch):
        return problems
    if not isinstance(by_arch, Mapping) or not by_arch:
        return [
            *problems,
            (f"{kind}.artifacts", f"must map {' / '.join(ARCHES)} to {{url, sha256}}"),
        ]
    for arch, entry in by_arch.items():
        key = f"{kind}.artifacts.{arch}"
        if arch not in ARCHES:
            problems.append((key, f"unknown architecture; use {' or '.join(ARCHES)}"))
            continue
        if _unknown(entry):
            continue
        if not isinstance(entry, Mapping):
            problems.append((key, "must be a mapping {url, sha256}"))
            continue
        location = functools.partial(values.artifact_location, mode=str(mode))
        if entry.get("url") is None:
            problems.append((f"{key}.url", "is required"))
        checked(problems, f"{key}.url", location, entry.get("url"))
        checked(problems, f"{key}.sha256", values.sha256_hex, entry.get("sha256"))
    return problems


def sysbox_restart_problem(
    old_sysbox: Any, new_sysbox: Any, allow: Any, arch: str | None = None
) -> str | None:
    """Why this sysbox change needs allowSysboxRestart, or None when it does not."""
    if not isinstance(old_sysbox, Mapping) or not isinstance(new_sysbox, Mapping) or allow is True:
        return None

    def pin(spec: Mapping[str, Any]) -> tuple[Any, Any]:
        by_arch = spec.get("artifacts")
        if arch and isinstance(by_arch, Mapping):
            entry = by_arch.get(arch)
            return spec.get("version"), entry.get("sha256") if isinstance(entry, Mapping) else entry
        return spec.get("version"), by_arch

    if pin(old_sysbox) == pin(new_sysbox):
        return None
    return (
        f"sysbox changes from {old_sysbox.get('version')} to {new_sysbox.get('version')} "
        "(or its artifact changes): installing it restarts sysbox-fs, which breaks every running "
        "sysbox container on this host (they must be recreated). Set "
        "hosts[i].allowSysboxRestart: true to accept that."
    )


def sysbox_restart_warning(olds: Mapping[str, Any], news: Mapping[str, Any]) -> str | None:
    """What the preview must say when this update restarts the shared sysbox service: the
    opt-in is set and sysbox (or its unit, supervisor or binaries, per `read`'s drift) changes
    on the host."""
    if news.get("allowSysboxRestart") is not True:
        return None
    arch = olds.get("arch")
    changes = sysbox_restart_problem(olds.get("sysbox"), news.get("sysbox"), False, arch)
    repaired = [
        line
        for line in olds.get("drift") or []
        if isinstance(line, str)
        and line.startswith((render.UNIT_PATH, render.SUPERVISOR_PATH, "sysbox "))
    ]
    if not changes and not repaired:
        return None
    what = "sysbox changes" if changes else f"it repairs {'; '.join(repaired)}"
    return (
        f"SysboxHost {news.get('hostName')}: {what}, and with allowSysboxRestart this update "
        f"restarts {render.SERVICE_NAME} if it runs: every Dockyard instance on this host, of "
        "every stack, restarts with it at once (Requires=), and their running sysbox "
        "containers stop"
    )


def check_props(olds: Mapping[str, Any], news: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Every problem with the inputs as (property path, reason); no host is touched."""
    problems = connection_problems(news.get("connection"))
    checked(problems, "hostName", values.host_name, news.get("hostName"))
    mode = news.get("artifactsMode", "download")
    if not _unknown(mode) and mode not in MODES:
        problems.append(("artifactsMode", f"must be download or upload, got {mode!r}"))
    for kind in ("docker", "sysbox"):
        problems += _check_artifacts(kind, news.get(kind), mode)
    if news.get("owner") is None:
        problems.append(("owner", "is required (project/stack/resource)"))
    checked(problems, "owner", values.owner_id, news.get("owner"))
    allow = news.get("allowSysboxRestart", False)
    if not _unknown(allow) and not isinstance(allow, bool):
        problems.append(("allowSysboxRestart", f"must be true or false, got {allow!r}"))
    restart = sysbox_restart_problem(olds.get("sysbox"), news.get("sysbox"), allow)
    if restart:
        problems.append(("allowSysboxRestart", restart))
    return problems


def _normalized(news: Mapping[str, Any]) -> dict[str, Any]:
    """Inputs with defaults filled and sha256s lower-cased (unknowns left alone)."""
    inputs = dict(news)
    inputs.setdefault("artifactsMode", "download")
    inputs.setdefault("allowSysboxRestart", False)
    for kind in ("docker", "sysbox"):
        spec = inputs.get(kind)
        if isinstance(spec, Mapping) and isinstance(spec.get("artifacts"), Mapping):
            by_arch = {}
            for arch, entry in spec["artifacts"].items():
                if isinstance(entry, Mapping) and isinstance(entry.get("sha256"), str):
                    by_arch[arch] = {**entry, "sha256": entry["sha256"].lower()}
                else:
                    by_arch[arch] = entry
            inputs[kind] = {**spec, "artifacts": by_arch}
    return inputs


# --- diff ----------------------------------------------------------------------------------


def diff_props(olds: Mapping[str, Any], news: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(changed input keys, keys forcing replacement), from the old outputs and new inputs."""
    old_conn = olds.get("connection") or {}
    new_conn = news.get("connection")
    changed: list[str] = []
    replaces: list[str] = []
    if _unknown(new_conn) or not isinstance(new_conn, Mapping):
        return ["connection"], ["connection"]
    for key in REPLACE_CONNECTION_KEYS:
        old, new = old_conn.get(key), new_conn.get(key)
        if _unknown(new) or normal(old) != normal(new):
            replaces.append(f"connection.{key}")
    other_keys = (set(old_conn) | set(new_conn)) - set(REPLACE_CONNECTION_KEYS)
    for key in sorted(other_keys):
        # The pinned key lives in the outputs; inputs without one keep using it.
        if key == "hostKey" and not new_conn.get("hostKey"):
            continue
        if key == "hostKey":
            if _key_material(old_conn.get(key)) != _key_material(new_conn.get(key)):
                changed.append("connection.hostKey")
        elif old_conn.get(key) != new_conn.get(key):
            changed.append(f"connection.{key}")
    if replaces:
        changed += replaces
    for key in INPUT_KEYS[1:]:
        if _unknown(news.get(key)) or normal(olds.get(key)) != normal(news.get(key)):
            changed.append(key)
    if olds.get("drift"):
        changed.append("drift")
    return sorted(set(changed)), (["connection"] if replaces else [])


def _key_material(line: Any) -> Any:
    """A host key line without its comment: the outputs hold the key as the transport saw it
    (no comment), the input as configured or from LocalVm (`... root@<vm>`)."""
    if isinstance(line, str) and not _unknown(line):
        return " ".join(line.split()[:2])
    return line


# --- host operations -----------------------------------------------------------------------


def _target(connection: Mapping[str, Any], pin: str | None) -> SshTarget:
    conn = dict(connection)
    if pin and not conn.get("hostKey"):
        conn["hostKey"] = pin
    return SshTarget.from_props(conn)


def _outputs(inputs: Mapping[str, Any], outcome: ops.InstallOutcome) -> dict[str, Any]:
    plan, state = outcome.plan, outcome.state
    connection = {**inputs["connection"], "hostKey": outcome.host_key}
    return {
        **{k: inputs[k] for k in INPUT_KEYS if k in inputs},
        "connection": connection,
        "distro": state.distro,
        "kernel": state.kernel,
        "arch": state.arch,
        "dockerVersion": plan.docker.version,
        "sysboxVersion": plan.sysbox.version,
        "dockerDir": render.docker_dir(plan.docker.version),
        "sysboxDir": render.sysbox_dir(plan.sysbox.version),
        "dockerSha256": plan.docker.sha256,
        "sysboxSha256": plan.sysbox.sha256,
        "hostKey": outcome.host_key,
        "hostKeyFingerprint": outcome.fingerprint,
        "drift": [],
    }


def _report(props: Mapping[str, Any]) -> Report:
    return reporter("SysboxHost", props.get("hostName"))


_traced = traced("SysboxHost", lambda props: props.get("hostName"))


class SysboxHostProvider(dyn.ResourceProvider):
    serialize_as_secret_always = True

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> dyn.CheckResult:
        failures = [dyn.CheckFailure(p, r) for p, r in check_props(olds, news)]
        return dyn.CheckResult(_normalized(news), failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.DiffResult:
        changed, replaces = diff_props(olds, news)
        restart = sysbox_restart_problem(
            olds.get("sysbox"), news.get("sysbox"), news.get("allowSysboxRestart"),
            olds.get("arch"),
        )  # fmt: skip
        if restart and not replaces:
            raise InputError(f"SysboxHost {olds.get('hostName')}: {restart}")
        warning = None if replaces else sysbox_restart_warning(olds, news)
        if warning:
            pulumi.log.warn(warning)
        if changed:
            how = "replace" if replaces else "update in place"
            _report(news)(f"{how}; changed: {', '.join(changed)}")
        return dyn.DiffResult(
            changes=bool(changed), replaces=replaces, delete_before_replace=bool(replaces)
        )

    def _install(self, inputs: Mapping[str, Any], pin: str | None) -> dict[str, Any]:
        request = ops.HostRequest.from_props(inputs)
        report = _report(inputs)
        outcome = ops.install(_target(inputs["connection"], pin), request, report)
        report("done" if outcome.actions else "nothing to change")
        return _outputs(inputs, outcome)

    @_traced
    def create(self, props: dict[str, Any]) -> dyn.CreateResult:
        outs = self._install(props, None)
        conn = props["connection"]
        port = int(conn.get("port") or 22)
        return dyn.CreateResult(f"{outs['hostName']}@{conn['host']}:{port}", outs)

    @_traced
    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.UpdateResult:
        restart = sysbox_restart_problem(
            olds.get("sysbox"), news.get("sysbox"), news.get("allowSysboxRestart"),
            olds.get("arch"),
        )  # fmt: skip
        if restart:
            raise InputError(f"SysboxHost {olds.get('hostName')}: {restart}")
        return dyn.UpdateResult(self._install(news, olds.get("hostKey")))

    @_traced
    def read(self, id_: str, props: dict[str, Any]) -> dyn.ReadResult:
        request = ops.HostRequest.from_props(props)
        plan = request.plan(str(props["arch"]))
        state, host_key, fingerprint = ops.inspect(
            _target(props["connection"], props.get("hostKey")), plan
        )
        drift = state.drift(plan)
        outs = dict(props)
        outs.update(
            distro=state.distro,
            kernel=state.kernel,
            arch=state.arch,
            dockerVersion=plan.docker.version if state.docker == "ok" else "",
            dockerSha256=plan.docker.sha256 if state.docker == "ok" else "",
            sysboxVersion=plan.sysbox.version if state.sysbox == "ok" else "",
            sysboxSha256=plan.sysbox.sha256 if state.sysbox == "ok" else "",
            hostKey=host_key,
            hostKeyFingerprint=fingerprint,
            drift=drift,
        )
        if drift:
            _report(props)(f"drifted: {'; '.join(drift)}")
        return dyn.ReadResult(id_, outs)

    @_traced
    def delete(self, _id: str, props: dict[str, Any]) -> None:
        name = props.get("hostName")
        target = _target(props["connection"], props.get("hostKey"))
        outcome = ops.remove(target, str(props.get("owner") or ""), _report(props))
        if outcome.kept_for:
            pulumi.log.warn(
                f"SysboxHost {name}: kept Docker, sysbox and dockyard-sysbox.service on the host "
                f"because Dockyard instance units remain: {', '.join(outcome.kept_for)}"
            )
        elif outcome.other_owners:
            pulumi.log.warn(
                f"SysboxHost {name}: kept Docker, sysbox and dockyard-sysbox.service on the host "
                f"because other SysboxHosts use it: {', '.join(outcome.other_owners)}"
            )
        elif not outcome.actions:
            _report(props)("nothing left to remove")


class SysboxHost(dyn.Resource, module="dockyard", name="SysboxHost"):
    """Docker + sysbox and the shared dockyard-sysbox.service on one host."""

    connection: pulumi.Output[dict[str, Any]]
    hostName: pulumi.Output[str]
    distro: pulumi.Output[str]
    kernel: pulumi.Output[str]
    arch: pulumi.Output[str]
    dockerVersion: pulumi.Output[str]
    sysboxVersion: pulumi.Output[str]
    dockerDir: pulumi.Output[str]
    sysboxDir: pulumi.Output[str]
    dockerSha256: pulumi.Output[str]
    sysboxSha256: pulumi.Output[str]
    hostKey: pulumi.Output[str]
    hostKeyFingerprint: pulumi.Output[str]
    drift: pulumi.Output[list[str]]

    def __init__(
        self,
        resource_name: str,
        *,
        connection: pulumi.Input[Mapping[str, Any]],
        host_name: pulumi.Input[str],
        docker: pulumi.Input[Mapping[str, Any]],
        sysbox: pulumi.Input[Mapping[str, Any]],
        owner: pulumi.Input[str],
        artifacts_mode: pulumi.Input[str] = "download",
        allow_sysbox_restart: pulumi.Input[bool] = False,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        docker_input, docker_secret = _secret_if_credentials(docker)
        sysbox_input, sysbox_secret = _secret_if_credentials(sysbox)
        props: dict[str, Any] = {
            "owner": owner,
            "connection": connection,
            "hostName": host_name,
            "docker": docker_input,
            "sysbox": sysbox_input,
            "artifactsMode": artifacts_mode,
            "allowSysboxRestart": allow_sysbox_restart,
        }
        for out in (
            "distro", "kernel", "arch", "dockerVersion", "sysboxVersion", "dockerDir",
            "sysboxDir", "dockerSha256", "sysboxSha256", "hostKey", "hostKeyFingerprint", "drift",
        ):  # fmt: skip
            props[out] = None
        secret_outputs = [
            *SECRET_OUTPUTS,
            *(["docker"] if docker_secret else []),
            *(["sysbox"] if sysbox_secret else []),
        ]
        opts = pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(additional_secret_outputs=secret_outputs)
        )
        super().__init__(SysboxHostProvider(), resource_name, props, opts)
