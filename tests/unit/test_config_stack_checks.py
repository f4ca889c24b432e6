"""Checks across the hosts of a stack: one machine per host, and addresses a runner can reach."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dockyard_resources.config import ConfigError, check_stack_file, validate_hosts
from dockyard_resources.config.reachability import documentation_range, stack_warnings
from tests.unit.config_builders import host
from tests.unit.test_cli_validate import run_cli


def existing(address: str, **extra: Any) -> dict[str, Any]:
    return {"kind": "existing", "address": address, **extra}


def test_two_hosts_at_one_address_and_port_are_refused() -> None:
    raw = [
        host("a", provision=existing("10.1.2.3")),
        host("b", provision=existing("10.1.2.3", port=22, user="admin")),
        host("c", provision=existing("Build.Example.com.", sshConfig=True)),
        host("d", provision=existing("build.example.com", sshConfig=True)),
    ]
    with pytest.raises(ConfigError) as caught:
        validate_hosts(raw)
    assert caught.value.errors == [
        "hosts[1].provision.address: 10.1.2.3 at port 22 is already hosts[0]; two hosts of a"
        " stack cannot be one machine (their Docker, sysbox and instances would overwrite each"
        " other): remove one, or correct the address or port",
        "hosts[3].provision.address: build.example.com at the port ~/.ssh/config gives is"
        " already hosts[2]; two hosts of a stack cannot be one machine (their Docker, sysbox"
        " and instances would overwrite each other): remove one, or correct the address or"
        " port",
    ]


def test_one_address_at_two_ports_is_two_machines() -> None:
    raw = [
        host("a", provision=existing("10.1.2.3")),
        host("b", provision=existing("10.1.2.3", port=2222)),
        host("c", provision=existing("10.1.2.3", port=2222, sshConfig=True)),
        host("d", provision={"kind": "qemu"}),
        host("e", provision={"kind": "qemu"}),
    ]
    with pytest.raises(ConfigError) as caught:
        validate_hosts(raw)
    assert [e.split(":")[0] for e in caught.value.errors] == ["hosts[2].provision.address"]
    assert len(validate_hosts(raw[:2] + raw[3:])) == 4


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("192.0.2.10", "192.0.2.0/24"),
        ("198.51.100.0/24", "198.51.100.0/24"),
        ("203.0.113.128/25", "203.0.113.0/24"),
        ("2001:db8::1", "2001:db8::/32"),
        ("203.0.112.0/23", None),  # wider than the range: it also holds real addresses
        ("0.0.0.0/0", None),
        ("10.1.2.3", None),
        ("build-1.example.com", None),
    ],
)
def test_documentation_ranges(text: str, found: str | None) -> None:
    assert documentation_range(text) == found


def test_documentation_addresses_are_warnings_not_errors() -> None:
    specs = validate_hosts(
        [
            host("a", provision=existing("192.0.2.10")),
            host(
                "b",
                provision={"kind": "hcloud", "allowedSshCidrs": ["10.0.0.0/8", "198.51.100.0/24"]},
            ),
            host("c", provision={"kind": "aws", "region": "eu-central-1"}),  # 0.0.0.0/0
            host("d", provision=existing("10.1.2.3")),
        ]
    )
    assert stack_warnings(specs) == [
        "hosts[0].provision.address: 192.0.2.10 is in 192.0.2.0/24, a range reserved for"
        " documentation that no runner can reach; replace it with the machine's real address",
        "hosts[1].provision.allowedSshCidrs[1]: 198.51.100.0/24 is in 198.51.100.0/24, a range"
        " reserved for documentation that no runner connects from; list the addresses that run"
        " Pulumi, or SSH from them is blocked",
    ]


WARNED = """\
config:
  dockyard:hosts:
    - name: build-1
      provision:
        kind: existing
        address: 203.0.113.10
"""


def test_validate_prints_warnings_at_their_line_and_still_passes(tmp_path: Path) -> None:
    stack = tmp_path / "Pulumi.w.yaml"
    stack.write_text(WARNED)
    assert check_stack_file(stack).warnings == [
        f"{stack}:6:9: hosts[0].provision.address: 203.0.113.10 is in 203.0.113.0/24, a range"
        " reserved for documentation that no runner can reach; replace it with the machine's"
        " real address"
    ]
    result = run_cli("validate", str(stack))
    assert result.returncode == 0
    assert result.stderr.startswith(f"warning: {stack}:6:9: hosts[0].provision.address: ")
