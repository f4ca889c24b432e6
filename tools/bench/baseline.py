"""The connection-per-command baselines, each command through a new `ssh host cmd`
(OpenSSH client, a full handshake per command, as a shell loop or a chain of
remote-command resources does):

- replay: the very scripts Dockyard ran for one instance;
- per step: the same instance made the common way, one command per step (each directory,
  each file, the group, the user, the reload, enable and start), with the files Dockyard
  renders. A stand-in for such a tool, written for this comparison only."""

from __future__ import annotations

import shlex
import statistics
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dockyard_resources.providers.instance import DockyardInstanceProvider
from dockyard_resources.render.instance import DIR_MODES, InstanceSpec, instance_files
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


def per_step_commands(spec: InstanceSpec) -> Recorded:
    """One instance the common way: a command per step, with Dockyard's rendered files."""
    group, user = shlex.quote(spec.group), shlex.quote(spec.user)
    steps: Recorded = [
        ("ip -j -4 route show table all; ip -j -4 addr show", b""),
        (f"getent group {group} || groupadd --system {group}", b""),
        (
            f"id -u {user} || useradd --system --gid {group} --no-create-home"
            f" --home-dir {shlex.quote(spec.root)} --shell /usr/sbin/nologin {user}",
            b"",
        ),
    ]
    for sub, mode in DIR_MODES.items():
        path = shlex.quote(spec.path(sub) if sub else spec.root)
        steps.append((f"install -d -o root -g {group} -m {mode:04o} {path}", b""))
    for f in instance_files(spec):
        owner = f"root:{spec.group}" if f.group_readable else "root:root"
        path = shlex.quote(f.path)
        write = f"mkdir -p $(dirname {path}) && cat >{path} && chmod {f.mode:o} {path}"
        steps.append((f"{write} && chown {owner} {path}", f.content.encode()))
    unit = shlex.quote(spec.service_name)
    runc = shlex.quote(spec.path("bin", "sysbox-runc"))
    steps += [
        (f"install -m 0755 -g {group} {shlex.quote(spec.sysbox_dir)}/sysbox-runc {runc}", b""),
        (f"gpasswd -M '' {group}", b""),
        ("systemctl daemon-reload", b""),
        (f"systemctl enable -q {unit}", b""),
        (f"systemctl start {unit}", b""),  # the unit's ExecStartPost waits for the socket
    ]
    return steps


def _race(
    rec: Recorder, vm: runner.Vm, work: Path, names: tuple[str, str], *, steps: Recorded | None
) -> None:
    """Dockyard creates instance 1 (phase names[0]); it is deleted; the baseline makes it
    again with `steps`, or the scripts Dockyard ran when None (phase names[1]); deleted."""
    provider = DockyardInstanceProvider()
    props = instance_props(vm, 1)
    with recording() as calls, rec.phase(names[0]) as ours:
        provider.create(props)
    provider.delete("", props)
    commands = calls if steps is None else steps
    argv = _ssh_argv(vm, _known_hosts(vm, work))
    try:
        with rec.phase(names[1]) as theirs:
            for command, body in commands:
                subprocess.run([*argv, command], input=body, check=True, capture_output=True)
            theirs.extra.update(sshConnections=len(commands), commands=len(commands))
    finally:
        provider.delete("", props)
    theirs.extra.update(connectionSeconds=round(connection_seconds(vm, work), 3))
    ours.extra.update(baselineRatio=round(ours.wall / theirs.wall, 3) if theirs.wall else None)


def compare(rec: Recorder, vm: runner.Vm, work: Path) -> None:
    """Dockyard against the replay of its own scripts, one new ssh each."""
    names = ("Dockyard: one instance (one pooled connection)",
             "baseline: the same commands, one new ssh each")  # fmt: skip
    _race(rec, vm, work, names, steps=None)


def per_step(rec: Recorder, vm: runner.Vm, work: Path) -> None:
    """Dockyard against the same instance made one command per step, one new ssh each."""
    spec = InstanceSpec.from_props(instance_props(vm, 1))
    names = ("Dockyard: one instance, again (pooled connection)",
             "baseline: one instance, one new ssh per step")  # fmt: skip
    _race(rec, vm, work, names, steps=per_step_commands(spec))
