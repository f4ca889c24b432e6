"""What the CI recipes need from `python -m dockyard_resources ci` before anything is created:
the runner's own address for the cloud firewall, and a plain word when pytest is missing."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from dockyard_resources import ci, cli
from dockyard_resources.config import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]


def _stack(name: str) -> Path:
    return REPO_ROOT / "stacks" / f"Pulumi.{name}.yaml"


@pytest.mark.parametrize("name", ["hcloud.example", "aws.example"])
def test_allowed_ssh_cidr_replaces_the_cloud_hosts_ranges(name: str) -> None:
    config = ci.load_stack(_stack(name), ["203.0.113.7/32", "2001:db8::7/128"])["config"]
    (host,) = config["dockyard:hosts"]
    assert host["provision"]["allowedSshCidrs"] == ["203.0.113.7/32", "2001:db8::7/128"]
    # The stack file itself is left as it is.
    assert ci.load_stack(_stack(name))["config"]["dockyard:hosts"][0]["provision"][
        "allowedSshCidrs"
    ] == ["198.51.100.0/24"]


def test_allowed_ssh_cidr_leaves_other_hosts_alone(tmp_path: Path) -> None:
    stack = tmp_path / "Pulumi.mixed.yaml"
    stack.write_text(
        "config:\n  dockyard:hosts:\n"
        "    - {name: a, provision: {kind: existing, address: 203.0.113.1}}\n"
        "    - {name: b, provision: {kind: hcloud, allowedSshCidrs: [198.51.100.0/24]}}\n"
    )
    a, b = ci.load_stack(stack, ["203.0.113.7/32"])["config"]["dockyard:hosts"]
    assert "allowedSshCidrs" not in a["provision"]
    assert b["provision"]["allowedSshCidrs"] == ["203.0.113.7/32"]


def test_allowed_ssh_cidr_is_validated_like_the_stack_file() -> None:
    with pytest.raises(ConfigError) as raised:
        ci.load_stack(_stack("hcloud.example"), ["203.0.113.7/24"])
    assert any("allowedSshCidrs[0]" in e and "did you mean 203.0.113.0/24" in e
               for e in raised.value.errors)  # fmt: skip


def test_allowed_ssh_cidr_without_a_cloud_host_is_refused() -> None:
    with pytest.raises(ci.CiError, match="no host with an SSH firewall"):
        ci.load_stack(_stack("testbed"), ["203.0.113.7/32"])


@pytest.mark.parametrize(("module", "what"), [("pytest", "pytest"), ("docker", "docker-py")])
def test_without_the_suites_tools_ci_says_what_to_install_and_creates_nothing(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    module: str,
    what: str,
) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == module else real_find_spec(name, *a),
    )
    monkeypatch.setenv("DOCKYARD_STATE", str(tmp_path / "state"))
    code = cli.main(["ci", "--stack-file", str(_stack("testbed"))])
    err = capsys.readouterr().err
    assert code == ci.EXIT_USAGE
    assert f"the acceptance suite needs {what}" in err
    assert "make setup-ci" in err and "requirements-ci.txt" in err
    assert not (tmp_path / "state").exists()
