"""Network rules per instance and across the instances of a host, and the allocation scheme."""

from __future__ import annotations

import ipaddress
import itertools
from typing import Any

import pytest

from dockyard_resources.config import ConfigError, ResolvedInstance, validate_hosts
from tests.unit.config_builders import host, instance

DOCKER_DEFAULT_BRIDGE = ipaddress.IPv4Network("172.17.0.0/16")
AWS_DEFAULT_VPC = ipaddress.IPv4Network("172.31.0.0/16")


def errors_of(raw_hosts: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        validate_hosts(raw_hosts)
    return caught.value.errors


def instances_of(*raw_instances: dict[str, Any]) -> tuple[ResolvedInstance, ...]:
    [spec] = validate_hosts([host(instances=list(raw_instances))])
    return spec.instances


def claimed(spec: ResolvedInstance) -> list[ipaddress.IPv4Network]:
    return [spec.bridge_cidr.network, spec.fixed_cidr, spec.pool_base]


def test_explicit_networks_are_kept() -> None:
    [spec] = instances_of(
        instance(
            bridgeCidr="172.22.147.129/24",
            fixedCidr="172.22.147.128/25",
            poolBase="172.28.0.0/16",
            poolSize=26,
        )
    )
    assert spec.props() == {
        "prefix": "dy1_",
        "root": "/dy1",
        "bridgeCidr": "172.22.147.129/24",
        "fixedCidr": "172.22.147.128/25",
        "poolBase": "172.28.0.0/16",
        "poolSize": 26,
        "members": [],
    }
    assert spec.allocated == frozenset()


def test_omitted_networks_follow_the_documented_scheme() -> None:
    specs = instances_of(instance("a_", "/a"), instance("b_", "/b"), instance("c_", "/c"))
    assert [s.props() for s in specs] == [
        {
            "prefix": p,
            "root": r,
            "bridgeCidr": f"172.16.{i}.1/24",
            "fixedCidr": f"172.16.{i}.0/24",
            "poolBase": f"172.{18 + i}.0.0/19",
            "poolSize": 24,
            "members": [],
        }
        for i, (p, r) in enumerate([("a_", "/a"), ("b_", "/b"), ("c_", "/c")])
    ]
    assert all(s.allocated == {"bridgeCidr", "fixedCidr", "poolBase", "poolSize"} for s in specs)


def test_allocation_is_deterministic() -> None:
    raw = [
        host(
            instances=[
                instance("a_", "/a"),
                instance("b_", "/b", bridgeCidr="172.16.0.1/24", poolBase="172.18.0.0/16"),
                instance("c_", "/c", poolSize=26),
            ]
        )
    ]
    first = [i.props() for i in validate_hosts(raw)[0].instances]
    for _ in range(3):
        assert [i.props() for i in validate_hosts(raw)[0].instances] == first


def test_allocation_avoids_explicit_networks_of_later_instances() -> None:
    a, b = instances_of(
        instance("a_", "/a"),
        instance("b_", "/b", bridgeCidr="172.16.0.1/24", poolBase="172.18.0.0/16"),
    )
    # b's explicit ranges are claimed before a is allocated.
    assert str(a.bridge_cidr) == "172.16.1.1/24"
    assert str(a.pool_base) == "172.19.0.0/19"
    assert str(b.bridge_cidr) == "172.16.0.1/24"


def test_allocation_avoids_a_wide_explicit_bridge() -> None:
    a, _ = instances_of(instance("a_", "/a"), instance("b_", "/b", bridgeCidr="172.16.0.1/20"))
    assert str(a.bridge_cidr) == "172.16.16.1/24"


def test_many_instances_are_pairwise_disjoint_and_avoid_docker_default() -> None:
    raw = [instance(f"i{n}_", f"/i{n}") for n in range(104)]
    raw[5] = instance("i5_", "/i5", poolBase="10.5.0.0/16", bridgeCidr="172.16.3.1/24")
    specs = instances_of(*raw)
    networks = [(s.prefix, n) for s in specs for n in (s.bridge_cidr.network, s.pool_base)]
    for (p1, n1), (p2, n2) in itertools.combinations(networks, 2):
        assert not n1.overlaps(n2), f"{p1} {n1} overlaps {p2} {n2}"
    for spec in specs:
        assert spec.fixed_cidr.subnet_of(spec.bridge_cidr.network)
        assert spec.bridge_cidr.ip in spec.fixed_cidr
        assert spec.pool_size > spec.pool_base.prefixlen
        for network in claimed(spec):
            assert not network.overlaps(DOCKER_DEFAULT_BRIDGE)
            assert not network.overlaps(AWS_DEFAULT_VPC)
            assert network.is_private


def test_each_instance_gets_a_bridge_and_a_pool_of_32_networks() -> None:
    specs = instances_of(*(instance(f"i{n}_", f"/i{n}") for n in range(64)))
    assert len({s.pool_base for s in specs}) == 64
    for spec in specs:
        assert spec.bridge_cidr.network.prefixlen == 24
        assert spec.bridge_cidr.network.subnet_of(ipaddress.IPv4Network("172.16.0.0/16"))
        assert spec.pool_base.prefixlen == 19
        assert len(list(spec.pool_base.subnets(new_prefix=spec.pool_size))) == 32
    # Across the /16s first: the 13 first instances start the /16 earlier versions gave them.
    assert [str(s.pool_base) for s in specs[:14]] == [
        *(f"172.{second}.0.0/19" for second in range(18, 31)),
        "172.18.32.0/19",
    ]


def test_pool_allocation_runs_out_with_a_clear_error() -> None:
    errors = errors_of([host(instances=[instance(f"i{n}_", f"/i{n}") for n in range(105)])])
    assert errors == [
        "hosts[0].instances[104].poolBase: no free /19 left in 172.18.0.0-172.30.255.255 for"
        " this host; set poolBase explicitly (e.g. a /16 in 10.0.0.0/8)"
    ]


def test_bridge_allocation_runs_out_with_a_clear_error() -> None:
    raw = [
        instance(f"i{n}_", f"/i{n}", poolBase=f"10.{n // 16}.{n % 16 * 16}.0/20")
        for n in range(257)
    ]
    errors = errors_of([host(instances=raw)])
    assert errors == [
        "hosts[0].instances[256].bridgeCidr: no free /24 left in 172.16.0.0/16 for this host;"
        " set bridgeCidr explicitly (e.g. a /24 in 10.0.0.0/8)"
    ]


def test_hosts_allocate_independently() -> None:
    first, second = validate_hosts([host("a"), host("b")])
    assert first.instances[0].props() == second.instances[0].props()


def test_fixed_cidr_alone_derives_the_bridge() -> None:
    [spec] = instances_of(instance(fixedCidr="10.1.2.0/24"))
    assert str(spec.bridge_cidr) == "10.1.2.1/24"
    assert spec.allocated == {"bridgeCidr", "poolBase", "poolSize"}


def test_bridge_alone_derives_the_fixed_cidr() -> None:
    [spec] = instances_of(instance(bridgeCidr="192.168.7.254/23"))
    assert str(spec.fixed_cidr) == "192.168.6.0/23"


def test_pool_size_defaults_from_pool_base() -> None:
    big, small = instances_of(
        instance("a_", "/a", poolBase="10.8.0.0/14"), instance("b_", "/b", poolBase="10.20.0.0/26")
    )
    assert big.pool_size == 24
    assert small.pool_size == 28


def test_fixed_cidr_must_contain_the_bridge_address() -> None:
    errors = errors_of(
        [host(instances=[instance(bridgeCidr="172.22.147.1/24", fixedCidr="172.22.147.128/25")])]
    )
    assert errors == [
        "hosts[0].instances[0].fixedCidr: 172.22.147.128/25 does not contain the bridge address"
        " 172.22.147.1 (bridgeCidr); use 172.22.147.0/24 or omit fixedCidr"
    ]


def test_fixed_cidr_must_be_inside_the_bridge_network() -> None:
    errors = errors_of(
        [host(instances=[instance(bridgeCidr="172.22.147.1/24", fixedCidr="172.22.0.0/16")])]
    )
    assert len(errors) == 1
    assert errors[0].startswith(
        "hosts[0].instances[0].fixedCidr: 172.22.0.0/16 is not inside the bridge network"
        " 172.22.147.0/24"
    )


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (
            "bridgeCidr",
            "172.22.147.0/24",
            "172.22.147.0/24 is the network or broadcast address of 172.22.147.0/24, not a"
            " usable gateway; use e.g. 172.22.147.1/24",
        ),
        (
            "bridgeCidr",
            "172.22.147.255/24",
            "172.22.147.255/24 is the network or broadcast address of 172.22.147.0/24, not a"
            " usable gateway; use e.g. 172.22.147.1/24",
        ),
        (
            "bridgeCidr",
            "172.22.147.1",
            "'172.22.147.1' has no prefix length; write it like 172.22.147.1/24",
        ),
        (
            "bridgeCidr",
            "8.8.8.1/24",
            "8.8.8.1/24 is not in a private (RFC 1918) range; use one inside 10.0.0.0/8,"
            " 172.16.0.0/12 or 192.168.0.0/16",
        ),
        ("bridgeCidr", "10.0.0.1/31", "10.0.0.1/31 is too small a network; use /30 or larger"),
        ("bridgeCidr", "fd00::1/64", "'fd00::1/64' is not an IPv4 address/length"),
        ("fixedCidr", "172.22.147.1/24", "172.22.147.1/24 has host bits set; did you mean"),
        (
            "poolBase",
            "172.32.0.0/16",
            "172.32.0.0/16 is not in a private (RFC 1918) range; use one inside 10.0.0.0/8,"
            " 172.16.0.0/12 or 192.168.0.0/16",
        ),
        ("poolBase", "100.64.0.0/16", "100.64.0.0/16 is not in a private (RFC 1918) range"),
        ("poolBase", "172.28.0.0", "'172.28.0.0' has no prefix length"),
        ("poolBase", 17, "must be a string like 172.28.0.0/16 (got 17)"),
        ("poolSize", 31, "31 is not a usable subnet length; use a number up to 30"),
        ("poolSize", "24", "'24' is a string: write 24 without quotes"),
    ],
)
def test_single_network_value_rules(key: str, value: Any, message: str) -> None:
    errors = errors_of([host(instances=[instance(**{key: value})])])
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"hosts[0].instances[0].{key}: {message}"), errors


def test_pool_size_must_be_longer_than_pool_base() -> None:
    errors = errors_of([host(instances=[instance(poolBase="172.28.0.0/16", poolSize=16)])])
    assert errors == [
        "hosts[0].instances[0].poolSize: 16 must be larger than poolBase's length"
        " (172.28.0.0/16) and at most 30; e.g. 24"
    ]
    errors = errors_of([host(instances=[instance(poolSize=12)])])
    assert errors == [
        "hosts[0].instances[0].poolSize: 12 must be larger than the allocated poolBase's length"
        " /19; use e.g. 24, or set poolBase"
    ]


def test_pool_base_too_small_without_size() -> None:
    errors = errors_of([host(instances=[instance(poolBase="10.0.0.0/30")])])
    assert errors == [
        "hosts[0].instances[0].poolBase: 10.0.0.0/30 is too small to split into networks;"
        " use /28 or larger"
    ]


def test_pool_must_not_overlap_its_own_bridge() -> None:
    errors = errors_of(
        [host(instances=[instance(bridgeCidr="10.0.0.1/24", poolBase="10.0.0.0/16")])]
    )
    assert errors == [
        "hosts[0].instances[0].poolBase: 10.0.0.0/16 overlaps hosts[0].instances[0].bridgeCidr"
        " (10.0.0.0/24) of the same instance; pick a disjoint range or omit poolBase to have"
        " one allocated"
    ]


def test_overlaps_across_instances_name_both_keys() -> None:
    errors = errors_of(
        [
            host(
                instances=[
                    instance("a_", "/a", bridgeCidr="172.22.147.1/24", poolBase="172.28.0.0/16"),
                    instance("b_", "/b", poolBase="172.28.0.0/16"),
                    instance("c_", "/c", fixedCidr="172.22.147.0/25"),
                    instance("d_", "/d", bridgeCidr="172.28.5.1/24"),
                ]
            )
        ]
    )
    assert errors == [
        "hosts[0].instances[1].poolBase: 172.28.0.0/16 overlaps hosts[0].instances[0].poolBase"
        " (172.28.0.0/16); pick a disjoint range or omit it to have one allocated",
        "hosts[0].instances[2].fixedCidr: 172.22.147.0/25 overlaps"
        " hosts[0].instances[0].bridgeCidr (172.22.147.0/24); pick a disjoint range or omit it"
        " to have one allocated",
        "hosts[0].instances[3].bridgeCidr: 172.28.5.0/24 overlaps hosts[0].instances[0].poolBase"
        " (172.28.0.0/16); pick a disjoint range or omit it to have one allocated",
        "hosts[0].instances[3].bridgeCidr: 172.28.5.0/24 overlaps hosts[0].instances[1].poolBase"
        " (172.28.0.0/16); pick a disjoint range or omit it to have one allocated",
    ]


def test_same_networks_on_different_hosts_are_fine() -> None:
    explicit = {"bridgeCidr": "172.22.147.1/24", "poolBase": "172.28.0.0/16"}
    specs = validate_hosts([host("a", [instance(**explicit)]), host("b", [instance(**explicit)])])
    assert specs[0].instances[0].props() == specs[1].instances[0].props()


def test_pools_lie_inside_those_of_the_earlier_scheme() -> None:
    """A stack deployed with whole /16 pools moves each instance into its own old pool, so the
    one-time move creates no overlap between instances (docs/configuration.md)."""
    raw = [instance(f"i{n}_", f"/i{n}") for n in range(12)]
    raw[3] = instance("i3_", "/i3", poolBase="172.20.0.0/16")
    specs = instances_of(*raw)
    # The earlier scheme: first free /16 of 172.18-172.30, in instance order.
    legacy = iter(
        ipaddress.IPv4Network(f"172.{second}.0.0/16") for second in range(18, 31) if second != 20
    )
    for spec in specs:
        if spec.prefix != "i3_":
            assert spec.pool_base.subnet_of(next(legacy)), spec.prefix
