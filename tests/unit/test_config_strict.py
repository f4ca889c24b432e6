"""Strict types everywhere: a quoted number or boolean is refused with a quoting hint.

Pydantic's lax mode used to read `port: "22"` as 22, `allowSysboxRestart: "yes"` and
`sshConfig: 1` as true, while `poolSize: "24"` and `enabled: 1` were refused. Every number and
boolean of every model is now strict; the sweep below covers fields added later too.
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any, Union

import pytest
from pydantic import BaseModel

from dockyard_resources.config import ConfigError, check_stack_file, validate_hosts
from dockyard_resources.config.models import (
    ArtifactConfig,
    AwsProvision,
    ExistingProvision,
    HcloudProvision,
    HostConfig,
    InstanceConfig,
    QemuProvision,
)
from tests.unit.config_builders import host, instance

PROVISIONS: dict[type[BaseModel], dict[str, Any]] = {
    ExistingProvision: {"kind": "existing", "address": "10.1.2.3"},
    QemuProvision: {"kind": "qemu"},
    HcloudProvision: {"kind": "hcloud"},
    AwsProvision: {"kind": "aws", "region": "eu-central-1"},
}


def errors_of(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        validate_hosts([raw])
    return caught.value.errors


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            host(provision={"kind": "existing", "address": "10.1.2.3", "port": "22"}),
            "hosts[0].provision.port: '22' is a string: write 22 without quotes",
        ),
        (
            host(allowSysboxRestart="yes"),
            "hosts[0].allowSysboxRestart: 'yes' is not a boolean: write true or false",
        ),
        (
            host(allowSysboxRestart="true"),
            "hosts[0].allowSysboxRestart: 'true' is a string: write true without quotes",
        ),
        (
            host(provision={"kind": "existing", "address": "10.1.2.3", "sshConfig": 1}),
            "hosts[0].provision.sshConfig: must be true or false (got 1)",
        ),
        (
            host(instances=[instance(poolSize="24")]),
            "hosts[0].instances[0].poolSize: '24' is a string: write 24 without quotes",
        ),
        (
            host(instances=[instance(enabled=1)]),
            "hosts[0].instances[0].enabled: must be true or false (got 1)",
        ),
        (
            host(provision={"kind": "qemu", "cpus": 2.0}),
            "hosts[0].provision.cpus: must be a whole number (got 2.0)",
        ),
    ],
)
def test_the_lax_cases_of_the_issue_are_refused(raw: dict[str, Any], expected: str) -> None:
    assert errors_of(raw) == [expected]


def _scalar_type(annotation: Any) -> type | None:
    """int or bool behind Annotated/Optional, else None."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _scalar_type(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        found = {_scalar_type(a) for a in typing.get_args(annotation) if a is not type(None)}
        return found.pop() if len(found) == 1 else None
    return annotation if annotation in (int, bool) else None


def _placed(model: type[BaseModel], key: str, value: Any) -> tuple[dict[str, Any], str]:
    """A host with `key: value` in the mapping `model` validates, and that key's path."""
    if model in PROVISIONS:
        return host(provision={**PROVISIONS[model], key: value}), f"hosts[0].provision.{key}"
    if model is ArtifactConfig:
        return host(docker={key: value}), f"hosts[0].docker.{key}"
    if model is InstanceConfig:
        return host(instances=[instance(**{key: value})]), f"hosts[0].instances[0].{key}"
    return host(**{key: value}), f"hosts[0].{key}"


def _number_and_boolean_fields() -> list[tuple[type[BaseModel], str, type]]:
    models = [*PROVISIONS, ArtifactConfig, InstanceConfig, HostConfig]
    found = []
    for model in models:
        for name, field in model.model_fields.items():
            scalar = _scalar_type(field.annotation)
            if scalar is not None:
                found.append((model, field.alias or name, scalar))
    return found


FIELDS = _number_and_boolean_fields()


def test_the_sweep_sees_every_kind_of_field() -> None:
    keys = {key for _, key, _ in FIELDS}
    assert {"port", "connectTimeout", "sshConfig", "cpus", "poolSize", "enabled"} <= keys
    assert {"allowSysboxRestart", "diskGb", "memoryMb", "networkIsolation"} <= keys


@pytest.mark.parametrize(
    ("model", "key", "scalar"), FIELDS, ids=[f"{m.__name__}.{k}" for m, k, _ in FIELDS]
)
def test_every_number_and_boolean_is_strict(model: type[BaseModel], key: str, scalar: type) -> None:
    if scalar is bool:
        wrong: list[Any] = [1, "true", "yes"]
        hints = [None, "'true' is a string: write true without quotes", "'yes' is not a boolean"]
    else:
        wrong = ["8", 8.0, True]
        hints = ["'8' is a string: write 8 without quotes", None, None]
    for value, hint in zip(wrong, hints, strict=True):
        raw, path = _placed(model, key, value)
        errors = [e for e in errors_of(raw) if e.startswith(f"{path}: ")]
        assert errors, f"{path}: {value!r} was accepted"
        if hint is not None:
            assert hint in errors[0]


def test_yaml_1_1_words_are_text_as_pulumi_reads_them(tmp_path: Path) -> None:
    # PyYAML alone reads `yes` as true; Pulumi (YAML 1.2) gives the program the text "yes".
    stack = tmp_path / "Pulumi.s.yaml"
    stack.write_text(
        "config:\n"
        "  dockyard:hosts:\n"
        "    - name: build-1\n"
        "      provision: {kind: qemu}\n"
        "      allowSysboxRestart: yes\n"
    )
    with pytest.raises(ConfigError) as caught:
        check_stack_file(stack)
    assert caught.value.errors == [
        f"{stack}:5:7: hosts[0].allowSysboxRestart: 'yes' is not a boolean: write true or false"
    ]
