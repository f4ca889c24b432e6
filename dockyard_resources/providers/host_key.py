"""`NewHostKey` and `HostKeyRotation`: a cloud host's SSH host key, replaced once used.

A cloud server's first host key travels in its user data, which the metadata service hands
to any local user who asks. Two resources replace it (hostops/host_key.py does the work):

- `NewHostKey` connects pinned to that key and has the host generate its next key; the public
  half lands in this resource's state. The private half never leaves the host.
- `HostKeyRotation` installs that key for sshd, reloads it and checks it over a connection
  pinned to the new key. It connects pinned to the old key or to the one NewHostKey recorded,
  nothing else: a run cut after the reload, whose outputs were never saved, still finds a key
  it trusts. Its `hostKey` output is the pin of everything after it; `read` reports drift when
  the host presents, or sshd's key files hold, another key.

Two resources because a dynamic provider saves nothing of a failed `create`: the new key must
be in the state before sshd switches to it. Neither does anything on delete: the server goes
right after, and bringing back the published key would undo the point.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

import pulumi
import pulumi.dynamic as dyn

from dockyard_resources.config import values
from dockyard_resources.hostops import host_key as ops
from dockyard_resources.providers import quiet_errors
from dockyard_resources.providers.inputs import (
    checked,
    connection_problems,
    has_unknown,
    is_unknown,
    normal,
)
from dockyard_resources.providers.progress import Report, reporter, traced
from dockyard_resources.render.host_key import DEFAULT_SSHD_CONFIG
from dockyard_resources.transport import HostKeyMismatch, SshTarget, fingerprint_of

SECRET_OUTPUTS: Final = ["connection"]
_CONFIG_RE: Final = re.compile(r"/[A-Za-z0-9._+/-]{1,200}")
_NO_PIN: Final = "is required: the key the host presents now (no trust on first use)"

quiet_errors.install()


def sshd_config_path(value: Any) -> str:
    """An absolute file path of plain characters, as the scripts take it."""
    if not isinstance(value, str) or not _CONFIG_RE.fullmatch(value) or "/../" in value + "/":
        raise ValueError(
            f"{value!r} is not a plain absolute path (letters, digits, '.', '_', '+', '-', '/')"
        )
    return value


def _problems(news: Mapping[str, Any], *, new_key: bool) -> list[tuple[str, str]]:
    conn = news.get("connection")
    problems = connection_problems(conn)
    pin = conn.get("hostKey") if isinstance(conn, Mapping) else None
    if isinstance(conn, Mapping) and not pin and not is_unknown(pin):
        problems.append(("connection.hostKey", _NO_PIN))
    checked(problems, "hostName", values.host_name, news.get("hostName"))
    checked(problems, "sshdConfig", sshd_config_path, news.get("sshdConfig"))
    if new_key:
        key = news.get("newHostKey")
        if key is None:
            problems.append(("newHostKey", "is required (the NewHostKey's publicKey)"))
        checked(problems, "newHostKey", values.host_key, key)
        if isinstance(key, str) and not is_unknown(key) and not key.startswith(ops.KEY_TYPE + " "):
            problems.append(("newHostKey", f"must be an {ops.KEY_TYPE} key"))
    return problems


def _diff(
    olds: Mapping[str, Any], news: Mapping[str, Any], keys: tuple[str, ...], replace: set[str]
) -> dyn.DiffResult:
    """Changed inputs (connection keys one by one); a key in `replace` replaces."""
    old_conn, new_conn = olds.get("connection") or {}, news.get("connection")
    changed: list[str] = []
    if not isinstance(new_conn, Mapping):
        changed.append("connection.host")
    else:
        for key in sorted(set(old_conn) | set(new_conn)):
            old, new = old_conn.get(key), new_conn.get(key)
            if key == "hostKey" and isinstance(old, str) and isinstance(new, str):
                old, new = old.split()[:2], new.split()[:2]
            if is_unknown(new) or normal(old) != normal(new):
                changed.append(f"connection.{key}")
    for key in keys:
        if has_unknown(news.get(key)) or normal(olds.get(key)) != normal(news.get(key)):
            changed.append(key)
    replaces = [key for key in changed if key in replace]
    return dyn.DiffResult(
        changes=bool(changed) or bool(olds.get("drift")),
        replaces=replaces,
        delete_before_replace=False,
    )


def _target(props: Mapping[str, Any]) -> SshTarget:
    return SshTarget.from_props(props["connection"])


def _config(props: Mapping[str, Any]) -> str:
    return str(props.get("sshdConfig") or DEFAULT_SSHD_CONFIG)


def _name(props: Mapping[str, Any]) -> object:
    return props.get("hostName")


def _resource_id(props: Mapping[str, Any], what: str) -> str:
    conn = props["connection"]
    return f"{props['hostName']}@{conn['host']}:{int(conn.get('port') or 22)}/{what}"


# --- NewHostKey ------------------------------------------------------------------------------

NEW_KEY_INPUTS: Final = ("connection", "hostName", "serverId", "sshdConfig")
# A new server, or another key at its start, needs a key of its own.
NEW_KEY_REPLACES: Final = {"connection.host", "connection.port", "connection.hostKey", "serverId"}

_traced_new = traced("NewHostKey", _name)


def _new_key_report(props: Mapping[str, Any]) -> Report:
    return reporter("NewHostKey", _name(props))


class NewHostKeyProvider(dyn.ResourceProvider):
    serialize_as_secret_always = True

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> dyn.CheckResult:
        failures = [dyn.CheckFailure(p, r) for p, r in _problems(news, new_key=False)]
        return dyn.CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.DiffResult:
        return _diff(olds, news, NEW_KEY_INPUTS[1:], NEW_KEY_REPLACES)

    @_traced_new
    def create(self, props: dict[str, Any]) -> dyn.CreateResult:
        report = _new_key_report(props)
        new = ops.prepare(_target(props), _config(props), report)
        report(f"the host's next key is {new.fingerprint}")
        outs: dict[str, Any] = {
            **{key: props[key] for key in NEW_KEY_INPUTS if key in props},
            "publicKey": new.public_key,
            "fingerprint": new.fingerprint,
            "keyFile": new.key_file,
        }
        return dyn.CreateResult(_resource_id(props, "new-host-key"), outs)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.UpdateResult:
        # Nothing on the host depends on the other inputs: keep the recorded key.
        kept: dict[str, Any] = {
            key: olds[key] for key in ("publicKey", "fingerprint", "keyFile") if key in olds
        }
        return dyn.UpdateResult({**news, **kept})

    def read(self, id_: str, props: dict[str, Any]) -> dyn.ReadResult:
        # What the host did with the key, HostKeyRotation's read checks.
        return dyn.ReadResult(id_, props)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None


class NewHostKey(dyn.Resource, module="dockyard", name="NewHostKey"):
    """The next host key of a host, generated on it; only the public half is kept."""

    publicKey: pulumi.Output[str]
    fingerprint: pulumi.Output[str]
    keyFile: pulumi.Output[str]

    def __init__(
        self,
        resource_name: str,
        *,
        connection: pulumi.Input[Mapping[str, Any]],
        host_name: pulumi.Input[str],
        server_id: pulumi.Input[str],
        sshd_config: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props: dict[str, Any] = {
            "connection": connection,
            "hostName": host_name,
            "serverId": server_id,
            "sshdConfig": sshd_config,
            "publicKey": None,
            "fingerprint": None,
            "keyFile": None,
        }
        opts = pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(additional_secret_outputs=SECRET_OUTPUTS)
        )
        super().__init__(NewHostKeyProvider(), resource_name, props, opts)


# --- HostKeyRotation -------------------------------------------------------------------------

ROTATION_INPUTS: Final = ("connection", "hostName", "newHostKey", "sshdConfig")
ROTATION_REPLACES: Final = {
    "connection.host",
    "connection.port",
    "connection.hostKey",
    "newHostKey",
}

_traced_rotation = traced("HostKeyRotation", _name)


def _rotation_report(props: Mapping[str, Any]) -> Report:
    return reporter("HostKeyRotation", _name(props))


def rotation_drift(props: Mapping[str, Any]) -> list[str]:
    """What read finds different from a finished rotation; empty when nothing."""
    target = ops.pinned(_target(props), str(props["hostKey"]))
    try:
        files = ops.inspect(target, str(props["connection"]["hostKey"]), _config(props))
    except HostKeyMismatch as exc:
        return [
            f"the host presents the host key {exc.seen}, not the rotated key "
            f"{fingerprint_of(str(props['hostKey']))}"
        ]
    return files.drift()


class HostKeyRotationProvider(dyn.ResourceProvider):
    serialize_as_secret_always = True

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> dyn.CheckResult:
        failures = [dyn.CheckFailure(p, r) for p, r in _problems(news, new_key=True)]
        return dyn.CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.DiffResult:
        return _diff(olds, news, ROTATION_INPUTS[1:], ROTATION_REPLACES)

    def _rotate(self, props: Mapping[str, Any]) -> dict[str, Any]:
        done = ops.rotate(
            _target(props), str(props["newHostKey"]), _config(props), _rotation_report(props)
        )
        return {
            **{key: props[key] for key in ROTATION_INPUTS if key in props},
            "hostKey": done.host_key,
            "hostKeyFingerprint": done.fingerprint,
            "keyFile": done.key_file,
            "drift": [],
        }

    @_traced_rotation
    def create(self, props: dict[str, Any]) -> dyn.CreateResult:
        return dyn.CreateResult(_resource_id(props, "host-key-rotation"), self._rotate(props))

    @_traced_rotation
    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> dyn.UpdateResult:
        return dyn.UpdateResult(self._rotate(news))

    @_traced_rotation
    def read(self, id_: str, props: dict[str, Any]) -> dyn.ReadResult:
        drift = rotation_drift(props)
        if drift:
            _rotation_report(props)(f"drifted: {'; '.join(drift)}")
        return dyn.ReadResult(id_, {**props, "drift": drift})

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None


class HostKeyRotation(dyn.Resource, module="dockyard", name="HostKeyRotation"):
    """sshd of a host switched to its NewHostKey; `hostKey` is the pin from then on."""

    hostKey: pulumi.Output[str]
    hostKeyFingerprint: pulumi.Output[str]
    keyFile: pulumi.Output[str]
    drift: pulumi.Output[list[str]]

    def __init__(
        self,
        resource_name: str,
        *,
        connection: pulumi.Input[Mapping[str, Any]],
        host_name: pulumi.Input[str],
        new_host_key: pulumi.Input[str],
        sshd_config: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props: dict[str, Any] = {
            "connection": connection,
            "hostName": host_name,
            "newHostKey": new_host_key,
            "sshdConfig": sshd_config,
            "hostKey": None,
            "hostKeyFingerprint": None,
            "keyFile": None,
            "drift": None,
        }
        opts = pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(additional_secret_outputs=SECRET_OUTPUTS)
        )
        super().__init__(HostKeyRotationProvider(), resource_name, props, opts)
