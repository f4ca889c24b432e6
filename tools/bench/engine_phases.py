"""Bench phases through the real Pulumi engine: the testbed stack (a QEMU VM, SysboxHost and
three instances) `up`, a no-change `up`, `preview`, `refresh`, and `destroy`. The provider
processes inherit DOCKYARD_TRACE, so their SSH work lands in the same trace file."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from dockyard_resources import ci, workdir
from tools.bench.measure import Recorder

STACK_FILE = workdir.REPO_ROOT / "stacks" / "Pulumi.testbed.yaml"


def run(rec: Recorder, environ: dict[str, str], engine_log: Path) -> None:
    with engine_log.open("a") as log_file:

        def quiet(message: str) -> None:
            print(message, file=log_file, flush=True)

        stack_run = _stack_run(environ, log_file)
        stack_file = ci.load_stack(STACK_FILE)
        try:
            stack = stack_run.create(stack_file)
            with rec.phase("engine: up (VM + SysboxHost + 3 instances)"):
                stack.up(on_output=quiet, color="never")
            with rec.phase("engine: up again, nothing changed") as again:
                result = stack.up(on_output=quiet, color="never")
            again.extra.update(changes=_changes(result.summary.resource_changes))
            with rec.phase("engine: preview"):
                stack.preview(on_output=quiet, color="never")
            with rec.phase("engine: refresh"):
                stack.refresh(on_output=quiet, color="never")
        finally:
            with rec.phase("engine: destroy"):
                stack_run.destroy()


def hosts_scaling(
    rec: Recorder, environ: dict[str, str], counts: list[int], engine_log: Path
) -> None:
    """For each k: a stack of k testbed hosts (one instance each) up, then destroyed; the
    engine creates the hosts in parallel, each VM booted by this machine."""
    base = ci.load_stack(STACK_FILE)
    config = base["config"]
    first = config["dockyard:hosts"][0]
    for k in counts:
        hosts = [
            {**first, "name": f"testbed-{i}", "instances": first["instances"][:1]}
            for i in range(1, k + 1)
        ]
        with engine_log.open("a") as log_file:
            stack_run = _stack_run(environ, log_file)
            try:
                stack = stack_run.create({**base, "config": {**config, "dockyard:hosts": hosts}})
                with rec.phase(f"engine: up, {k} host(s) with one instance each") as up:
                    stack.up(on_output=lambda line: print(line, file=log_file), color="never")
                up.extra.update(hosts=k)
            finally:
                stack_run.destroy()


def _stack_run(environ: dict[str, str], log_file: TextIO) -> ci.CiRun:
    """A throw-away stack from the testbed stack file, as the `ci` command makes one."""
    return ci.CiRun(
        stack_file=STACK_FILE,
        keep_on_failure=False,
        acceptance_args=(),
        log=ci.Progress(log_file, time.monotonic()),
        environ=environ,
    )


def _changes(summary: Mapping[Any, int] | None) -> dict[str, int]:
    return {str(k): v for k, v in (summary or {}).items() if str(k) != "same"}
