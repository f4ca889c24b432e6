"""Invalid configuration stops the program before any resource is registered."""

from __future__ import annotations

import pulumi
import pytest

from tests.program.harness import FakeEngine, RecordingMonitor, run_program


def test_every_problem_is_reported_and_nothing_is_registered() -> None:
    engine = FakeEngine()
    monitor = RecordingMonitor(engine)
    hosts = [
        {
            "name": "Build_1",
            "provision": {"kind": "existing", "address": "192.0.2.10"},
            "instances": [{"prefix": "toolongprefix_", "root": "/dy1"}],
        },
        {
            "name": "ok-host",
            "provision": {"kind": "hcloud", "allowedSshCidrs": []},
            "instances": [
                {"prefix": "dy1_", "root": "/dy1", "poolBase": "172.28.0.0/16"},
                {"prefix": "dy2_", "root": "/dy2", "poolBase": "172.28.0.0/16"},
            ],
        },
    ]
    with pytest.raises(pulumi.RunError) as failure:
        run_program(hosts, engine=engine, monitor=monitor)

    message = str(failure.value)
    assert "invalid configuration of stack 'test'" in message
    assert "dockyard:hosts[0].name:" in message
    assert "dockyard:hosts[0].instances[0].prefix:" in message
    assert "dockyard:hosts[1].provision.allowedSshCidrs:" in message
    assert "hosts[1].instances[1].poolBase" in message
    assert "python -m dockyard_resources validate" in message
    # Not even the valid parts of the stack (or a stack-wide SSH key) were registered.
    assert monitor.registrations == []


def test_missing_hosts_is_an_error() -> None:
    with pytest.raises(pulumi.RunError, match=r"dockyard:hosts: missing"):
        run_program(None)


def test_documentation_addresses_are_warned_about_at_preview(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    warned: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *_, **__: warned.append(message))
    hosts = [
        {"name": "a", "provision": {"kind": "existing", "address": "198.51.100.7"}},
        {"name": "b", "provision": {"kind": "existing", "address": "10.1.2.3"}},
    ]
    run_program(hosts)
    assert warned == [
        "dockyard:hosts[0].provision.address: 198.51.100.7 is in 198.51.100.0/24, a range"
        " reserved for documentation that no runner can reach; replace it with the machine's"
        " real address"
    ]


def test_two_hosts_on_one_machine_stop_the_preview() -> None:
    hosts = [
        {"name": "a", "provision": {"kind": "existing", "address": "10.1.2.3"}},
        {"name": "b", "provision": {"kind": "existing", "address": "10.1.2.3", "port": 22}},
    ]
    with pytest.raises(pulumi.RunError, match=r"dockyard:hosts\[1\]\.provision\.address: 10"):
        run_program(hosts)
