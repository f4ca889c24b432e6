"""Stable allocation: `plan_host_networks` with what a deployed stack had, and the pure
`NetworkAllocation` provider around it."""

from __future__ import annotations

import ipaddress
import itertools
import json
import random
import subprocess
import sys
from typing import Any

import dill
import pytest
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.output import Unknown

from dockyard_resources.config.networks import (
    Deployed,
    InstanceNetworks,
    Requested,
    plan_host_networks,
)
from dockyard_resources.providers.networks import (
    NetworkAllocationProvider,
    allocate,
    changed_keys,
)

Net = ipaddress.IPv4Network
State = dict[str, Deployed]


def req(prefix: str, **explicit: Any) -> Requested:
    parsed: dict[str, Any] = {}
    for key, value in explicit.items():
        if key == "bridge_cidr":
            parsed[key] = ipaddress.IPv4Interface(value)
        elif key in ("fixed_cidr", "pool_base"):
            parsed[key] = Net(value)
        else:
            parsed[key] = value
    return Requested(prefix, **parsed)


def plan(instances: list[Requested], previous: State | None = None) -> State:
    """One run: the allocation of `instances`, as the state the next run continues from."""
    planned, errors = plan_host_networks(
        [(f"instances.{r.prefix}", r) for r in instances], previous
    )
    assert errors == []
    return {
        r.prefix: Deployed(r, n) for r, n in zip(instances, planned, strict=True) if n is not None
    }


def networks(state: State) -> dict[str, dict[str, Any]]:
    return {prefix: d.networks.props() for prefix, d in state.items()}


def assert_disjoint(state: State) -> None:
    claims = [
        (prefix, net)
        for prefix, d in state.items()
        for net in (d.networks.bridge_cidr.network, d.networks.pool_base)
    ]
    for (p1, n1), (p2, n2) in itertools.combinations(claims, 2):
        assert not n1.overlaps(n2), f"{p1} {n1} overlaps {p2} {n2}"


def names(n: int) -> list[Requested]:
    return [req(f"i{k}_") for k in range(n)]


# --- stability -----------------------------------------------------------------------------


@pytest.mark.parametrize("removed", [0, 1, 5, 9])
def test_removing_an_instance_changes_no_other(removed: int) -> None:
    instances = names(10)
    first = plan(instances)
    second = plan(instances[:removed] + instances[removed + 1 :], first)
    expected = {p: n for p, n in networks(first).items() if p != f"i{removed}_"}
    assert networks(second) == expected


def test_reordering_changes_nothing() -> None:
    instances = names(12)
    first = plan(instances)
    shuffled = instances[:]
    random.Random(7).shuffle(shuffled)
    assert networks(plan(shuffled, first)) == networks(first)


def test_renaming_one_changes_no_other_and_the_new_name_gets_unused_networks() -> None:
    instances = names(4)
    first = plan(instances)
    renamed = [instances[0], req("new_"), *instances[2:]]
    second = plan(renamed, first)
    for prefix in ("i0_", "i2_", "i3_"):
        assert second[prefix].networks.props() == first[prefix].networks.props()
    # The old i1_ exists until the engine deletes it, after new_ is created: not reused yet.
    old = first["i1_"].networks
    assert not second["new_"].networks.bridge_cidr.network.overlaps(old.bridge_cidr.network)
    assert not second["new_"].networks.pool_base.overlaps(old.pool_base)


def test_a_freed_network_is_reused_when_nothing_else_is_left() -> None:
    instances = names(104)  # every pool of the allocation space
    first = plan(instances)
    second = plan([*instances[1:], req("new_")], first)
    assert second["new_"].networks.pool_base == first["i0_"].networks.pool_base
    assert_disjoint(second)


def test_long_random_history_keeps_every_instance_where_it_is() -> None:
    rng = random.Random(13)
    state: State = {}
    current: list[Requested] = []
    counter = itertools.count()
    for _ in range(150):
        if current and (len(current) >= 64 or rng.random() < 0.4):
            current.pop(rng.randrange(len(current)))
        else:
            current.insert(rng.randrange(len(current) + 1), req(f"x{next(counter)}_"))
        if rng.random() < 0.2:
            rng.shuffle(current)
        after = plan(current, state)
        for prefix, deployed in after.items():
            if prefix in state:
                assert deployed.networks.props() == state[prefix].networks.props(), prefix
        assert_disjoint(after)
        state = after


def test_sixty_four_instances_and_more_fit_one_host() -> None:
    state = plan(names(64))
    assert len(state) == 64
    assert_disjoint(state)
    grown = plan(names(104), state)
    assert networks(grown) == {**networks(grown), **networks(state)}
    assert_disjoint(grown)


def test_previous_state_with_a_stale_key_shape_is_allocated_afresh() -> None:
    provider_olds = {"instances": [{"prefix": "i0_"}], "allocation": {"i0_": {"bogus": 1}}}
    allocation, problems = allocate(provider_olds, {"instances": [{"prefix": "i0_"}]})
    assert problems == []
    assert allocation == {"i0_": networks(plan([req("i0_")]))["i0_"]}


# --- explicit networks ---------------------------------------------------------------------


def test_explicit_networks_are_used_as_written() -> None:
    first = plan(names(2))
    second = plan(
        [req("i0_"), req("i1_", bridge_cidr="10.1.0.1/24", pool_base="10.2.0.0/16")], first
    )
    assert second["i0_"].networks.props() == first["i0_"].networks.props()
    got = second["i1_"].networks
    assert (str(got.bridge_cidr), str(got.fixed_cidr), str(got.pool_base), got.pool_size) == (
        "10.1.0.1/24",
        "10.1.0.0/24",
        "10.2.0.0/16",
        24,
    )


def test_an_explicit_network_takes_over_a_kept_one_which_is_reallocated() -> None:
    first = plan(names(3))
    taken = str(first["i0_"].networks.bridge_cidr)
    second = plan([req("i0_"), req("i1_"), req("i2_"), req("new_", bridge_cidr=taken)], first)
    assert str(second["new_"].networks.bridge_cidr) == taken
    moved = second["i0_"].networks
    # Only the overlapping network moves; it avoids every network the stack had.
    assert moved.kept == {"poolBase"}
    assert moved.pool_base == first["i0_"].networks.pool_base
    assert moved.bridge_cidr.network not in {d.networks.bridge_cidr.network for d in first.values()}
    for prefix in ("i1_", "i2_"):
        assert second[prefix].networks.props() == first[prefix].networks.props()
    assert_disjoint(second)


def test_changing_ones_own_settings_keeps_the_rest_of_its_allocation() -> None:
    first = plan(names(2))
    second = plan([req("i0_", pool_base="10.8.0.0/16", pool_size=26), req("i1_")], first)
    own = second["i0_"].networks
    assert own.bridge_cidr == first["i0_"].networks.bridge_cidr
    assert (str(own.pool_base), own.pool_size) == ("10.8.0.0/16", 26)
    assert own.kept == {"bridgeCidr", "fixedCidr"}
    assert second["i1_"].networks.props() == first["i1_"].networks.props()

    # Omitting the explicit value again allocates a pool, first fit: the one given up in the
    # run before is free again (that run moved the instance off it).
    third = plan([req("i0_"), req("i1_")], second)
    assert third["i0_"].networks.bridge_cidr == own.bridge_cidr
    assert third["i0_"].networks.pool_base == first["i0_"].networks.pool_base
    assert third["i0_"].networks.kept == {"bridgeCidr", "fixedCidr"}


def test_an_explicit_pool_size_keeps_the_allocated_pool() -> None:
    first = plan(names(1))
    second = plan([req("i0_", pool_size=26)], first)
    assert second["i0_"].networks.pool_base == first["i0_"].networks.pool_base
    assert second["i0_"].networks.pool_size == 26


def test_explicit_overlaps_are_errors_with_or_without_a_previous_state() -> None:
    first = plan(names(2))
    clash = [req("i0_", pool_base="10.0.0.0/16"), req("i1_", pool_base="10.0.0.0/16")]
    for previous in (None, first):
        _, errors = plan_host_networks([(f"instances.{r.prefix}", r) for r in clash], previous)
        assert errors == [
            "instances.i1_.poolBase: 10.0.0.0/16 overlaps instances.i0_.poolBase (10.0.0.0/16);"
            " pick a disjoint range or omit it to have one allocated"
        ]


def test_running_out_names_the_key_and_the_fix() -> None:
    first = plan(names(104))
    _, errors = plan_host_networks(
        [(f"instances.{r.prefix}", r) for r in [*names(104), req("extra_")]], first
    )
    assert errors == [
        "instances.extra_.poolBase: no free /19 left in 172.18.0.0-172.30.255.255 for this"
        " host; set poolBase explicitly (e.g. a /16 in 10.0.0.0/8)"
    ]


# --- the provider --------------------------------------------------------------------------


def wire(value: Any) -> Any:
    """As the engine hands properties to a dynamic provider: every number a float."""
    return json.loads(json.dumps(value), parse_int=float)


def news(*entries: dict[str, Any]) -> dict[str, Any]:
    return wire({"hostName": "build-1", "instances": list(entries)})


def check(olds: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    result = NetworkAllocationProvider().check(olds, new)
    assert result.failures == []
    return wire(result.inputs)


def test_check_puts_the_allocation_into_the_checked_inputs() -> None:
    inputs = check({}, news({"prefix": "a_"}, {"prefix": "b_", "poolSize": 26}))
    assert inputs["hostName"] == "build-1"
    assert inputs["allocation"] == {
        "a_": {
            "bridgeCidr": "172.16.0.1/24",
            "fixedCidr": "172.16.0.0/24",
            "poolBase": "172.18.0.0/19",
            "poolSize": 24,
        },
        "b_": {
            "bridgeCidr": "172.16.1.1/24",
            "fixedCidr": "172.16.1.0/24",
            "poolBase": "172.19.0.0/19",
            "poolSize": 26,
        },
    }


def test_check_keeps_the_previous_allocation_and_diff_sees_an_update() -> None:
    first = check({}, news({"prefix": "a_"}, {"prefix": "b_"}, {"prefix": "c_"}))
    second = check(first, news({"prefix": "b_"}, {"prefix": "c_"}))
    assert second["allocation"] == {k: first["allocation"][k] for k in ("b_", "c_")}
    diff = NetworkAllocationProvider().diff("id", first, second)
    assert diff.changes is True
    assert diff.replaces == []
    assert changed_keys(first, second) == ["instances", "allocation"]


def test_no_change_and_reorder_are_no_diff() -> None:
    entries = [{"prefix": "a_"}, {"prefix": "b_", "poolSize": 26}]
    first = check({}, news(*entries))
    for again in (news(*entries), news(*reversed(entries))):
        second = check(first, again)
        assert NetworkAllocationProvider().diff("id", first, second).changes is False
    # Integers against floats (outputs of an older run against new inputs) compare equal.
    ints = NetworkAllocationProvider().check({}, {"hostName": "build-1", "instances": entries})
    assert changed_keys(first, ints.inputs) == []


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([{"prefix": "A_"}], "instances[0] (host build-1): prefix: 'A_' is not a valid prefix"),
        (
            [{"prefix": "a_", "bridgeCidr": "8.8.8.1/24"}],
            "instances[0] (host build-1): bridgeCidr: 8.8.8.1/24 is not in a private",
        ),
        (
            [{"prefix": "a_", "root": "/a"}],
            "instances[0] (host build-1): unknown keys root; use prefix, bridgeCidr",
        ),
        ([{"prefix": "a_"}, {"prefix": "a_"}], "instances[1] (host build-1): a_ is listed twice"),
        (
            [
                {"prefix": "a_", "poolBase": "10.0.0.0/8"},
                {"prefix": "b_", "poolBase": "10.1.0.0/16"},
            ],
            "instances.b_.poolBase: 10.1.0.0/16 overlaps instances.a_.poolBase (10.0.0.0/8);"
            " pick a disjoint range or omit it to have one allocated (host build-1)",
        ),
    ],
)
def test_check_reports_unusable_inputs(entries: list[dict[str, Any]], message: str) -> None:
    result = NetworkAllocationProvider().check({}, news(*entries))
    assert [f.property for f in result.failures] == ["instances"]
    assert result.failures[0].reason.startswith(message), result.failures[0].reason
    assert "allocation" not in result.inputs


def test_unknown_inputs_leave_the_allocation_unknown() -> None:
    result = NetworkAllocationProvider().check({}, {"hostName": "h", "instances": Unknown()})
    assert result.failures == []
    assert "allocation" not in result.inputs


def test_create_update_read_delete_echo_the_properties() -> None:
    provider = NetworkAllocationProvider()
    props = check({}, news({"prefix": "a_"}))
    created = provider.create(props)
    assert (created.id, created.outs) == ("build-1-networks", props)
    assert provider.update("build-1-networks", props, props).outs == props
    read = provider.read("build-1-networks", props)
    assert (read.id, read.outs) == ("build-1-networks", props)
    assert provider.delete("build-1-networks", props) is None


def test_provider_pickles_without_state_and_does_no_io() -> None:
    provider = NetworkAllocationProvider()
    assert vars(provider) == {}
    assert isinstance(serialize_provider(provider), str)
    assert type(dill.loads(dill.dumps(provider))) is NetworkAllocationProvider  # noqa: S301
    # Importing it pulls in neither the SSH transport nor the host operations.
    code = (
        "import sys, dockyard_resources.providers.networks;"
        "print(sorted(m for m in sys.modules if m.startswith(('dockyard_resources.transport',"
        " 'dockyard_resources.hostops', 'paramiko'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_instance_networks_shape() -> None:
    networks_ = InstanceNetworks(
        ipaddress.IPv4Interface("172.16.0.1/24"),
        Net("172.16.0.0/24"),
        Net("172.18.0.0/19"),
        24,
        frozenset(),
    )
    assert networks_.props() == {
        "bridgeCidr": "172.16.0.1/24",
        "fixedCidr": "172.16.0.0/24",
        "poolBase": "172.18.0.0/19",
        "poolSize": 24,
    }
