"""The host-state views the VM tests assert with (tests/hosts/checks.py) run here on THIS
machine's bash: an absence must mean "not there", never "the checking command failed"."""

from __future__ import annotations

import shlex
import subprocess

import pytest

from tests.hosts.checks import File, Group, IptablesRules, Link, Service, User, dockyard_traces


class LocalShell:
    """Runs the check scripts with bash on this machine; `broken` names commands that fail."""

    def __init__(self, broken: tuple[str, ...] = ()) -> None:
        self.stubs = "".join(f"{name}() {{ echo 'boom' >&2; return 9; }}\n" for name in broken)

    def run(self, script: str) -> tuple[int, str]:
        proc = subprocess.run(
            ["bash", "-c", self.stubs + script],
            capture_output=True, text=True, check=False, timeout=30,
        )  # fmt: skip
        return proc.returncode, proc.stdout


def test_present_and_absent_read_as_such() -> None:
    sh = LocalShell()
    assert File.of(sh, "/etc/passwd").exists
    assert not File.of(sh, "/nonexistent/dockyard-check").exists
    assert User.of(sh, "root").exists and "root" in User.of(sh, "root").groups
    assert not User.of(sh, "dockyard-no-such-user").exists
    assert Group.of(sh, "root").exists
    assert not Group.of(sh, "dockyard-no-such-group").exists
    assert Link.of(sh, "lo").exists
    assert not Link.of(sh, "dy-no-such-link").exists


@pytest.mark.parametrize(
    ("broken", "check"),
    [
        ("stat", lambda sh: File.of(sh, "/etc/passwd")),
        ("getent", lambda sh: User.of(sh, "root")),
        ("getent", lambda sh: Group.of(sh, "root")),
        ("ip", lambda sh: Link.of(sh, "lo")),
        ("systemctl", lambda sh: Service.of(sh, "ssh.service")),
        ("iptables", IptablesRules.of),
    ],
    ids=["file", "user", "group", "link", "service", "iptables"],
)
def test_a_failing_check_command_is_an_error_not_an_absence(broken: str, check: object) -> None:
    assert callable(check)
    with pytest.raises(AssertionError, match=r"could not|failed|printed nothing"):
        check(LocalShell(broken=(broken,)))


@pytest.mark.parametrize("comment", ['"dockyard:dy1_"', "dockyard:dy1_"], ids=["quoted", "bare"])
def test_traces_find_an_instances_rules_however_iptables_prints_the_tag(comment: str) -> None:
    rule = f"-A FORWARD -i dy1_docker0 -m comment --comment {comment} -j ACCEPT"
    other = '-A FORWARD -i dy10docker0 -m comment --comment "dockyard:dy10" -j ACCEPT'
    sh = LocalShell()
    sh.stubs = f"iptables() {{ printf '%s\\n' {shlex.quote(rule)} {shlex.quote(other)}; }}\n"
    found = dockyard_traces(sh, ["dy1_"], [], shared=False)
    assert found == [f"iptables filter {rule}", f"iptables nat {rule}"]
