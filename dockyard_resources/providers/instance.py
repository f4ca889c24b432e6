"""`DockyardInstance`: one isolated dockerd (+ containerd, bridge, pool) on a SysboxHost.

check validates at preview, diff compares locally, create/update/delete run
`hostops.instance` over SSH, read inspects the host so drift shows in `pulumi refresh`.
"""

from __future__ import annotations

import ipaddress
import posixpath
from collections.abc import Callable, Mapping
from typing import Any

import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    ResourceProvider,
    UpdateResult,
)
from pulumi.runtime import rpc

from dockyard_resources.config import values
from dockyard_resources.config.network_request import request_networks
from dockyard_resources.config.networks import NETWORK_KEYS, InstanceNetworks, Requested
from dockyard_resources.hostops import instance as hostops
from dockyard_resources.providers import quiet_errors
from dockyard_resources.providers.inputs import (
    connection_problems,
    has_unknown,
    normal,
    whole_number,
)
from dockyard_resources.providers.progress import Report, reporter, traced
from dockyard_resources.render import sysbox_host as sysbox_layout
from dockyard_resources.render.instance import InstanceIdentity, InstanceSpec, ssh_forward
from dockyard_resources.transport import SshTarget, session

# The wire value of properties unknown during preview (tests send it as Pulumi would).
UNKNOWN = rpc.UNKNOWN

INPUT_KEYS = (
    "connection",
    "hostName",
    "dockerDir",
    "sysboxDir",
    "prefix",
    "root",
    "bridgeCidr",
    "fixedCidr",
    "poolBase",
    "poolSize",
    "members",
    "networkIsolation",
    "owner",
    "dockerSha256",
    "sysboxSha256",
    "enabled",
)
# A new prefix or root is a different instance (user, unit, bridge, paths): replace it,
# deleting the old one first because both would claim the same names.
REPLACE_KEYS = ("prefix", "root", "hostName")
# Changes that only need the files rewritten and this instance restarted.
UPDATE_KEYS = (
    "dockerDir",
    "sysboxDir",
    "bridgeCidr",
    "fixedCidr",
    "poolBase",
    "poolSize",
    "networkIsolation",
    # Set for an instance an earlier Dockyard made without one: the update adopts it.
    "owner",
    # New binaries under the same directory (a rebuilt or re-pinned artifact): the update
    # restarts the instance onto them.
    "dockerSha256",
    "sysboxSha256",
    # Parked (stopped and disabled, data kept) or running.
    "enabled",
)
# The machine itself: the instance lives on the old one, so a new address is a new instance.
# (Not the port: a local VM's forwarded port may change while the machine stays the same.)
REPLACE_CONNECTION_KEYS = ("host",)
# May be absent (members and networkIsolation have defaults their validators fill in). A
# network input is what the stack file writes: absent, the instance keeps the network it has
# and a new one gets a free one chosen on its host (config/network_request.py).
OPTIONAL_KEYS = ("dockerSha256", "sysboxSha256", *NETWORK_KEYS)
DEFAULTED_KEYS = ("members", "networkIsolation", "enabled", "allowDataLoss")

quiet_errors.install()


def _unknown(value: Any) -> bool:
    return has_unknown(value)


def _whole_number(value: Any) -> int:
    return values.pool_size(whole_number(value))


def _members(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"must be a list of user names (got {value!r})")
    names = [values.user_name(v) for v in value]
    if len(set(names)) != len(names):
        raise ValueError("lists a user more than once; list each user once")
    return names


def _binaries_dir(kind: str, installed_at: Callable[[str], str]) -> Callable[[Any], str]:
    """Checks `<kind>Dir`: a directory of Dockyard's own tree that the SysboxHost installs
    (`installed_at(version)`), nothing else, because the unit runs its binaries as root."""

    def check(value: Any) -> str:
        text = values.host_path(value)
        version = posixpath.basename(text).removeprefix(f"{kind}-")
        try:
            expected = installed_at(values.version(version))
        except ValueError:
            expected = ""
        if text != expected:
            raise ValueError(
                f"{text!r} is not a {kind} directory of Dockyard's own tree; root runs its"
                f" binaries, so only {installed_at('<version>')} is accepted: pass the"
                f" SysboxHost's {kind}Dir output"
            )
        return text

    return check


def _true_unless_false(value: Any) -> bool:
    # Absent (the stack default, and instances made before the option existed): true.
    if value is None:
        return True
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false (got {value!r})")
    return value


def _false_unless_true(value: Any) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false (got {value!r})")
    return value


_VALIDATORS: dict[str, Callable[[Any], Any]] = {
    "hostName": values.host_name,
    "dockerDir": _binaries_dir("docker", sysbox_layout.docker_dir),
    "sysboxDir": _binaries_dir("sysbox", sysbox_layout.sysbox_dir),
    "prefix": values.prefix,
    "root": values.root_dir,
    "bridgeCidr": lambda v: str(values.bridge_interface(v)),
    "fixedCidr": lambda v: str(values.private_network(v, "172.22.147.0/24")),
    "poolBase": lambda v: str(values.private_network(v, "172.28.0.0/16")),
    "poolSize": _whole_number,
    "members": _members,
    "networkIsolation": _true_unless_false,
    "enabled": _true_unless_false,
    "allowDataLoss": _false_unless_true,
    "owner": values.owner_id,
    "dockerSha256": values.sha256_hex,
    "sysboxSha256": values.sha256_hex,
}


def validate(news: dict[str, Any]) -> tuple[dict[str, Any], list[CheckFailure]]:
    """Normalised inputs and every problem found; unknown values are left for later."""
    inputs = dict(news)
    if news.get("connection") is None:
        failures = [CheckFailure("connection", "is required")]
    else:
        failures = [CheckFailure(k, why) for k, why in connection_problems(news["connection"])]
    for key, validator in _VALIDATORS.items():
        value = news.get(key)
        if _unknown(value):
            continue
        if value is None and key in OPTIONAL_KEYS:
            continue
        if value is None and key not in DEFAULTED_KEYS:
            failures.append(CheckFailure(key, "is required"))
            continue
        try:
            inputs[key] = validator(value)
        except ValueError as exc:
            failures.append(CheckFailure(key, str(exc)))
    if not failures:
        failures.extend(_cross_checks(inputs))
    return inputs, failures


def _cross_checks(inputs: dict[str, Any]) -> list[CheckFailure]:
    """The rules between the networks given (the others are kept or chosen on the host)."""
    if any(_unknown(inputs.get(k)) for k in NETWORK_KEYS):
        return []
    bridge = fixed = pool = None
    if inputs.get("bridgeCidr") is not None:
        bridge = ipaddress.IPv4Interface(inputs["bridgeCidr"]).network
    if inputs.get("fixedCidr") is not None:
        fixed = ipaddress.IPv4Network(inputs["fixedCidr"])
    if inputs.get("poolBase") is not None:
        pool = ipaddress.IPv4Network(inputs["poolBase"])
    size = inputs.get("poolSize")
    failures = []
    if bridge is not None and fixed is not None and not fixed.subnet_of(bridge):
        failures.append(
            CheckFailure("fixedCidr", f"fixedCidr {fixed} must lie inside bridgeCidr's {bridge}")
        )
    if bridge is not None and pool is not None and pool.overlaps(bridge):
        failures.append(CheckFailure("poolBase", f"poolBase {pool} overlaps bridgeCidr's {bridge}"))
    if pool is not None and size is not None and int(size) < pool.prefixlen:
        failures.append(
            CheckFailure(
                "poolSize",
                f"poolSize /{size} is larger than poolBase {pool}; use a length of at least"
                f" {pool.prefixlen} (e.g. 24)",
            )
        )
    return failures


def replacing_changes(olds: Mapping[str, Any], news: Mapping[str, Any]) -> dict[str, str]:
    """`{property: "old -> new"}` of the changes that make `news` a new instance (a replace,
    which deletes the old one first: both would claim the same names)."""
    changes = {
        key: f"{olds.get(key)} -> {news.get(key)}"
        for key in REPLACE_KEYS
        if _comparable(key, olds.get(key)) != _comparable(key, news.get(key))
    }
    old_conn, new_conn = olds.get("connection") or {}, news.get("connection") or {}
    if isinstance(old_conn, Mapping) and isinstance(new_conn, Mapping):
        for key in REPLACE_CONNECTION_KEYS:
            old, new = normal(old_conn.get(key)), normal(new_conn.get(key))
            if old != new:
                changes["connection"] = f"machine {old} -> {new}"
    return changes


def data_loss_problem(olds: Mapping[str, Any], news: Mapping[str, Any]) -> str | None:
    """Why this change would delete the instance's data, unless the stack file said yes
    (`allowDataLoss: true` on the instance). Checked at preview, before anything changes."""
    if not olds or news.get("allowDataLoss") is True:
        return None
    known = {k: v for k, v in news.items() if not _unknown(v)}
    reasons = replacing_changes(olds, {**olds, **known})
    if not reasons:
        return None
    return (
        f"instance {olds.get('prefix')} on host {olds.get('hostName')}:"
        f" {', '.join(f'{key} {change}' for key, change in reasons.items())}"
        f" replaces it, which deletes its data root {olds.get('root')} (images, containers,"
        " volumes) and its daemon first. Keep the old value, or, to accept the loss, set"
        " `allowDataLoss: true` on this instance in the stack file for this run"
    )


def _written(props: Mapping[str, Any]) -> Requested:
    """The networks the stack file writes (the checked inputs: valid where present)."""

    def given(key: str, parse: Callable[[str], Any]) -> Any:
        value = props.get(key)
        return None if value is None else parse(str(value))

    return Requested(
        prefix=str(props.get("prefix")),
        bridge_cidr=given("bridgeCidr", ipaddress.IPv4Interface),
        fixed_cidr=given("fixedCidr", ipaddress.IPv4Network),
        pool_base=given("poolBase", ipaddress.IPv4Network),
        pool_size=None if props.get("poolSize") is None else int(props["poolSize"]),
    )


def _held(olds: Mapping[str, Any]) -> InstanceNetworks:
    """The networks a deployed instance has (its outputs always carry all four)."""
    return InstanceNetworks(
        bridge_cidr=ipaddress.IPv4Interface(str(olds["bridgeCidr"])),
        fixed_cidr=ipaddress.IPv4Network(str(olds["fixedCidr"])),
        pool_base=ipaddress.IPv4Network(str(olds["poolBase"])),
        pool_size=int(olds["poolSize"]),
    )


def _networks_changed(olds: Mapping[str, Any], news: Mapping[str, Any]) -> bool:
    """Whether the networks the instance would have differ from those it has (a poolSize
    that does not fit is a change too: the update says why it cannot be made)."""
    if any(_unknown(news.get(k)) for k in NETWORK_KEYS):
        return True
    try:
        held = _held(olds)
        return request_networks(_written(news), held).complete() != held
    except (KeyError, ValueError):
        return True


def outputs(props: dict[str, Any]) -> dict[str, Any]:
    """All inputs echoed (diff and update see outputs as olds) plus the derived values."""
    spec = InstanceSpec.from_props(props)
    outs = {key: props.get(key) for key in INPUT_KEYS}
    outs["poolSize"] = spec.pool_size
    outs["members"] = list(spec.members)
    outs.update(
        socketPath=spec.socket_path,
        dockerHost=spec.docker_host,
        group=spec.group,
        serviceName=spec.service_name,
        bridgeName=spec.bridge_name,
        networks=spec.networks,
        sshForward=ssh_forward(spec, props["connection"]),
    )
    return outs


def _comparable(key: str, value: Any) -> Any:
    if key == "poolSize" and isinstance(value, (int, float)):
        return int(value)
    if key == "members":
        return sorted(value or [])
    return value


def _name(props: Mapping[str, Any]) -> str:
    return f"{props.get('hostName')}/{props.get('prefix')}"


def _report(props: Mapping[str, Any]) -> Report:
    return reporter("DockyardInstance", _name(props))


_traced = traced("DockyardInstance", _name)


def _healthy(props: dict[str, Any]) -> dict[str, Any]:
    """The outputs of an instance just installed (read reports what it finds later)."""
    outs = outputs(props)
    outs.update(healthy=True, health={})
    return outs


def _run(props: dict[str, Any]) -> hostops.Runner:
    return session(SshTarget.from_props(props["connection"]))


class DockyardInstanceProvider(ResourceProvider):
    """Holds no state: everything needed travels in the properties."""

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        inputs, failures = validate(news)
        loss = data_loss_problem(olds, inputs)
        if loss:
            failures.append(CheckFailure("allowDataLoss", loss))
        return CheckResult(inputs, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [
            key
            for key in INPUT_KEYS
            if key not in NETWORK_KEYS
            and _comparable(key, olds.get(key)) != _comparable(key, news.get(key))
        ]
        # A network left out is kept: only a written one that differs is a change.
        if _networks_changed(olds, news):
            changed += NETWORK_KEYS
        replaces = list(replacing_changes(olds, news))
        # A refresh that found the instance unhealthy: an update repairs it.
        unhealthy = olds.get("healthy") is False
        return DiffResult(
            changes=bool(changed) or unhealthy,
            replaces=replaces,
            stables=[],
            delete_before_replace=bool(replaces),
        )

    def _install(
        self, props: dict[str, Any], held: InstanceNetworks | None, *, adopt: bool, create: bool
    ) -> dict[str, Any]:
        """Converge the host to `props` and return the outputs of a healthy instance, whose
        networks are those written, else `held` (an existing instance keeps its own), else
        chosen and claimed on the host. A create that fails cleans up after itself
        (hostops.create): a failed create leaves no state, so no destroy would."""
        run, log = _run(props), _report(props)
        try:
            request = request_networks(_written(props), held)
        except ValueError as exc:
            raise hostops.InstanceError(f"instance {props.get('prefix')}: {exc}") from None
        identity = InstanceIdentity(
            prefix=str(props["prefix"]), root=str(props["root"]), owner=str(props["owner"])
        )
        networks = hostops.claim_networks(run, identity, request, log)
        props = {**props, **networks.props()}
        spec = InstanceSpec.from_props(props)
        enabled = props.get("enabled") is not False
        if create:
            hostops.create(run, spec, enabled=enabled, log=log)
        else:
            hostops.install(run, spec, adopt=adopt, enabled=enabled, log=log)
        return _healthy(props)

    @_traced
    def create(self, props: dict[str, Any]) -> CreateResult:
        outs = self._install(props, None, adopt=False, create=True)
        return CreateResult(f"{props['hostName']}/{props['prefix']!s}", outs)

    @_traced
    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        # An instance an earlier Dockyard made has no owner in its state: it is adopted.
        adopt = not olds.get("owner")
        return UpdateResult(self._install(news, _held(olds), adopt=adopt, create=False))

    @_traced
    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        spec = InstanceSpec.from_props(props)
        state = hostops.inspect(_run(props), spec)
        if not state.exists:
            return ReadResult(None, {})
        outs = outputs(props)
        # Members as found on the host (declared order kept when nothing drifted).
        if sorted(state.members) != sorted(spec.members):
            outs["members"] = sorted(state.members)
        health = state.health(spec, enabled=props.get("enabled") is not False)
        outs.update(healthy=not health["problems"], health=health)
        return ReadResult(id_, outs)

    @_traced
    def delete(self, _id: str, props: dict[str, Any]) -> None:
        spec = InstanceSpec.from_props(props)
        for kept in hostops.remove(_run(props), spec, log=_report(props)):
            pulumi.log.warn(f"DockyardInstance {props.get('hostName')}/{spec.prefix}: {kept}")


# The type instances had before they were named: kept as an alias, so state made then maps
# onto the named type without a replace.
UNNAMED_DYNAMIC_TYPE = "pulumi-python:dynamic:Resource"


class DockyardInstance(pulumi.dynamic.Resource, module="dockyard", name="DockyardInstance"):
    """One isolated Docker daemon; see docs/instances.md for inputs and outputs."""

    socketPath: pulumi.Output[str]
    dockerHost: pulumi.Output[str]
    group: pulumi.Output[str]
    serviceName: pulumi.Output[str]
    bridgeName: pulumi.Output[str]
    networks: pulumi.Output[dict[str, Any]]
    sshForward: pulumi.Output[str]
    healthy: pulumi.Output[bool]

    def __init__(
        self,
        resource_name: str,
        *,
        owner: pulumi.Input[str],
        connection: pulumi.Input[Mapping[str, Any]],
        host_name: pulumi.Input[str],
        docker_dir: pulumi.Input[str],
        sysbox_dir: pulumi.Input[str],
        prefix: pulumi.Input[str],
        root: pulumi.Input[str],
        bridge_cidr: pulumi.Input[str] | None = None,
        fixed_cidr: pulumi.Input[str] | None = None,
        pool_base: pulumi.Input[str] | None = None,
        pool_size: pulumi.Input[int] | None = None,
        members: pulumi.Input[list[str]] | None = None,
        network_isolation: pulumi.Input[bool] | None = None,
        enabled: pulumi.Input[bool] | None = None,
        allow_data_loss: pulumi.Input[bool] | None = None,
        docker_sha256: pulumi.Input[str] | None = None,
        sysbox_sha256: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props: dict[str, Any] = {
            "owner": owner,
            "connection": connection,
            "hostName": host_name,
            "dockerDir": docker_dir,
            "sysboxDir": sysbox_dir,
            "dockerSha256": docker_sha256,
            "sysboxSha256": sysbox_sha256,
            "prefix": prefix,
            "root": root,
            "bridgeCidr": bridge_cidr,
            "fixedCidr": fixed_cidr,
            "poolBase": pool_base,
            "poolSize": pool_size,
            "members": members or [],
            "networkIsolation": network_isolation,
            "enabled": enabled,
            # Read by `check` only (an opt-in for one change), never compared by `diff`.
            "allowDataLoss": allow_data_loss,
        }
        for out in (
            "socketPath", "dockerHost", "group", "serviceName", "bridgeName", "networks",
            "sshForward", "healthy", "health",
        ):  # fmt: skip
            props[out] = None
        defaults = pulumi.ResourceOptions(
            additional_secret_outputs=["connection"],
            aliases=[pulumi.Alias(type_=UNNAMED_DYNAMIC_TYPE)],
        )
        super().__init__(
            DockyardInstanceProvider(),
            resource_name,
            props,
            pulumi.ResourceOptions.merge(defaults, opts),
        )
