"""Per-value rules of dockyard:hosts: each bad value is reported with its key path and fix."""

from __future__ import annotations

from typing import Any

import pytest

from dockyard_resources.config import ConfigError, ExistingProvision, validate_hosts
from tests.unit.config_builders import ed25519_key_line, host, instance


def errors_of(raw_hosts: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        validate_hosts(raw_hosts)
    return caught.value.errors


def only_error(raw_hosts: Any) -> str:
    errors = errors_of(raw_hosts)
    assert len(errors) == 1, errors
    return errors[0]


def test_minimal_host_gets_defaults() -> None:
    [spec] = validate_hosts([host()])
    assert spec.name == "build-1"
    assert spec.path == "hosts[0]"
    assert isinstance(spec.provision, ExistingProvision)
    assert spec.provision.port is None and spec.provision.ssh_port == 22
    assert spec.provision.user == "root"
    assert spec.provision.host_key is None
    assert spec.artifacts == "download"
    assert spec.allow_sysbox_restart is False
    assert spec.docker.version == "29.2.1"
    assert spec.sysbox.version == "0.6.7"
    assert spec.instances[0].members == ()


def test_hosts_must_be_a_list() -> None:
    assert errors_of(None) == [
        "hosts: missing; add `dockyard:hosts:` with a list of hosts (docs/configuration.md)"
    ]
    assert errors_of({"name": "x"}) == ["hosts: must be a list of hosts (got dict)"]


def test_empty_host_list_is_valid() -> None:
    assert validate_hosts([]) == []


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("Build-1", "'Build-1' is not a valid host name"),
        ("a" * 41, "is not a valid host name; use 1-40 lowercase letters"),
        ("", "'' is not a valid host name"),
        ("a_b", "'a_b' is not a valid host name"),
    ],
)
def test_host_name_rule(name: str, fragment: str) -> None:
    error = only_error([host(name=name)])
    assert error.startswith("hosts[0].name: ")
    assert fragment in error


def test_host_name_must_be_a_string() -> None:
    assert only_error([host(name=7)]) == "hosts[0].name: must be a string like build-1 (got 7)"


def test_duplicate_host_names() -> None:
    error = only_error([host(), host(name="build-2"), host()])
    assert error == (
        "hosts[2].name: 'build-1' is already the name of hosts[0]; host names must be unique"
        " in the stack"
    )


def test_ssh_config_alias_leaves_port_to_the_ssh_config() -> None:
    [spec] = validate_hosts(
        [host(provision={"kind": "existing", "address": "build-box", "sshConfig": True})]
    )
    assert isinstance(spec.provision, ExistingProvision)
    props = spec.provision.connection_props()
    assert props["sshConfig"] is True and "port" not in props
    assert props["host"] == "build-box"
    [pinned] = validate_hosts(
        [host(provision={"kind": "existing", "address": "b", "sshConfig": True, "port": 2222})]
    )
    assert isinstance(pinned.provision, ExistingProvision)
    assert pinned.provision.connection_props()["port"] == 2222


def test_unknown_key_suggests_the_right_one() -> None:
    raw = host()
    raw["provision"]["prot"] = 2222
    assert only_error([raw]) == (
        "hosts[0].provision.prot: unknown key; did you mean 'port'?"
        " (known keys here: kind, address, port, user, hostKey, connectTimeout, sshConfig,"
        " privateKeyFile, jumpHost)"
    )


def test_unknown_key_on_instance_and_artifact() -> None:
    raw = host(instances=[instance(bridgeCIDR="172.22.0.1/24")], docker={"shasum": "x"})
    errors = errors_of([raw])
    assert any(
        e.startswith("hosts[0].docker.shasum: unknown key; ") and "sha256File" in e for e in errors
    ), errors
    assert any(
        e.startswith("hosts[0].instances[0].bridgeCIDR: unknown key; did you mean 'bridgeCidr'?")
        for e in errors
    ), errors


def test_snake_case_keys_are_not_the_contract() -> None:
    raw = host()
    raw["allow_sysbox_restart"] = True
    raw["provision"]["host_key"] = ed25519_key_line()
    errors = sorted(errors_of([raw]))
    assert len(errors) == 2
    assert errors[0].startswith("hosts[0].allow_sysbox_restart: unknown key; did you mean")
    assert errors[1].startswith("hosts[0].provision.host_key: unknown key; did you mean 'hostKey'")


def test_missing_keys_name_what_to_write() -> None:
    errors = errors_of([{"provision": {"kind": "existing"}, "instances": [{"prefix": "dy1_"}]}])
    assert errors == [
        "hosts[0].name: missing; give the host a name such as build-1",
        "hosts[0].provision.address: missing; give the machine's IP address or DNS name",
        "hosts[0].instances[0].root: missing; give the instance a root directory such as /dy1",
    ]


def test_provision_kind_unknown_and_missing() -> None:
    errors = errors_of(
        [
            host(name="a", provision={"kind": "cloud"}),
            host(name="b", provision={"address": "10.0.0.1"}),
        ]
    )
    assert errors == [
        "hosts[0].provision.kind: kind 'cloud' is unknown; use one of existing, qemu, hcloud, aws",
        "hosts[1].provision.kind: missing 'kind'; set kind to one of existing, qemu, hcloud, aws",
    ]


@pytest.mark.parametrize("address", ["203.0.113.10", "2001:db8::1", "build-1.example.com", "box"])
def test_existing_address_accepts_ip_and_dns(address: str) -> None:
    [spec] = validate_hosts([host(provision={"kind": "existing", "address": address})])
    assert isinstance(spec.provision, ExistingProvision)
    assert spec.provision.address == address


@pytest.mark.parametrize("address", ["bad_name", "-x.example.com", "a..b", "http://x"])
def test_existing_address_rejects_garbage(address: str) -> None:
    error = only_error([host(provision={"kind": "existing", "address": address})])
    assert error.startswith(f"hosts[0].provision.address: {address!r} is neither an IP address")


def test_existing_port_range_and_user() -> None:
    errors = errors_of(
        [host(provision={"kind": "existing", "address": "h", "port": 0, "user": "Admin"})]
    )
    assert errors[0].startswith("hosts[0].provision.port: must be at least 1 (got 0)")
    assert errors[1].startswith("hosts[0].provision.user: 'Admin' is not a valid user name")


def test_existing_host_key_pin_is_checked() -> None:
    key = ed25519_key_line()
    [spec] = validate_hosts(
        [host(provision={"kind": "existing", "address": "h", "hostKey": key + " comment"})]
    )
    assert isinstance(spec.provision, ExistingProvision)
    assert spec.provision.host_key == key  # the comment is dropped
    assert spec.provision.connection_props() == {
        "host": "h",
        "port": 22,
        "user": "root",
        "hostKey": key,
        # An existing machine fails fast on a wrong address or port (docs/configuration.md).
        "connectDeadline": 30,
    }
    bad = only_error([host(provision={"kind": "existing", "address": "h", "hostKey": "AAAA"})])
    assert bad.startswith("hosts[0].provision.hostKey: 'AAAA' is not an OpenSSH public key line")
    assert "ssh-keyscan" in bad
    mismatch = key.replace("ssh-ed25519", "ssh-rsa")
    error = only_error([host(provision={"kind": "existing", "address": "h", "hostKey": mismatch})])
    assert "the key data is a 'ssh-ed25519' key, not 'ssh-rsa'" in error


def test_qemu_defaults_and_limits() -> None:
    [spec] = validate_hosts([host(provision={"kind": "qemu"})])
    assert spec.provision.model_dump(by_alias=True) == {
        "kind": "qemu",
        "memoryMb": 4096,
        "cpus": 2,
        "diskGb": 20,
        "suite": "trixie",
    }
    errors = errors_of([host(provision={"kind": "qemu", "suite": "jessie", "memoryMb": 100})])
    assert errors[0].startswith("hosts[0].provision.memoryMb: must be at least 1024")
    assert errors[1].startswith("hosts[0].provision.suite: must be trixie or bookworm")


def test_hcloud_defaults_and_cidrs() -> None:
    [spec] = validate_hosts([host(provision={"kind": "hcloud"})])
    assert spec.provision.model_dump(by_alias=True) == {
        "kind": "hcloud",
        "serverType": "cx22",
        "location": "fsn1",
        "image": "ubuntu-24.04",
        "arch": None,
        "allowedSshCidrs": ("0.0.0.0/0",),
        "jumpHost": None,
    }
    errors = errors_of(
        [host(provision={"kind": "hcloud", "allowedSshCidrs": ["198.51.100.7/24", "nope"]})]
    )
    assert errors == [
        "hosts[0].provision.allowedSshCidrs[0]: 198.51.100.7/24 has host bits set;"
        " did you mean 198.51.100.0/24?",
        "hosts[0].provision.allowedSshCidrs[1]: 'nope' is not a network; write it like"
        " 198.51.100.0/24 or 2001:db8::/32",
    ]
    empty = only_error([host(provision={"kind": "hcloud", "allowedSshCidrs": []})])
    assert empty.startswith("hosts[0].provision.allowedSshCidrs: is empty, which would lock SSH")


def test_aws_fields() -> None:
    [spec] = validate_hosts(
        [host(provision={"kind": "aws", "region": "eu-central-1", "subnetId": "subnet-0a1b2c3d"})]
    )
    assert spec.provision.model_dump(by_alias=True) == {
        "kind": "aws",
        "region": "eu-central-1",
        "instanceType": "t3.medium",
        "subnetId": "subnet-0a1b2c3d",
        "allowedSshCidrs": ("0.0.0.0/0",),
        "diskGb": 20,
        "arch": None,
        "jumpHost": None,
    }
    errors = errors_of([host(provision={"kind": "aws", "region": "Frankfurt", "subnetId": "x"})])
    assert errors[0].startswith("hosts[0].provision.region: 'Frankfurt' is not an AWS region")
    assert errors[1].startswith("hosts[0].provision.subnetId: 'x' is not a subnet id")
    assert only_error([host(provision={"kind": "aws"})]) == (
        "hosts[0].provision.region: missing; give the AWS region, e.g. eu-central-1"
    )


def test_artifacts_mode_and_sysbox_restart_flag() -> None:
    [spec] = validate_hosts([host(artifacts="upload", allowSysboxRestart=True)])
    assert spec.artifacts == "upload"
    assert spec.allow_sysbox_restart is True
    error = only_error([host(artifacts="scp")])
    assert error == "hosts[0].artifacts: must be download or upload (got 'scp')"


@pytest.mark.parametrize("prefix", ["dy1_", "a_", "abcdefg_"])
def test_prefix_accepted(prefix: str) -> None:
    [spec] = validate_hosts([host(instances=[instance(prefix=prefix)])])
    assert spec.instances[0].bridge_name == f"{prefix}docker0"
    assert len(spec.instances[0].bridge_name) <= 15


@pytest.mark.parametrize("prefix", ["dy1", "Dy1_", "1dy_", "abcdefgh_", "dy-1_", "_"])
def test_prefix_rejected(prefix: str) -> None:
    error = only_error([host(instances=[instance(prefix=prefix)])])
    assert error.startswith(f"hosts[0].instances[0].prefix: {prefix!r} is not a valid prefix")
    assert "15-character limit" in error


@pytest.mark.parametrize(
    ("root", "fragment"),
    [
        ("dy1", "'dy1' is not absolute"),
        ("/dy1/", "'/dy1/' is not normalised; write it as '/dy1'"),
        ("/a/../dy1", "'/a/../dy1' is not normalised; write it as '/dy1'"),
        ("//dy1", "'//dy1' is not normalised; write it as '/dy1'"),
        ("/dy 1", "contains unsupported characters"),
        ("/" + "d" * 64, "is longer than 64 characters"),
        ("/", "'/' is a system directory"),
        ("/var", "'/var' is a system directory"),
        ("/home", "'/home' is a system directory"),
        ("/opt", "'/opt' is a system directory"),
        ("/var/lib", "'/var/lib' is a system directory"),
        ("/etc/dockyard", "'/etc/dockyard' is inside /etc"),
        ("/usr/local/dy", "'/usr/local/dy' is inside /usr"),
        ("/proc/x", "is inside /proc"),
        ("/dev/shm/dy1", "is inside /dev"),
        ("/run/dy1", "is inside /run"),
        ("/boot/x", "is inside /boot"),
        ("/var/lib/docker/x", "is inside /var/lib/docker"),
        ("/var/lib/docker", "'/var/lib/docker' is /var/lib/docker (the system Docker's data)"),
        ("/var/lib/dpkg", "is /var/lib/dpkg (the package manager's database)"),
        ("/root", "'/root' is /root (root's home directory)"),
        ("/root/.ssh", "'/root/.ssh' is inside /root"),
        ("/home/alice", "'/home/alice' is a user's home directory"),
        ("/srv", "'/srv' is a system directory"),
        ("/var/run/dy1", "is inside /var/run"),
        ("/var/log/dy1", "is inside /var/log"),
        ("/usr/local/lib/dockyard", "is inside /usr"),
        # Named like the temporary directory an install of /srv/a builds its root in.
        ("/srv/a.dockyard-new.prod", "contains '.dockyard-new'"),
        ("/srv/a.dockyard-new.x1/dy", "use a path without it such as '/srv/a-new.x1/dy'"),
    ],
)
def test_root_rejected(root: str, fragment: str) -> None:
    error = only_error([host(instances=[instance(root=root)])])
    assert error.startswith("hosts[0].instances[0].root: ")
    assert fragment in error


@pytest.mark.parametrize(
    "root", ["/dy1", "/srv/dockyard/ci", "/home/ci/dockyard", "/var/dy1", "/opt/dy1", "/srv/dy1"]
)
def test_root_accepted(root: str) -> None:
    [spec] = validate_hosts([host(instances=[instance(root=root)])])
    assert spec.instances[0].root == root


def test_members_are_user_names_listed_once() -> None:
    [spec] = validate_hosts([host(instances=[instance(members=["ci-runner", "alice"])])])
    assert spec.instances[0].members == ("ci-runner", "alice")
    bad = only_error([host(instances=[instance(members=["ok", "Not OK"])])])
    assert bad.startswith("hosts[0].instances[0].members[1]: 'Not OK' is not a valid user name")
    twice = only_error([host(instances=[instance(members=["a", "a"])])])
    assert twice == "hosts[0].instances[0].members: lists a more than once; list each user once"


def test_wrong_container_types() -> None:
    errors = errors_of([host(instances={"prefix": "dy1_"}, docker="29.2.1"), "build-2"])
    assert "hosts[0].docker: must be a mapping of keys (got '29.2.1')" in errors
    assert "hosts[0].instances: must be a list (got {'prefix': 'dy1_'})" in errors
    assert "hosts[1]: must be a mapping of keys (got 'build-2')" in errors
