"""The connection-per-command baseline: the very scripts Dockyard ran for one instance,
replayed the common way, each through a new `ssh host cmd` (OpenSSH client, a full
handshake per command, as a shell loop or a chain of remote-command resources does)."""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dockyard_resources.providers.instance import DockyardInstanceProvider
from dockyard_resources.transport import SshSession
from dockyard_resources.vm import runner
from tools.bench.measure import Recorder
from tools.bench.provider_phases import instance_props

Recorded = list[tuple[str, bytes]]  # (remote command line, its stdin)


@contextmanager
def recording() -> Iterator[Recorded]:
    """Keep a copy of every command and its stdin this process sends (bench only: the
    product never keeps scripts, which may hold secrets)."""
    calls: Recorded = []
    original = SshSession._execute

    def record(self: SshSession, command: str, stdin: Iterator[bytes], **kw: Any) -> Any:
        body = b"".join(stdin)
        calls.append((command, body))
        return original(self, command, iter([body]), **kw)

    SshSession._execute = record  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        SshSession._execute = original  # type: ignore[method-assign]


def _ssh_argv(vm: runner.Vm, known_hosts: Path) -> list[str]:
    return [
        "ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={known_hosts}", "-o", "ControlMaster=no",
        "-i", str(vm.private_key_file), "-p", str(vm.port),
        f"{runner.ROOT_USER}@{runner.SSH_HOST}",
    ]  # fmt: skip


def _known_hosts(vm: runner.Vm, work: Path) -> Path:
    path = work / "known_hosts"
    path.write_text(f"[{runner.SSH_HOST}]:{vm.port} {vm.host_key}\n")
    return path


def connection_seconds(vm: runner.Vm, work: Path, tries: int = 5) -> float:
    """Median wall time of `ssh host true`: what every extra command costs the baseline."""
    argv = _ssh_argv(vm, _known_hosts(vm, work))
    times = []
    for _ in range(tries):
        started = time.monotonic()
        subprocess.run([*argv, "true"], check=True, capture_output=True)
        times.append(time.monotonic() - started)
    return statistics.median(times)


def compare(rec: Recorder, vm: runner.Vm, work: Path) -> None:
    """One instance by Dockyard (pooled connection), then the same scripts by the baseline."""
    provider = DockyardInstanceProvider()
    props = instance_props(vm, 1)
    with recording() as calls, rec.phase("Dockyard: one instance (one pooled connection)") as ours:
        provider.create(props)
    provider.delete("", props)
    argv = _ssh_argv(vm, _known_hosts(vm, work))
    try:
        with rec.phase("baseline: the same commands, one new ssh each") as theirs:
            for command, body in calls:
                subprocess.run([*argv, command], input=body, check=True, capture_output=True)
            theirs.extra.update(sshConnections=len(calls), commands=len(calls))
    finally:
        provider.delete("", props)
    cost = connection_seconds(vm, work)
    theirs.extra.update(connectionSeconds=round(cost, 3))
    ours.extra.update(baselineRatio=round(ours.wall / theirs.wall, 3) if theirs.wall else None)
