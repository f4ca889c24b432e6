"""`MetadataBlock`: only root on a host reaches the cloud metadata service (hostops does it).

create/update install or repair the rule and its boot unit, read reports drift, delete
removes both, except on a throw-away server (`throwaway: true`, a cloud server Pulumi
deletes right after): there it does nothing, so a destroy does not wait for a server that
may already be gone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import pulumi
import pulumi.dynamic as dyn

from dockyard_resources.config import values
from dockyard_resources.hostops import metadata_block as ops
from dockyard_resources.providers import quiet_errors
from dockyard_resources.providers.inputs import checked, connection_problems, is_unknown, normal
from dockyard_resources.providers.progress import Report, reporter, traced
from dockyard_resources.render.metadata_block import METADATA_ADDRESS
from dockyard_resources.transport import SshTarget

INPUT_KEYS: Final = ("connection", "hostName", "throwaway")
SECRET_OUTPUTS: Final = ["connection"]
# Another machine is another resource.
REPLACE_CONNECTION_KEYS: Final = ("host", "port")

quiet_errors.install()


def check_props(news: Mapping[str, Any]) -> list[tuple[str, str]]:
    problems = connection_problems(news.get("connection"))
    checked(problems, "hostName", values.host_name, news.get("hostName"))
    throwaway = news.get("throwaway")
    if not is_unknown(throwaway) and not isinstance(throwaway, bool):
        problems.append(("throwaway", f"must be true or false, got {throwaway!r}"))
    return problems


def diff_props(olds: Mapping[str, Any], news: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(changed keys, keys forcing replacement): local comparison only."""
    old_conn, new_conn = olds.get("connection") or {}, news.get("connection") or {}
    changed = [
        f"connection.{key}"
        for key in sorted(set(old_conn) | set(new_conn))
        if is_unknown(new_conn.get(key)) or normal(old_conn.get(key)) != normal(new_conn.get(key))
    ]
    changed += [key for key in INPUT_KEYS[1:] if normal(olds.get(key)) != normal(news.get(key))]
    if olds.get("drift"):
        changed.append("drift")
    replaces = [
        f"connection.{key}" for key in REPLACE_CONNECTION_KEYS if f"connection.{key}" in changed
    ]
    return changed, replaces


def _target(props: Mapping[str, Any]) -> SshTarget:
    return SshTarget.from_props(props["connection"])


def _report(props: Mapping[str, Any]) -> Report:
    return reporter("MetadataBlock", props.get("hostName"))


_traced = traced("MetadataBlock", lambda props: props.get("hostName"))


class MetadataBlockProvider(dyn.ResourceProvider):
    serialize_as_secret_always = True

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> dyn.CheckResult:
        inputs = {**news, "throwaway": news.get("throwaway", False)}
        return dyn.CheckResult(inputs, [dyn.CheckFailure(p, r) for p, r in check_props(inputs)])

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.DiffResult:
        changed, replaces = diff_props(olds, news)
        return dyn.DiffResult(changes=bool(changed), replaces=replaces)

    def _install(self, props: Mapping[str, Any]) -> dict[str, Any]:
        ops.install(_target(props))
        _report(props)(f"only root reaches {METADATA_ADDRESS} (also after a reboot)")
        return {**{key: props[key] for key in INPUT_KEYS if key in props}, "drift": []}

    @_traced
    def create(self, props: dict[str, Any]) -> dyn.CreateResult:
        conn = props["connection"]
        port = int(conn.get("port") or 22)
        resource_id = f"{props['hostName']}@{conn['host']}:{port}/metadata-block"
        return dyn.CreateResult(resource_id, self._install(props))

    @_traced
    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> dyn.UpdateResult:
        return dyn.UpdateResult(self._install(news))

    @_traced
    def read(self, id_: str, props: dict[str, Any]) -> dyn.ReadResult:
        drift = ops.inspect(_target(props)).drift()
        if drift:
            _report(props)(f"drifted: {'; '.join(drift)}")
        return dyn.ReadResult(id_, {**props, "drift": drift})

    @_traced
    def delete(self, _id: str, props: dict[str, Any]) -> None:
        if props.get("throwaway"):
            return
        ops.remove(_target(props))
        _report(props)(f"removed; every user reaches {METADATA_ADDRESS} again")


class MetadataBlock(dyn.Resource, module="dockyard", name="MetadataBlock"):
    """An iptables rule (kept across reboots by a unit) rejecting non-root users' packets to
    the cloud metadata service."""

    drift: pulumi.Output[list[str]]

    def __init__(
        self,
        resource_name: str,
        *,
        connection: pulumi.Input[Mapping[str, Any]],
        host_name: pulumi.Input[str],
        throwaway: pulumi.Input[bool] = False,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props: dict[str, Any] = {
            "connection": connection,
            "hostName": host_name,
            "throwaway": throwaway,
            "drift": None,
        }
        opts = pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(additional_secret_outputs=SECRET_OUTPUTS)
        )
        super().__init__(MetadataBlockProvider(), resource_name, props, opts)
