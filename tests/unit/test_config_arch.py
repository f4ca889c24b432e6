"""A host's architecture is known from its provision, and checked before a server exists.

Before: `aws t4g.medium` and `hcloud cax11` validated and failed only once the (billed) server
answered, because Docker had no aarch64 pin. Now every kind but `existing` knows its
architecture at validate time, and a missing pin for it is a validation error.
"""

from __future__ import annotations

from typing import Any

import pytest

from dockyard_resources.config import ConfigError, validate_hosts
from dockyard_resources.config.arch import aws_arch, hcloud_arch
from dockyard_resources.config.versions import KNOWN_VERSIONS, KnownArtifact
from tests.unit.config_builders import host

T4G = {"kind": "aws", "region": "eu-central-1", "instanceType": "t4g.medium"}
CAX11 = {"kind": "hcloud", "serverType": "cax11"}
PIN = "cd" * 32


@pytest.mark.parametrize(
    "instance_type",
    [
        "t4g.medium",
        "m6g.large",
        "m7g.xlarge",
        "c7g.2xlarge",
        "r8g.large",
        "m6gd.large",
        "c7gn.large",
        "x2gd.large",
        "im4gn.large",
        "is4gen.large",
        "g5g.xlarge",
        "hpc7g.4xlarge",
        "a1.large",
        "T4G.Medium",
    ],
)
def test_graviton_families_are_aarch64(instance_type: str) -> None:
    assert aws_arch(instance_type) == "aarch64"


@pytest.mark.parametrize(
    "instance_type",
    [
        "t3.medium",
        "m7i-flex.large",
        "m7a.large",
        "g4dn.xlarge",
        "g6e.xlarge",
        "gr6.4xlarge",
        "p6-b200.48xlarge",
        "u-6tb1.metal",
        "inf2.xlarge",
        "x2iedn.xlarge",
        "z1d.large",
    ],
)
def test_other_aws_families_are_x86_64(instance_type: str) -> None:
    assert aws_arch(instance_type) == "x86_64"


@pytest.mark.parametrize(
    ("server_type", "arch"),
    [
        ("cax11", "aarch64"),
        ("cax41", "aarch64"),
        ("cx22", "x86_64"),
        ("cpx31", "x86_64"),
        ("ccx13", "x86_64"),
    ],
)
def test_hcloud_cax_types_are_aarch64(server_type: str, arch: str) -> None:
    assert hcloud_arch(server_type) == arch


@pytest.mark.parametrize(
    ("provision", "arch"),
    [
        (T4G, "aarch64"),
        (CAX11, "aarch64"),
        ({"kind": "hcloud", "serverType": "cx22", "arch": "aarch64"}, "aarch64"),
        ({**T4G, "arch": "x86_64"}, "x86_64"),
        ({"kind": "qemu"}, "x86_64"),
        ({"kind": "existing", "address": "10.1.2.3"}, None),
    ],
)
def test_the_spec_carries_the_known_architecture(provision: dict[str, Any], arch: str) -> None:
    [spec] = validate_hosts([host(provision=provision)])
    assert spec.arch == arch


def test_arm_servers_get_the_pinned_aarch64_files() -> None:
    for provision in (T4G, CAX11):
        [spec] = validate_hosts([host(provision=provision)])
        for which in ("docker", "sysbox"):
            assert "aarch64" in spec.artifact_props(which)["artifacts"]


@pytest.fixture
def docker_without_aarch64_pin(monkeypatch: pytest.MonkeyPatch) -> None:
    """The table as it was: Docker 29.2.1 pinned for x86_64 only."""
    table = dict(KNOWN_VERSIONS["docker"]["29.2.1"])
    table["aarch64"] = KnownArtifact(url=table["aarch64"].url, sha256=None)
    monkeypatch.setitem(KNOWN_VERSIONS["docker"], "29.2.1", table)


@pytest.mark.usefixtures("docker_without_aarch64_pin")
def test_an_unpinned_architecture_fails_at_validate() -> None:
    with pytest.raises(ConfigError) as caught:
        validate_hosts([host("a", provision=T4G), host("b", provision=CAX11)])
    assert caught.value.errors == [
        "hosts[0].provision.instanceType: t4g.medium is aarch64 (arm64), and Docker 29.2.1 has"
        " no pinned sha256 for aarch64; set hosts[0].docker.sha256 (or sha256File) for the"
        " aarch64 file, or choose a type of another architecture (the rule is in"
        " docs/stacks.md; hosts[0].provision.arch overrides it)",
        "hosts[1].provision.serverType: cax11 is aarch64 (arm64), and Docker 29.2.1 has no"
        " pinned sha256 for aarch64; set hosts[1].docker.sha256 (or sha256File) for the"
        " aarch64 file, or choose a type of another architecture (the rule is in"
        " docs/stacks.md; hosts[1].provision.arch overrides it)",
    ]


@pytest.mark.usefixtures("docker_without_aarch64_pin")
def test_the_override_decides_and_existing_hosts_wait_for_the_preflight() -> None:
    with pytest.raises(ConfigError) as caught:
        validate_hosts([host(provision={"kind": "hcloud", "arch": "aarch64"})])
    assert caught.value.errors[0].startswith("hosts[0].provision.arch: aarch64 is aarch64")
    # A pin of one's own, an x86_64 type, or a machine whose architecture shows at connect.
    assert validate_hosts([host(provision=T4G, docker={"sha256": PIN})])
    assert validate_hosts([host(provision={**T4G, "instanceType": "t3.medium"})])
    assert validate_hosts([host(provision={"kind": "existing", "address": "10.1.2.3"})])


def test_the_override_takes_uname_names_only() -> None:
    with pytest.raises(ConfigError) as caught:
        validate_hosts([host(provision={**CAX11, "arch": "arm64"})])
    assert caught.value.errors == [
        "hosts[0].provision.arch: must be x86_64 or aarch64 (got 'arm64')"
    ]
