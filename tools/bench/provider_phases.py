"""Bench phases that drive the providers directly on one bare QEMU VM: SysboxHost create,
N instances created together (as Pulumi does for one host), their memory on the host, and
deletes. The providers run in this process, so their SSH work is traced here."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dockyard_resources.providers.instance import DockyardInstanceProvider
from dockyard_resources.providers.sysbox_host import SysboxHostProvider
from dockyard_resources.transport import SshSession, SshTarget, session
from dockyard_resources.vm import runner
from tools.bench.measure import Recorder
from tools.testbed import props as testbed_props
from tools.testbed.artifacts import TestbedArtifacts

DOCKER_VERSION = testbed_props.DOCKER_VERSION
SYSBOX_VERSION = testbed_props.SYSBOX_VERSION
HOST_NAME = "bench"
OWNER = "tools/bench"


def connection(vm: runner.Vm) -> dict[str, Any]:
    return {
        "host": runner.SSH_HOST,
        "port": float(vm.port),
        "user": runner.ROOT_USER,
        "privateKey": vm.private_key,
        "hostKey": vm.host_key,
    }


def sysbox_props(vm: runner.Vm, chosen: TestbedArtifacts) -> dict[str, Any]:
    def artifact(version: str, path: str, sha256: str) -> dict[str, Any]:
        return {"version": version, "artifacts": {"x86_64": {"url": path, "sha256": sha256}}}

    return {
        "connection": connection(vm),
        "hostName": HOST_NAME,
        "docker": artifact(DOCKER_VERSION, str(chosen.docker.path), chosen.docker.sha256),
        "sysbox": artifact(SYSBOX_VERSION, str(chosen.sysbox.path), chosen.sysbox.sha256),
        "artifactsMode": "upload",
        "allowSysboxRestart": False,
        "owner": f"{OWNER}/sysbox",
    }


def instance_props(vm: runner.Vm, n: int) -> dict[str, Any]:
    return testbed_props.instance_props(
        connection(vm), n, host_name=HOST_NAME, owner=f"{OWNER}/dy{n}_"
    )


def host_session(vm: runner.Vm) -> SshSession:
    """The providers' own target, so the bench's commands share their pooled connection."""
    return session(SshTarget.from_props(connection(vm)))


def _read(vm: runner.Vm, command: str, step: str) -> str:
    return str(host_session(vm).run(command, step=step).stdout)


def mem_available_mb(vm: runner.Vm) -> float:
    return int(_read(vm, "awk '/^MemAvailable:/ {print $2}' /proc/meminfo", "meminfo")) / 1024


def cpu_ticks(vm: runner.Vm) -> tuple[int, int]:
    """(busy, total) clock ticks of all the guest's CPUs since boot (/proc/stat): idle and
    iowait are not busy."""
    values = [int(v) for v in _read(vm, "head -n 1 /proc/stat", "cpu ticks").split()[1:]]
    total = sum(values[:8])  # user..steal; guest time is already inside user
    return total - values[3] - values[4], total


def busy_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    """Share of the guest's CPU time that was busy between two `cpu_ticks` reads."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total > 0 else 0.0


def together(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run the calls at the same time, as the Pulumi engine does for sibling resources."""
    if not calls:
        return []
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(call) for call in calls]
        return [f.result() for f in futures]


def sysbox_host_create(rec: Recorder, vm: runner.Vm, chosen: TestbedArtifacts) -> dict[str, Any]:
    with rec.phase("SysboxHost create (upload + install)"):
        created = SysboxHostProvider().create(sysbox_props(vm, chosen))
    return created.outs or {}


def first_instance(rec: Recorder, vm: runner.Vm) -> None:
    """The host's first instance create and delete, measured on their own: the first dockerd
    start reads the binaries from the guest's disk (its page cache is cold), which would
    otherwise inflate the one-instance figure the N-instance ratios divide by."""
    provider = DockyardInstanceProvider()
    props = instance_props(vm, 1)
    try:
        with rec.phase("DockyardInstance create, the host's first (cold caches)"):
            provider.create(props)
    finally:
        with rec.phase("DockyardInstance delete, the host's first"):
            provider.delete("", props)


def instances_scaling(rec: Recorder, vm: runner.Vm, counts: list[int]) -> None:
    """For each N: create N instances together, note the host memory they take, delete."""
    provider = DockyardInstanceProvider()
    for n in counts:
        props = [instance_props(vm, i) for i in range(1, n + 1)]
        idle_mb, ticks = mem_available_mb(vm), cpu_ticks(vm)
        try:
            with rec.phase(f"DockyardInstance create x{n}") as created:
                together([functools.partial(provider.create, p) for p in props])
            # How busy the guest's vCPUs were: near 100% means the emulated CPU, not the
            # order of the steps, bounds the parallel creates.
            busy = busy_share(ticks, cpu_ticks(vm))
            time.sleep(5)  # let the daemons settle before reading memory
            used = idle_mb - mem_available_mb(vm)
            created.extra.update(
                instances=n,
                hostMemoryMbPerInstance=round(used / n, 1),
                guestCpuBusy=round(busy, 3),
            )
        finally:
            with rec.phase(f"DockyardInstance delete x{n}") as deleted:
                together([functools.partial(provider.delete, "", p) for p in props])
            deleted.extra.update(instances=n)


def sysbox_host_delete(rec: Recorder, outs: dict[str, Any]) -> None:
    with rec.phase("SysboxHost delete"):
        SysboxHostProvider().delete("", outs)
