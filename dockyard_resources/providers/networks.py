"""`NetworkAllocation`: the networks of one host's instances, kept stable across runs.

A pure dynamic resource (no I/O in any method). Its input `instances` lists the host's
instances in stack-file order with the networks the file gives them explicitly; `check`
completes them into `allocation` (`{prefix: {bridgeCidr, fixedCidr, poolBase, poolSize}}`)
with `config.networks.plan_host_networks`, passing what the previous run decided (the engine
hands `check` the previous checked inputs as `olds`), so an instance that stays keeps its
networks whatever happens to the others. The allocation is part of the checked inputs: a
preview shows it, and the outputs echo the inputs. Each `DockyardInstance` takes its networks
from `allocation`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import pulumi
import pulumi.dynamic as dyn

from dockyard_resources.config import values
from dockyard_resources.config.networks import (
    NETWORK_KEYS,
    Deployed,
    InstanceNetworks,
    Requested,
    plan_host_networks,
)
from dockyard_resources.config.spec import ResolvedInstance
from dockyard_resources.providers.inputs import has_unknown, normal, whole_number

INPUT_KEYS: Final = ("hostName", "instances")
# Compared by diff: the inputs and what check made of them.
DIFF_KEYS: Final = ("hostName", "instances", "allocation")
_ENTRY_KEYS: Final = ("prefix", *NETWORK_KEYS)


def requested_props(spec: ResolvedInstance) -> dict[str, Any]:
    """`{prefix, <network keys written in the stack file>}`: one entry of `instances`."""
    props = spec.props()
    return {
        "prefix": spec.prefix,
        **{key: props[key] for key in NETWORK_KEYS if key not in spec.allocated},
    }


def parse_requested(entry: Any) -> Requested:
    """One entry of `instances`; raises ValueError naming the key."""
    if not isinstance(entry, Mapping):
        raise ValueError(f"must be a mapping {{prefix, bridgeCidr?, ...}} (got {entry!r})")
    extra = sorted(set(entry) - set(_ENTRY_KEYS))
    if extra:
        raise ValueError(f"unknown keys {', '.join(extra)}; use {', '.join(_ENTRY_KEYS)}")

    def parsed(key: str, parse: Any) -> Any:
        value = entry.get(key)
        if value is None and key != "prefix":
            return None
        try:
            return parse(value)
        except ValueError as exc:
            raise ValueError(f"{key}: {exc}") from None

    return Requested(
        prefix=parsed("prefix", values.prefix),
        bridge_cidr=parsed("bridgeCidr", values.bridge_interface),
        fixed_cidr=parsed("fixedCidr", lambda v: values.private_network(v, "172.22.147.0/24")),
        pool_base=parsed("poolBase", lambda v: values.private_network(v, "172.28.0.0/16")),
        pool_size=parsed("poolSize", lambda v: values.pool_size(whole_number(v))),
    )


def _parse_networks(value: Any) -> InstanceNetworks:
    if not isinstance(value, Mapping):
        raise ValueError(f"not a mapping: {value!r}")
    return InstanceNetworks(
        bridge_cidr=values.bridge_interface(value.get("bridgeCidr")),
        fixed_cidr=values.private_network(value.get("fixedCidr"), ""),
        pool_base=values.private_network(value.get("poolBase"), ""),
        pool_size=values.pool_size(whole_number(value.get("poolSize"))),
        allocated=frozenset(),
    )


def deployed_of(olds: Mapping[str, Any]) -> dict[str, Deployed]:
    """What the previous run decided, by prefix. Entries that cannot be read (another shape
    of an older version, unknowns) are left out: those instances are allocated afresh."""
    entries = olds.get("instances")
    allocation = olds.get("allocation")
    if not isinstance(entries, list) or not isinstance(allocation, Mapping):
        return {}
    deployed: dict[str, Deployed] = {}
    for entry in entries:
        try:
            requested = parse_requested(entry)
            networks = _parse_networks(allocation.get(requested.prefix))
        except ValueError:
            continue
        deployed[requested.prefix] = Deployed(requested, networks)
    return deployed


def allocate(
    olds: Mapping[str, Any], news: Mapping[str, Any]
) -> tuple[dict[str, Any] | None, list[tuple[str, str]]]:
    """(`allocation`, problems as (property, reason)); `allocation` is None when the inputs
    are unknown (preview of a program whose inputs are not known yet) or unusable."""
    entries = news.get("instances")
    host = news.get("hostName")
    where = f"host {host}" if isinstance(host, str) else "this host"
    if has_unknown(entries):
        return None, []
    if not isinstance(entries, list):
        return None, [("instances", f"must be a list of {{prefix, bridgeCidr?, ...}} ({where})")]
    requested: list[tuple[str, Requested]] = []
    problems: list[tuple[str, str]] = []
    for i, entry in enumerate(entries):
        try:
            one = parse_requested(entry)
        except ValueError as exc:
            problems.append(("instances", f"instances[{i}] ({where}): {exc}"))
            continue
        if any(one.prefix == seen.prefix for _, seen in requested):
            reason = f"instances[{i}] ({where}): {one.prefix} is listed twice"
            problems.append(("instances", reason))
            continue
        requested.append((f"instances.{one.prefix}", one))
    if problems:
        return None, problems
    planned, errors = plan_host_networks(requested, deployed_of(olds))
    if errors:
        return None, [("instances", f"{error} ({where})") for error in errors]
    allocation = {
        one.prefix: networks.props()
        for (_, one), networks in zip(requested, planned, strict=True)
        if networks is not None
    }
    return allocation, []


def _normal(key: str, value: Any) -> Any:
    """Comparable form: numbers as floats, `instances` by prefix (its order does not matter:
    it only decides which new instance is allocated first)."""
    if key == "instances" and isinstance(value, list):
        by_prefix = {}
        for entry in value:
            if not isinstance(entry, Mapping):
                return normal(value)
            by_prefix[str(entry.get("prefix"))] = normal(entry)
        return by_prefix
    return normal(value)


def changed_keys(olds: Mapping[str, Any], news: Mapping[str, Any]) -> list[str]:
    """Keys whose value differs between the previous outputs and the new checked inputs."""
    return [
        key
        for key in DIFF_KEYS
        if has_unknown(news.get(key)) or _normal(key, olds.get(key)) != _normal(key, news.get(key))
    ]


class NetworkAllocationProvider(dyn.ResourceProvider):
    """Pure: every method works on the properties alone."""

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> dyn.CheckResult:
        inputs = {key: value for key, value in news.items() if key != "allocation"}
        allocation, problems = allocate(olds, news)
        if allocation is not None:
            inputs["allocation"] = allocation
        return dyn.CheckResult(inputs, [dyn.CheckFailure(p, r) for p, r in problems])

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.DiffResult:
        changed = changed_keys(olds, news)
        return dyn.DiffResult(
            changes=bool(changed), replaces=[], stables=[], delete_before_replace=False
        )

    def create(self, props: dict[str, Any]) -> dyn.CreateResult:
        return dyn.CreateResult(f"{props.get('hostName')}-networks", dict(props))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> dyn.UpdateResult:
        return dyn.UpdateResult(dict(news))

    def read(self, id_: str, props: dict[str, Any]) -> dyn.ReadResult:
        return dyn.ReadResult(id_, dict(props))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None


class NetworkAllocation(dyn.Resource, module="dockyard", name="NetworkAllocation"):
    """The networks of one host's instances; see docs/architecture.md."""

    hostName: pulumi.Output[str]
    instances: pulumi.Output[list[dict[str, Any]]]
    allocation: pulumi.Output[dict[str, dict[str, Any]]]

    def __init__(
        self,
        resource_name: str,
        *,
        host_name: str,
        instances: list[dict[str, Any]],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {"hostName": host_name, "instances": instances, "allocation": None}
        super().__init__(NetworkAllocationProvider(), resource_name, props, opts)

    def networks_of(self, prefix: str) -> dict[str, pulumi.Output[Any]]:
        """The `DockyardInstance` network inputs of one instance, from `allocation`."""

        def pick(key: str) -> pulumi.Output[Any]:
            def value(allocation: dict[str, dict[str, Any]]) -> Any:
                return whole_number(allocation[prefix][key])

            return self.allocation.apply(value)

        return {key: pick(key) for key in NETWORK_KEYS}
