"""`python -m tools.bench`: provisioning figures on the QEMU test host.

Phases, in one run: a bare VM booted cold; SysboxHost create; N instances created together
for each N asked for (memory per instance on the host, deletes); one instance by Dockyard
against the same work over one new `ssh` per command (the baselines); then the testbed
stack through the real engine (up, no-change up, preview, refresh, destroy) and stacks of
1..3 hosts (one `up` each). Prints a table,
writes bench.json, timeline.png and the trace to the output directory. Never fails on a
time: the exit code says only whether every phase ran.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from dockyard_resources import pulumi_env
from dockyard_resources.paths import cache_root
from dockyard_resources.transport import close_all, trace
from dockyard_resources.vm import runner
from tools.bench import baseline, engine_phases, lock_profile, provider_phases, report
from tools.bench.measure import Recorder
from tools.testbed.artifacts import prepare

BENCH_VM_MEMORY_MB = 4096  # room for 8 instances; the test VM's 2 GiB is too small


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.bench")
    parser.add_argument(
        "--instances",
        default="1,2,3,4,8",
        help="instance counts created together, one after the other (default 1,2,3,4,8)",
    )
    parser.add_argument("--memory-mb", type=int, default=BENCH_VM_MEMORY_MB)
    parser.add_argument("--out", type=Path, help="output directory (default: a new one under"
                        " ${DOCKYARD_CACHE}/bench/)")  # fmt: skip
    parser.add_argument(
        "--hosts",
        default="1,2,3",
        help="host counts per stack for the engine's scaling phase (default 1,2,3; '' for none)",
    )
    parser.add_argument("--skip-engine", action="store_true", help="no engine phases")
    parser.add_argument("--skip-baseline", action="store_true", help="no baseline phase")
    return parser.parse_args(argv)


def machine(vm_spec: runner.VmSpec, artifacts: str) -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    qemu = subprocess.run(
        ["qemu-system-x86_64", "--version"], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memoryGiB": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "qemu": qemu[0] if qemu else "unknown",
        "accelerator": os.environ.get("DOCKYARD_QEMU_ACCEL", "probed (TCG when KVM fails)"),
        "vm": {"memoryMb": vm_spec.memory_mb, "cpus": vm_spec.cpus, "suite": vm_spec.suite},
        "artifacts": artifacts,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    counts = [int(n) for n in args.instances.split(",") if n.strip()]
    out = args.out or cache_root() / "bench" / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    trace_file = out / "trace.jsonl"
    trace_file.unlink(missing_ok=True)
    os.environ[trace.TRACE_ENV] = str(trace_file)  # the provider processes inherit it
    # A log file gets the whole table, not an 80-column squeeze.
    console = Console(width=None if sys.stdout.isatty() else 150)
    rec = Recorder(trace_file, say=lambda line: console.print(line, markup=False))
    chosen = prepare()
    spec = runner.VmSpec(name=f"bench-{os.getpid()}", memory_mb=args.memory_mb, disk_gb=16)
    meta = machine(spec, chosen.describe())
    failed: BaseException | None = None
    try:
        with rec.phase("VM boot (cold, bare Debian)"):
            vm = runner.launch(spec)
        try:
            outs = provider_phases.sysbox_host_create(rec, vm, chosen)
            provider_phases.first_instance(rec, vm)
            lock_profile.host_lock_per_install(rec, vm)
            provider_phases.instances_scaling(rec, vm, counts)
            if not args.skip_baseline:
                baseline.compare(rec, vm, out)
                baseline.per_step(rec, vm, out)
            provider_phases.sysbox_host_delete(rec, outs)
        finally:
            close_all()
            vm.quit()
            vm.destroy()
        if not args.skip_engine:
            environ = pulumi_env.pulumi_environment()
            engine_phases.run(rec, environ, out / "engine.log")
            hosts = [int(k) for k in args.hosts.split(",") if k.strip()]
            engine_phases.hosts_scaling(rec, environ, hosts, out / "engine.log")
    except Exception as exc:  # report what ran, then say what broke
        failed = exc
    report.table(rec.phases, console)
    report.write_json(rec.phases, meta, out / "bench.json")
    report.timeline(rec.phases, out / "timeline.png")
    console.print_json(data=report.figures(rec.phases))
    console.print(f"results: {out}/bench.json, {out}/timeline.png (trace: {trace_file})")
    if failed is not None:
        console.print(f"[red]bench stopped early: {type(failed).__name__}: {failed}")
        return 1
    return 0
