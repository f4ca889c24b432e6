"""An instance's network inputs are what the stack file writes for it, nothing else.

The networks it leaves out are chosen on the host when the instance is created and kept in
the instance's own state from then on (its provider's diff keeps them: see
tests/unit/test_instance_provider.py). So what other instances do, of this stack or another,
never changes an instance's inputs, and the program registers no allocation of its own.
"""

from __future__ import annotations

from typing import Any

from dockyard_resources.config.networks import NETWORK_KEYS
from dockyard_resources.providers.instance import DockyardInstanceProvider
from tests.program.harness import HOST_NETWORKS, ProgramRun, run_program, unwrap


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


def network_inputs(run: ProgramRun) -> dict[str, dict[str, Any]]:
    return {
        r.plain("prefix"): {key: r.plain(key) for key in NETWORK_KEYS}
        for r in run.dynamic("DockyardInstance")
    }


def test_instances_get_only_the_networks_the_stack_file_writes() -> None:
    run = run_program(host(inst(1), inst(2, bridgeCidr="10.9.0.1/24", poolSize=26)))
    assert network_inputs(run) == {
        "dy1_": dict.fromkeys(NETWORK_KEYS),
        "dy2_": {"bridgeCidr": "10.9.0.1/24", "fixedCidr": None, "poolBase": None, "poolSize": 26},
    }
    # No allocation resource: an instance depends on its SysboxHost alone.
    assert [r.name for r in run.registrations if "instances" in r.inputs] == []
    for resource in run.dynamic("DockyardInstance"):
        assert resource.dependencies == [run.urn("build-1-sysbox")]


def test_other_instances_coming_and_going_change_no_instances_inputs() -> None:
    first = network_inputs(run_program(host(inst(1), inst(2), inst(3, poolBase="10.3.0.0/16"))))
    for later in (
        host(inst(2), inst(3, poolBase="10.3.0.0/16")),  # the first one removed
        host(inst(3, poolBase="10.3.0.0/16"), inst(2), inst(4), inst(1)),  # reordered, added
    ):
        after = network_inputs(run_program(later))
        assert {p: after[p] for p in first if p in after} == {
            p: first[p] for p in first if p in after
        }


def test_a_deployed_instance_sees_no_change_on_the_next_run() -> None:
    """What the host chose stays: the same file's inputs, diffed against what the create
    returned (the networks the host chose), are no change."""
    run = run_program(host(inst(1), inst(2, poolSize=26)))
    provider = DockyardInstanceProvider()
    for resource in run.dynamic("DockyardInstance"):
        inputs = unwrap(resource.inputs)
        prefix = inputs["prefix"]
        assert (
            run.outputs["build-1"]["instances"][prefix]["networks"]["bridge"]
            == (HOST_NETWORKS["bridgeCidr"])
        )
        created = {**inputs, **HOST_NETWORKS, "poolSize": inputs.get("poolSize") or 24}
        assert provider.diff("id", created, inputs).changes is False, prefix
