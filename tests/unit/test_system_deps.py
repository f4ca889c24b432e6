"""scripts/system-deps.sh (what `make setup` and `make up` run) asks only for what the stack's
provision kinds need, run by bash with recording stand-ins for sudo, apt-get, dpkg-query and
`id` (so the non-root path runs here, where the suite is root).

The real unprivileged run, as a user without root in a fresh clone, is the Hetzner job of
tests/engine/test_recipe_github_actions.py.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from dockyard_resources.system_packages import PACKAGES_BY_KIND

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "scripts" / "system-deps.sh"
QEMU_PACKAGES = " ".join(PACKAGES_BY_KIND["qemu"])
REMOTE_STACKS = ("existing.example", "hcloud.example", "aws.example", "example")

# Each stand-in records its argv; dpkg-query reports a package installed only when listed in
# $INSTALLED; sudo's `-n true` probe answers $SUDO_WORKS.
STUBS = {
    "id": 'echo "$FAKE_UID"',
    "sudo": 'echo "sudo $*" >>"$CALLS"; [ "$*" != "-n true" ] || exit "$SUDO_WORKS"',
    "apt-get": 'echo "apt-get $*" >>"$CALLS"',
    "dpkg-query": (
        'pkg=${!#}; case " $INSTALLED " in *" $pkg "*) printf "install ok installed";;'
        " *) exit 1;; esac"
    ),
}


@dataclass(frozen=True)
class Outcome:
    returncode: int
    stderr: str
    calls: list[str]


Runner = Callable[..., Outcome]


@pytest.fixture
def run_script(tmp_path: Path) -> Runner:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in STUBS.items():
        stub = bin_dir / name
        stub.write_text(f"#!/bin/bash\n{body}\n")
        stub.chmod(0o755)
    calls = tmp_path / "calls"

    def run(*args: str, uid: int = 1000, sudo_works: bool = True, installed: str = "") -> Outcome:
        calls.write_text("")
        env = {
            "PATH": f"{bin_dir}:/usr/bin:/bin",
            "CALLS": str(calls),
            "FAKE_UID": str(uid),
            "SUDO_WORKS": "0" if sudo_works else "1",
            "INSTALLED": installed,
        }
        proc = subprocess.run(
            ["bash", str(SCRIPT), *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        return Outcome(proc.returncode, proc.stderr, calls.read_text().splitlines())

    return run


def _stack(name: str) -> str:
    return str(REPO_ROOT / "stacks" / f"Pulumi.{name}.yaml")


@pytest.mark.parametrize("stack", REMOTE_STACKS)
def test_remote_only_stack_asks_for_no_package_and_no_sudo(run_script: Runner, stack: str) -> None:
    outcome = run_script("deploy", _stack(stack))
    assert (outcome.returncode, outcome.calls, outcome.stderr) == (0, [], "")


def test_qemu_stack_installs_the_qemu_packages_through_sudo(run_script: Runner) -> None:
    outcome = run_script("deploy", _stack("testbed"))
    assert outcome.returncode == 0, outcome.stderr
    assert outcome.calls == [
        "sudo -n true",
        "sudo -n apt-get update -q",
        "sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -q"
        f" --no-install-recommends {QEMU_PACKAGES}",
    ]


def test_as_root_it_installs_without_sudo(run_script: Runner) -> None:
    outcome = run_script("deploy", _stack("local"), uid=0)
    assert outcome.returncode == 0, outcome.stderr
    assert outcome.calls == [
        "apt-get update -q",
        f"apt-get install -y -q --no-install-recommends {QEMU_PACKAGES}",
    ]


def test_without_sudo_it_says_what_to_install(run_script: Runner) -> None:
    outcome = run_script("deploy", _stack("testbed"), sudo_works=False, installed="e2fsprogs")
    assert outcome.returncode == 1
    assert outcome.calls == ["sudo -n true"]
    missing = QEMU_PACKAGES.replace(" e2fsprogs", "")
    assert f"Install them with: sudo apt-get install -y {missing}" in outcome.stderr


def test_installed_packages_are_not_asked_for(run_script: Runner) -> None:
    outcome = run_script("deploy", _stack("testbed"), installed=QEMU_PACKAGES)
    assert (outcome.returncode, outcome.calls) == (0, [])


def test_a_mixed_stack_asks_for_what_its_qemu_host_needs(
    run_script: Runner, tmp_path: Path
) -> None:
    stack = tmp_path / "Pulumi.mixed.yaml"
    stack.write_text(
        "config:\n  dockyard:hosts:\n"
        "    - {name: a, provision: {kind: existing, address: 203.0.113.1}}\n"
        "    - {name: b, provision: {kind: qemu}}\n"
    )
    # A path relative to where it is called from, as `make setup STACK_FILE=...` passes it.
    outcome = run_script("deploy", stack.name, installed="qemu-utils")
    assert outcome.returncode == 0, outcome.stderr
    assert outcome.calls[-1].endswith(QEMU_PACKAGES.replace("qemu-utils ", ""))


def test_a_missing_stack_file_stops_before_asking(run_script: Runner) -> None:
    outcome = run_script("deploy", "stacks/Pulumi.nope.yaml")
    assert outcome.returncode == 2
    assert "Pulumi.nope.yaml: cannot read the stack file" in outcome.stderr
    assert outcome.calls == []


def test_the_test_suite_gets_every_kind_and_its_tools(run_script: Runner) -> None:
    outcome = run_script("test", uid=0)
    assert outcome.returncode == 0, outcome.stderr
    installed = outcome.calls[-1].split()
    for package in (*QEMU_PACKAGES.split(), "openssh-server", "shellcheck", "dpkg-dev", "sudo"):
        assert package in installed
