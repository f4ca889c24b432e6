"""Instances take their networks from the host's `NetworkAllocation`, which keeps them stable.

The fake engine runs the allocation's real (pure) `check`, with the previous run's checked
inputs as `olds`, so a sequence of runs behaves like a sequence of `pulumi up`s.
"""

from __future__ import annotations

from typing import Any

from dockyard_resources.config import validate_hosts
from dockyard_resources.providers.networks import changed_keys
from tests.program.harness import FakeEngine, ProgramRun, run_program

NETWORKS = ("bridgeCidr", "fixedCidr", "poolBase", "poolSize")


def host(*instances: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "name": "build-1",
            "provision": {"kind": "existing", "address": "192.0.2.10"},
            "instances": list(instances),
        }
    ]


def inst(n: int, **extra: Any) -> dict[str, Any]:
    return {"prefix": f"dy{n}_", "root": f"/dy{n}", **extra}


def up(raw: list[dict[str, Any]], before: ProgramRun | None = None) -> ProgramRun:
    """One run of the program, continuing from `before` like a later `pulumi up`."""
    return run_program(raw, engine=FakeEngine(before.engine.checked if before else None))


def instance_inputs(run: ProgramRun) -> dict[str, dict[str, Any]]:
    return {
        r.plain("prefix"): {key: r.plain(key) for key in (*NETWORKS, "root", "members")}
        for r in run.dynamic("DockyardInstance")
    }


def allocation_change(before: ProgramRun, after: ProgramRun) -> list[str]:
    """What the provider's diff reports (outputs echo the checked inputs)."""
    name = "build-1-networks"
    return changed_keys(before.engine.checked[name], after.engine.checked[name])


def test_instances_take_their_networks_from_the_allocation_resource() -> None:
    raw = host(inst(1), inst(2, bridgeCidr="10.9.0.1/24", poolSize=26))
    run = up(raw)

    (allocation,) = run.dynamic("NetworkAllocation")
    assert allocation.name == "build-1-networks"
    assert allocation.parent == run.urn("build-1")
    # Its input is what the stack file says, explicit networks only, in file order.
    assert allocation.plain("hostName") == "build-1"
    assert allocation.plain("instances") == [
        {"prefix": "dy1_"},
        {"prefix": "dy2_", "bridgeCidr": "10.9.0.1/24", "poolSize": 26},
    ]
    allocated = run.engine.checked["build-1-networks"]["allocation"]
    for prefix in ("dy1_", "dy2_"):
        resource = run.named(f"build-1-{prefix}")
        assert allocation.urn in resource.dependencies
        assert {key: resource.plain(key) for key in NETWORKS} == allocated[prefix]
    assert allocated["dy2_"] == {
        "bridgeCidr": "10.9.0.1/24",
        "fixedCidr": "10.9.0.0/24",
        "poolBase": "172.19.0.0/19",
        "poolSize": 26,
    }


def test_a_fresh_stack_gets_what_validate_shows() -> None:
    raw = host(inst(1), inst(2, poolBase="172.18.0.0/16"), inst(3))
    run = up(raw)
    (spec,) = validate_hosts(raw)
    for instance in spec.instances:
        inputs = instance_inputs(run)[instance.prefix]
        assert {key: inputs[key] for key in NETWORKS} == {
            key: instance.props()[key] for key in NETWORKS
        }


def test_the_same_stack_file_again_changes_nothing() -> None:
    raw = host(inst(1), inst(2), inst(3))
    first = up(raw)
    second = up(raw, first)
    assert instance_inputs(second) == instance_inputs(first)
    assert allocation_change(first, second) == []


def test_removing_the_first_instance_changes_no_other_instance() -> None:
    first = up(host(inst(1), inst(2), inst(3)))
    second = up(host(inst(2), inst(3)), first)

    before, after = instance_inputs(first), instance_inputs(second)
    assert after == {prefix: before[prefix] for prefix in ("dy2_", "dy3_")}
    # Only the allocation resource changes (an update, no I/O).
    assert allocation_change(first, second) == ["instances", "allocation"]
    # A fresh allocation of the new file would have moved them: the state made the difference.
    (fresh,) = validate_hosts(host(inst(2), inst(3)))
    assert str(fresh.instances[0].bridge_cidr) == before["dy1_"]["bridgeCidr"]


def test_reordering_instances_changes_nothing() -> None:
    first = up(host(inst(1), inst(2), inst(3)))
    second = up(host(inst(3), inst(1), inst(2)), first)
    assert instance_inputs(second) == instance_inputs(first)
    assert allocation_change(first, second) == []


def test_a_new_instance_avoids_the_networks_of_one_removed_in_the_same_run() -> None:
    # dy1_ still exists on the host until the engine deletes it, after dy4_ is created.
    first = up(host(inst(1), inst(2), inst(3)))
    second = up(host(inst(2), inst(3), inst(4)), first)

    before, after = instance_inputs(first), instance_inputs(second)
    assert after["dy2_"] == before["dy2_"]
    assert after["dy3_"] == before["dy3_"]
    used = {(i["bridgeCidr"], i["poolBase"]) for i in before.values()}
    assert after["dy4_"]["bridgeCidr"] not in {b for b, _ in used}
    assert after["dy4_"]["poolBase"] not in {p for _, p in used}
    # In the next run dy1_'s networks are free again, and the allocation stays put.
    third = up(host(inst(2), inst(3), inst(4), inst(5)), second)
    assert instance_inputs(third)["dy5_"]["bridgeCidr"] == before["dy1_"]["bridgeCidr"]
    assert instance_inputs(third)["dy4_"] == after["dy4_"]


def test_an_explicit_network_wins_over_a_kept_one() -> None:
    first = up(host(inst(1), inst(2)))
    taken = instance_inputs(first)["dy1_"]["bridgeCidr"]
    second = up(host(inst(1), inst(2, bridgeCidr=taken)), first)

    after = instance_inputs(second)
    assert after["dy2_"]["bridgeCidr"] == taken
    # dy1_ is moved (it is updated in the same run) to a network nobody had.
    assert after["dy1_"]["bridgeCidr"] not in {
        i["bridgeCidr"] for i in instance_inputs(first).values()
    }
    assert after["dy1_"]["poolBase"] == instance_inputs(first)["dy1_"]["poolBase"]
