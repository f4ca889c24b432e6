"""Whole-stack validation: every error at once, stack files, shipped examples, props."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dockyard_resources.config import (
    ConfigError,
    StackFileError,
    load_stack_file,
    project_dir_of,
    validate_hosts,
    validate_stack_config,
)
from tests.unit.config_builders import host, instance

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "stacks").glob("Pulumi.*example.yaml"))


def test_all_errors_are_reported_at_once() -> None:
    raw = [
        host(
            "build-1",
            provision={"kind": "existing", "address": "bad_host", "port": 70000},
            docker={"version": "1.0.0"},
            instances=[
                instance("dy1_", "/dy1", poolBase="172.28.0.0/16"),
                instance("dy1_", "/dy1/inner", poolBase="172.28.0.0/16"),
                instance("BAD", "/etc"),
            ],
        ),
        host("build-1", provision={"kind": "qemu", "suite": "sid"}),
        host("ok", instances=[instance(poolSize=40)]),
    ]
    with pytest.raises(ConfigError) as caught:
        validate_hosts(raw)
    paths = [line.split(": ", 1)[0] for line in caught.value.errors]
    assert paths == [
        "hosts[1].name",
        "hosts[0].provision.address",
        "hosts[0].provision.port",
        "hosts[0].instances[1].prefix",
        "hosts[0].instances[1].root",
        "hosts[0].instances[2].prefix",
        "hosts[0].instances[2].root",
        "hosts[0].instances[1].poolBase",
        "hosts[0].docker.version",
        "hosts[1].provision.suite",
        "hosts[2].instances[0].poolSize",
    ]
    assert str(caught.value) == "\n".join(caught.value.errors)


def test_clashes_are_found_even_when_an_instance_has_other_errors() -> None:
    broken = instance("dy1_", "/dy1", members=["alice", "alice"], poolSize=33)
    with pytest.raises(ConfigError) as caught:
        validate_hosts([host(instances=[broken, instance("dy1_", "/dy1/inner")])])
    paths = sorted(line.split(": ", 1)[0] for line in caught.value.errors)
    assert paths == [
        "hosts[0].instances[0].members",
        "hosts[0].instances[0].poolSize",
        "hosts[0].instances[1].prefix",
        "hosts[0].instances[1].root",
    ]


def test_root_inside_another_root_either_way() -> None:
    with pytest.raises(ConfigError) as caught:
        validate_hosts([host(instances=[instance("a_", "/srv/dy/a"), instance("b_", "/srv/dy")])])
    assert caught.value.errors == [
        "hosts[0].instances[1].root: /srv/dy nests with hosts[0].instances[0].root (/srv/dy/a):"
        " /srv/dy/a is inside /srv/dy; use sibling directories such as /dy1 and /dy2"
    ]


def test_duplicate_prefix_and_root() -> None:
    with pytest.raises(ConfigError) as caught:
        validate_hosts([host(instances=[instance(), instance()])])
    assert caught.value.errors == [
        "hosts[0].instances[1].prefix: 'dy1_' is already used by hosts[0].instances[0]; give"
        " each instance on a host its own prefix (e.g. dy2_)",
        "hosts[0].instances[1].root: /dy1 is already used by hosts[0].instances[0]; give each"
        " instance on a host its own root directory",
    ]


def test_same_prefix_and_root_on_different_hosts_are_fine() -> None:
    specs = validate_hosts([host("a"), host("b")])
    assert [s.instances[0].prefix for s in specs] == ["dy1_", "dy1_"]


def test_props_are_json_ready() -> None:
    [spec] = validate_hosts([host(instances=[instance(members=["ci"]), instance("b_", "/b")])])
    encoded = json.dumps([i.props() for i in spec.instances])
    assert json.loads(encoded)[0]["members"] == ["ci"]
    assert json.dumps(spec.artifact_props("docker"))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "Pulumi.test.yaml"
    path.write_text(text)
    return path


def test_load_stack_file_keeps_secure_values_opaque(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "config:\n"
        "  dockyard:sshPrivateKey:\n"
        "    secure: v1:AAAABBBB\n"
        "  dockyard:hosts:\n"
        "    - name: a\n"
        "      provision: {kind: qemu}\n"
        "  aws:region: eu-central-1\n",
    )
    config = load_stack_file(path)
    assert config["dockyard:sshPrivateKey"] == {"secure": "v1:AAAABBBB"}
    assert config["aws:region"] == "eu-central-1"
    [spec] = validate_stack_config(config)
    assert spec.name == "a"
    assert spec.instances == ()


def test_stack_file_without_config(tmp_path: Path) -> None:
    assert load_stack_file(write(tmp_path, "")) == {}
    assert load_stack_file(write(tmp_path, "encryptionsalt: v1:x\n")) == {}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("config: [1, 2\n", "not valid YAML"),
        ("- a\n- b\n", "must be a YAML mapping with a `config:` key"),
        ("config: 3\n", ":1:1: config: must be a mapping"),
    ],
)
def test_unusable_stack_files(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(StackFileError) as caught:
        load_stack_file(write(tmp_path, text))
    assert fragment in str(caught.value)
    assert str(tmp_path) in str(caught.value)


def test_missing_stack_file(tmp_path: Path) -> None:
    with pytest.raises(StackFileError, match="cannot read the stack file"):
        load_stack_file(tmp_path / "nope.yaml")


def test_stack_config_checks_the_dockyard_namespace() -> None:
    config = {
        "dockyard:hostz": [],
        "dockyard:sshPrivateKey": "-----BEGIN OPENSSH PRIVATE KEY-----",
        "other:thing": 1,
    }
    with pytest.raises(ConfigError) as caught:
        validate_stack_config(config)
    assert caught.value.errors == [
        "dockyard:hostz: unknown key; did you mean 'dockyard:hosts'? the dockyard namespace"
        " has hosts, sshPrivateKey, sshPrivateKeyPassphrase",
        "dockyard:sshPrivateKey: stored in clear text; remove it and store it encrypted with"
        " `pulumi config set --secret dockyard:sshPrivateKey --stack <stack> < ~/.ssh/id_ed25519`",
        "hosts: missing; add `dockyard:hosts:` with a list of hosts (docs/configuration.md)",
    ]


def test_project_dir_is_found_from_the_stack_file(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.yaml").write_text("name: x\n")
    (tmp_path / "stacks").mkdir()
    assert project_dir_of(tmp_path / "stacks" / "Pulumi.a.yaml") == tmp_path
    assert project_dir_of(REPO / "stacks" / "Pulumi.example.yaml") == REPO


def test_examples_are_shipped() -> None:
    names = {p.name for p in EXAMPLES}
    assert {"Pulumi.example.yaml", "Pulumi.existing.example.yaml"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_shipped_examples_are_valid(path: Path) -> None:
    hosts = validate_stack_config(load_stack_file(path), base_dir=REPO)
    assert hosts
    if path.name in ("Pulumi.example.yaml", "Pulumi.existing.example.yaml"):
        assert all(h.provision.kind == "existing" for h in hosts)


def test_main_example_has_two_instances_one_allocated() -> None:
    [spec] = validate_stack_config(load_stack_file(REPO / "stacks" / "Pulumi.example.yaml"))
    first, second = spec.instances
    assert first.props()["bridgeCidr"] == "172.22.147.1/24"
    assert first.allocated == frozenset()
    assert second.allocated == {"bridgeCidr", "fixedCidr", "poolBase", "poolSize"}


@pytest.mark.parametrize("key", ["dockyardhosts", "dockyard.hosts", "Dockyard_hosts"])
def test_the_namespace_without_its_colon_is_named(key: str) -> None:
    """Found by the property test: `dockyardhosts` (the colon dropped) was only "hosts:
    missing", without the line of the key that was meant."""
    with pytest.raises(ConfigError) as caught:
        validate_stack_config({key: []})
    assert caught.value.errors[0] == f"config.{key}: no namespace; write it as dockyard:hosts"
