"""Validate `dockyard:hosts` as a whole and resolve it into `HostSpec`s.

Every problem is collected (structure, per-value, cross-instance, artifacts) and raised at once
in a `ConfigError`, each line starting with the key path, e.g. `hosts[0].instances[1].root`.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from dockyard_resources.config import values
from dockyard_resources.config.arch import provision_arch, unpinned_arch_errors
from dockyard_resources.config.artifacts import resolve_artifact
from dockyard_resources.config.errors import ConfigError
from dockyard_resources.config.models import (
    DEFAULT_SSH_PORT,
    PROVISION_KINDS,
    ArtifactConfig,
    ArtifactsMode,
    HostConfig,
    InstanceConfig,
)
from dockyard_resources.config.networks import plan_host_networks
from dockyard_resources.config.spec import HostSpec, ResolvedArtifact, ResolvedInstance
from dockyard_resources.config.versions import ARTIFACT_KINDS

# Extra words for a missing key, where "required" alone does not say what to write.
_MISSING_HINTS = {
    "name": "give the host a name such as build-1",
    "provision": "say how the host is provisioned, e.g. {kind: existing, address: 203.0.113.10}",
    "address": "give the machine's IP address or DNS name",
    "region": "give the AWS region, e.g. eu-central-1",
    "prefix": "give the instance a prefix such as dy1_",
    "root": "give the instance a root directory such as /dy1",
    # Required only of a jump host.
    "hostKey": "a jump host is never trusted on first use; give its public key line, e.g."
    " from `ssh-keyscan -t ed25519 JUMPHOST` (without the host name)",
}


def _unwrap(annotation: Any) -> list[type[BaseModel]]:
    """The models an annotation may hold (through Annotated, Optional, unions, lists)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType, list, tuple):
        return [m for arg in typing.get_args(annotation) for m in _unwrap(arg)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def _model_at(root: type[BaseModel], loc: Sequence[int | str]) -> type[BaseModel] | None:
    """The model that validated the mapping at `loc` (union tags in `loc` pick the member)."""
    candidates: list[type[BaseModel]] = [root]
    for part in loc:
        if isinstance(part, int):
            continue
        by_tag = [m for m in candidates if part in _kind_tags(m)]
        if by_tag:
            candidates = by_tag
            continue
        nxt: list[type[BaseModel]] = []
        for model in candidates:
            for field in model.model_fields.values():
                if field.alias == part:
                    nxt.extend(_unwrap(field.annotation))
        candidates = nxt
    return candidates[0] if len(candidates) == 1 else None


def _kind_tags(model: type[BaseModel]) -> tuple[Any, ...]:
    field = model.model_fields.get("kind")
    return typing.get_args(field.annotation) if field is not None else ()


def _format_loc(prefix: str, loc: Sequence[int | str]) -> str:
    path = prefix
    previous: int | str | None = None
    for part in loc:
        # Pydantic puts the discriminator value of `provision` in the path; users never write it.
        if previous == "provision" and part in PROVISION_KINDS:
            continue
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
        previous = part
    return path


_KINDS_TEXT = ", ".join(PROVISION_KINDS)
# Messages for pydantic error types whose default wording names no fix.
_TEMPLATES = {
    "union_tag_not_found": "missing 'kind'; set kind to one of " + _KINDS_TEXT,
    "union_tag_invalid": "kind {tag!r} is unknown; use one of " + _KINDS_TEXT,
    "model_type": "must be a mapping of keys (got {value!r})",
    "model_attributes_type": "must be a mapping of keys (got {value!r})",
    "dict_type": "must be a mapping of keys (got {value!r})",
    "list_type": "must be a list (got {value!r})",
    "tuple_type": "must be a list (got {value!r})",
    "int_parsing": "must be a whole number (got {value!r})",
    "int_type": "must be a whole number (got {value!r})",
    "int_from_float": "must be a whole number (got {value!r})",
    "greater_than_equal": "must be at least {ge} (got {value!r})",
    "less_than_equal": "must be at most {le} (got {value!r})",
    "literal_error": "must be {expected} (got {value!r})",
    "bool_parsing": "must be true or false (got {value!r})",
    "bool_type": "must be true or false (got {value!r})",
    "string_type": "must be text (got {value!r})",
    "string_too_short": "must not be empty",
}


# Strict types refuse text where a number or a boolean belongs: say how to write it.
_QUOTED_TYPES: dict[str, type[int] | type[bool]] = {"int_type": int, "bool_type": bool}


def _unknown_key(root: type[BaseModel], loc: Sequence[int | str]) -> str:
    model = _model_at(root, loc[:-1])
    allowed = [f.alias or name for name, f in model.model_fields.items()] if model else []
    close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
    fix = f"did you mean {close[0]!r}?" if close else "remove it"
    known = f" (known keys here: {', '.join(allowed)})" if allowed else ""
    return f"unknown key; {fix}{known}"


def _message(error: ErrorDetails, root: type[BaseModel]) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "value_error" and "error" in ctx:
        return str(ctx["error"])
    if kind == "missing":
        return f"missing; {_MISSING_HINTS.get(str(error['loc'][-1]), 'add it')}"
    if kind == "extra_forbidden":
        return _unknown_key(root, error["loc"])
    if kind in _QUOTED_TYPES:
        hint = values.quoting_hint(error.get("input"), _QUOTED_TYPES[kind])
        if hint is not None:
            return hint
    # Pydantic's own wording ("Input should be ...") is kept only for error types without a
    # template, and then in Dockyard's voice.
    default = str(error["msg"]).replace("Input should be", "must be", 1) + " (got {value!r})"
    template = _TEMPLATES.get(kind, default)
    return template.format(
        tag=ctx.get("tag"),
        value=error.get("input"),
        ge=ctx.get("ge"),
        le=ctx.get("le"),
        expected=str(ctx.get("expected", "")).replace("'", ""),
    )


def _pydantic_errors(exc: ValidationError, prefix: str, root: type[BaseModel]) -> list[str]:
    lines = []
    for error in exc.errors(include_url=False):
        loc = error["loc"]
        path = _format_loc(prefix, loc)
        typo = _misspelt_kind(error)
        if typo is not None:
            # Placed at the misspelt key, where the fix is, not at the mapping lacking `kind`.
            lines.append(
                f"{path}.{typo}: unknown key; did you mean 'kind'? (set kind to one of"
                f" {_KINDS_TEXT})"
            )
            continue
        if error["type"] in ("union_tag_not_found", "union_tag_invalid"):
            path += ".kind"
        lines.append(f"{path}: {_message(error, root)}")
    return lines


def _misspelt_kind(error: ErrorDetails) -> str | None:
    """The key that looks like a misspelt `kind` in a mapping that lacks `kind`, if any."""
    raw = error.get("input")
    if error["type"] != "union_tag_not_found" or not isinstance(raw, dict):
        return None
    close = difflib.get_close_matches("kind", [str(k) for k in raw], n=1)
    return close[0] if close else None


def _duplicate_names(raw_hosts: list[Any]) -> list[str]:
    errors = []
    first_seen: dict[str, int] = {}
    for i, raw in enumerate(raw_hosts):
        name = raw.get("name") if isinstance(raw, dict) else None
        if not isinstance(name, str):
            continue
        if name in first_seen:
            errors.append(
                f"hosts[{i}].name: {name!r} is already the name of hosts[{first_seen[name]}];"
                " host names must be unique in the stack"
            )
        else:
            first_seen[name] = i
    return errors


def _endpoint(provision: Any) -> tuple[str, int | None] | None:
    """Address and port an `existing` host is reached at (port None: ~/.ssh/config's), or
    None when the host is no existing machine or these keys are broken (reported elsewhere).
    """
    if not isinstance(provision, dict) or provision.get("kind") != "existing":
        return None
    try:
        address = values.address(provision.get("address")).lower().removesuffix(".")
    except ValueError:
        return None
    port = provision.get("port")
    if port is None:
        return address, (None if provision.get("sshConfig") is True else DEFAULT_SSH_PORT)
    if isinstance(port, bool) or not isinstance(port, int):
        return None
    return address, port


def _duplicate_endpoints(raw_hosts: list[Any]) -> list[str]:
    """Two hosts at one address and port are one machine: their Docker, sysbox and
    instances would overwrite each other, and only the machine would notice, mid-deploy."""
    errors = []
    first_seen: dict[tuple[str, int | None], int] = {}
    for i, raw in enumerate(raw_hosts):
        endpoint = _endpoint(raw.get("provision") if isinstance(raw, dict) else None)
        if endpoint is None:
            continue
        if endpoint not in first_seen:
            first_seen[endpoint] = i
            continue
        address, port = endpoint
        where = f"port {port}" if port is not None else "the port ~/.ssh/config gives"
        errors.append(
            f"hosts[{i}].provision.address: {address} at {where} is already hosts"
            f"[{first_seen[endpoint]}]; two hosts of a stack cannot be one machine (their Docker,"
            " sysbox and instances would overwrite each other): remove one, or correct the"
            " address or port"
        )
    return errors


def _identities(raw_instances: list[Any], paths: list[str]) -> list[tuple[str, _Identity]]:
    """Prefix and root of every instance whose prefix and root are valid on their own, also
    when other keys of it are broken: the clash checks then still see it."""
    found = []
    for path, raw in zip(paths, raw_instances, strict=True):
        if not isinstance(raw, dict):
            continue
        try:
            identity = _Identity(values.prefix(raw.get("prefix")), values.root_dir(raw.get("root")))
        except ValueError:
            continue
        found.append((path, identity))
    return found


@dataclass(frozen=True)
class _Identity:
    prefix: str
    root: str


def _instance_clashes(instances: Sequence[tuple[str, _Identity]]) -> list[str]:
    """Unique prefixes and roots on one host, and no root inside another."""
    errors = []
    for j, (path, cfg) in enumerate(instances):
        for other_path, other in instances[:j]:
            if cfg.prefix == other.prefix:
                errors.append(
                    f"{path}.prefix: {cfg.prefix!r} is already used by {other_path}; give each"
                    " instance on a host its own prefix (e.g. dy2_)"
                )
            if cfg.root == other.root:
                errors.append(
                    f"{path}.root: {cfg.root} is already used by {other_path}; give each"
                    " instance on a host its own root directory"
                )
            elif cfg.root.startswith(other.root + "/") or other.root.startswith(cfg.root + "/"):
                inner, outer = (
                    (cfg.root, other.root)
                    if len(cfg.root) > len(other.root)
                    else (other.root, cfg.root)
                )
                errors.append(
                    f"{path}.root: {cfg.root} nests with {other_path}.root ({other.root}):"
                    f" {inner} is inside {outer}; use sibling directories such as /dy1 and /dy2"
                )
    return errors


def _resolve_artifacts(
    host: HostConfig | None, raw: Any, path: str, base_dir: Path, errors: list[str]
) -> tuple[ResolvedArtifact | None, ResolvedArtifact | None]:
    """Resolve docker and sysbox, also when other keys of the host are broken, so that their
    problems are reported in the same run (structural errors were reported already)."""
    resolved: list[ResolvedArtifact | None] = []
    mode: ArtifactsMode
    for which in ARTIFACT_KINDS:
        if host is not None:
            config, mode = host.docker if which == "docker" else host.sysbox, host.artifacts
        else:
            raw_map = raw if isinstance(raw, dict) else {}
            try:
                config = ArtifactConfig.model_validate(
                    raw_map.get(which) or {}, by_alias=True, by_name=False
                )
            except ValidationError:
                resolved.append(None)
                continue
            # With an invalid mode, judge URLs leniently rather than report a misleading error.
            mode = "download" if raw_map.get("artifacts", "download") == "download" else "upload"
        artifact, problems = resolve_artifact(config, which, mode, f"{path}.{which}", base_dir)
        errors.extend(problems)
        resolved.append(artifact)
    return resolved[0], resolved[1]


def _validate_host(raw: Any, index: int, base_dir: Path) -> tuple[HostSpec | None, list[str]]:
    path = f"hosts[{index}]"
    errors: list[str] = []
    host: HostConfig | None = None
    try:
        host = HostConfig.model_validate(raw, by_alias=True, by_name=False)
    except ValidationError as exc:
        errors.extend(_pydantic_errors(exc, path, HostConfig))

    raw_instances = raw.get("instances") if isinstance(raw, dict) else None
    instances: list[tuple[str, InstanceConfig]] = []
    if isinstance(raw_instances, list):
        paths = [f"{path}.instances[{j}]" for j in range(len(raw_instances))]
        errors.extend(_instance_clashes(_identities(raw_instances, paths)))
        for j, raw_instance in enumerate(raw_instances):
            instance_path = f"{path}.instances[{j}]"
            try:
                instances.append(
                    (
                        instance_path,
                        InstanceConfig.model_validate(raw_instance, by_alias=True, by_name=False),
                    )
                )
            except ValidationError as exc:
                errors.extend(_pydantic_errors(exc, instance_path, InstanceConfig))
    networks, network_errors = plan_host_networks(instances)
    errors.extend(network_errors)

    docker, sysbox = _resolve_artifacts(host, raw, path, base_dir, errors)
    if host is not None and docker is not None and sysbox is not None:
        # Before a paid server exists, not when it first answers.
        errors.extend(unpinned_arch_errors(path, host.provision, (docker, sysbox)))
    if host is None or errors or docker is None or sysbox is None:
        return None, errors

    specs = []
    for (instance_path, cfg), net in zip(instances, networks, strict=True):
        if net is None:  # pragma: no cover - always paired with an error above
            return None, errors
        specs.append(
            ResolvedInstance(
                path=instance_path,
                prefix=cfg.prefix,
                root=cfg.root,
                bridge_cidr=net.bridge_cidr,
                fixed_cidr=net.fixed_cidr,
                pool_base=net.pool_base,
                pool_size=net.pool_size,
                members=cfg.members,
                allocated=net.allocated,
                network_isolation=cfg.network_isolation,
                enabled=cfg.enabled,
                allow_data_loss=cfg.allow_data_loss,
                protect=cfg.protect,
            )
        )
    spec = HostSpec(
        path=path,
        name=host.name,
        provision=host.provision,
        docker=docker,
        sysbox=sysbox,
        artifacts=host.artifacts,
        allow_sysbox_restart=host.allow_sysbox_restart,
        instances=tuple(specs),
        arch=provision_arch(host.provision),
    )
    return spec, []


def validate_hosts(raw_hosts: Any, *, base_dir: Path | None = None) -> list[HostSpec]:
    """Validate the value of `dockyard:hosts` and resolve defaults, artifacts and networks.

    `base_dir` anchors relative `sha256File` paths (default: the current directory, which is
    the project directory when Pulumi runs the program). Raises `ConfigError` listing every
    problem.
    """
    where = base_dir if base_dir is not None else Path.cwd()
    if raw_hosts is None:
        raise ConfigError(
            ["hosts: missing; add `dockyard:hosts:` with a list of hosts (docs/configuration.md)"]
        )
    if not isinstance(raw_hosts, list):
        raise ConfigError([f"hosts: must be a list of hosts (got {type(raw_hosts).__name__})"])
    errors = _duplicate_names(raw_hosts) + _duplicate_endpoints(raw_hosts)
    specs: list[HostSpec] = []
    for index, raw in enumerate(raw_hosts):
        spec, host_errors = _validate_host(raw, index, where)
        errors.extend(host_errors)
        if spec is not None:
            specs.append(spec)
    if errors:
        raise ConfigError(errors)
    return specs
