"""`python -m dockyard_resources validate FILE`, run as the project's venv python."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
PYTHON = str(VENV_PYTHON) if VENV_PYTHON.exists() else sys.executable


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "dockyard_resources", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


GOOD = """\
config:
  dockyard:sshPrivateKey:
    secure: v1:notdecryptedbyvalidate
  dockyard:hosts:
    - name: build-1
      provision: {kind: existing, address: 10.20.30.40, user: admin}
      instances:
        - {prefix: dy1_, root: /dy1, bridgeCidr: 172.22.147.1/24, poolBase: 172.28.0.0/16}
        - {prefix: dy2_, root: /dy2, members: [ci-runner]}
    - name: vm
      provision: {kind: qemu}
      artifacts: upload
      allowSysboxRestart: true
"""

BAD = """\
config:
  dockyard:hosts:
    - name: build-1
      provision: {kind: existing, address: 203.0.113.10}
      instances:
        - {prefix: dy1_, root: /dy1, poolBase: 172.28.0.0/16}
        - {prefix: dy2_, root: /dy1, poolBase: 172.28.0.0/16}
    - name: build-1
      provision: {kind: qemu, cpus: 0}
"""


def table_rows(out: str) -> list[list[str]]:
    """The cells of every row of the rich tables in `out` (header rows included)."""
    return [
        [cell.strip() for cell in line.split(line[0])[1:-1]]
        for line in out.splitlines()
        if line[:1] in ("│", "┃")
    ]


def test_valid_file_prints_hosts_instances_and_networks(tmp_path: Path) -> None:
    stack = tmp_path / "Pulumi.good.yaml"
    stack.write_text(GOOD)
    result = run_cli("validate", str(stack))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    out = result.stdout
    assert out.startswith(f"{stack}: valid, 2 host(s), 2 instance(s)\n")
    assert "┃ host " in out  # drawn by rich, as `status` draws its table
    rows = table_rows(out)
    both = "29.2.1 (x86_64, aarch64)"
    sysbox = "0.6.7 (x86_64, aarch64)"
    assert rows[:3] == [
        ["host", "provision", "arch", "docker", "sysbox", "artifacts", "sysbox restart"],
        [
            "build-1",
            "existing admin@10.20.30.40:22",
            "at connect",
            both,
            sysbox,
            "download",
            "refused",
        ],
        ["vm", "qemu trixie 2cpu 4096MB 20GB", "x86_64", both, sysbox, "upload", "allowed"],
    ]
    assert rows[3:] == [
        ["host", "prefix", "root", "bridge", "fixed", "pool", "size", "members"],
        [
            "build-1",
            "dy1_",
            "/dy1",
            "172.22.147.1/24",
            "172.22.147.0/24*",
            "172.28.0.0/16",
            "24*",
            "-",
        ],
        [
            "build-1",
            "dy2_",
            "/dy2",
            "172.16.0.1/24*",
            "172.16.0.0/24*",
            "172.18.0.0/19*",
            "24*",
            "ci-runner",
        ],
    ]
    assert "* allocated (omitted in the stack file)" in out


def test_a_stack_without_instances_says_so(tmp_path: Path) -> None:
    stack = tmp_path / "Pulumi.empty.yaml"
    stack.write_text("config:\n  dockyard:hosts: [{name: vm, provision: {kind: qemu}}]\n")
    result = run_cli("validate", str(stack))
    assert result.returncode == 0
    assert result.stdout.rstrip().endswith("no instances")
    stack.write_text("config:\n  dockyard:hosts: []\n")
    assert run_cli("validate", str(stack)).stdout.rstrip().endswith("no hosts")


def test_invalid_file_prints_every_error_and_exits_1(tmp_path: Path) -> None:
    stack = tmp_path / "Pulumi.bad.yaml"
    stack.write_text(BAD)
    result = run_cli("validate", str(stack))
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0] == f"{stack}: invalid, 4 errors:"
    # Each problem names the file, then the line and column of its key.
    assert [line.strip() for line in lines[1:]] == [
        f"{stack}:8:7: hosts[1].name: 'build-1' is already the name of hosts[0]; host names"
        " must be unique in the stack",
        f"{stack}:7:26: hosts[0].instances[1].root: /dy1 is already used by"
        " hosts[0].instances[0]; give each instance on a host its own root directory",
        f"{stack}:7:38: hosts[0].instances[1].poolBase: 172.28.0.0/16 overlaps"
        " hosts[0].instances[0].poolBase (172.28.0.0/16); pick a disjoint range or omit it to"
        " have one allocated",
        f"{stack}:9:31: hosts[1].provision.cpus: must be at least 1 (got 0)",
    ]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("content", "where", "fragment"),
    [
        (None, "", "cannot read the stack file"),
        ("config: {a: [1\n", ":2:1", "not valid YAML"),
        ("just text\n", ":1:1", "must be a YAML mapping"),
    ],
)
def test_unreadable_file_exits_2_without_traceback(
    tmp_path: Path, content: str | None, where: str, fragment: str
) -> None:
    stack = tmp_path / "Pulumi.x.yaml"
    if content is not None:
        stack.write_text(content)
    result = run_cli("validate", str(stack))
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {stack}{where}: ")
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr


def test_usage_errors_exit_2() -> None:
    result = run_cli()
    assert result.returncode == 2
    assert "usage: python -m dockyard_resources" in result.stderr
    assert run_cli("validate").returncode == 2


@pytest.mark.parametrize("name", ["Pulumi.example.yaml", "Pulumi.existing.example.yaml"])
def test_shipped_examples_validate(name: str) -> None:
    result = run_cli("validate", f"stacks/{name}")
    assert result.returncode == 0, result.stderr
    assert f"stacks/{name}: valid" in result.stdout
