"""The benchmark's arithmetic and outputs, on made-up trace events (the bench itself runs
by hand or with `make bench`: it measures, it does not test)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from dockyard_resources.render import common
from dockyard_resources.render.instance import DIR_MODES, InstanceSpec, instance_files
from tools.bench import report
from tools.bench.baseline import per_step_commands
from tools.bench.lock_profile import lock_span, traced
from tools.bench.measure import Phase, Recorder
from tools.bench.provider_phases import busy_share
from tools.testbed.props import instance_props


def command(start: float, end: float, *, resource: str = "r", step: str = "s") -> dict[str, Any]:
    return {
        "kind": "command", "address": "h:22", "step": step, "resource": resource,
        "started": start, "ended": end, "sent": 10, "received": 5,
    }  # fmt: skip


def test_host_busy_counts_overlapping_commands_once() -> None:
    phase = Phase("p", started=0.0, ended=10.0)
    phase.events = [command(1, 4), command(2, 3), command(3, 6), command(8, 9)]
    assert phase.host_busy == 6.0  # [1, 6] and [8, 9]
    assert phase.host_share == 0.6
    assert (phase.commands, phase.bytes_sent, phase.bytes_received) == (4, 40, 20)


def test_recorder_keeps_only_the_events_inside_each_phase(tmp_path: Path) -> None:
    trace_file = tmp_path / "trace.jsonl"
    rec = Recorder(trace_file, say=lambda _line: None)
    with rec.phase("first") as first:
        now = first.started
        events = [
            {"kind": "connect", "address": "h:22", "started": now, "ended": now},
            command(now - 100, now - 99),  # before the phase: not counted
        ]
        trace_file.write_text("".join(json.dumps(e) + "\n" for e in events))
    assert first.connections == 1 and first.commands == 0
    assert first.connections_per_host() == {"h:22": 1}


def test_figures_compare_each_count_with_one_instance() -> None:
    one = Phase("DockyardInstance create x1", started=0, ended=10, extra={"instances": 1})
    one.events = [command(0, 9)]
    four = Phase(
        "DockyardInstance create x4",
        started=0,
        ended=15,
        extra={"instances": 4, "guestCpuBusy": 0.9},
    )
    figures = report.figures([one, four])
    assert figures["ratio4to1"] == 1.5
    assert figures["dockyardOverheadShareOneInstance"] == 0.1
    assert figures["guestCpuBusy4"] == 0.9
    assert figures["cpuBoundRatio4to1"] == 1.35  # 90% of 15 s, over the 10 s of one


def test_guest_cpu_busy_share_leaves_out_idle_and_iowait() -> None:
    # (busy, total) ticks as cpu_ticks reads them: 300 of 400 new ticks were busy.
    assert busy_share((1000, 5000), (1300, 5400)) == 0.75
    assert busy_share((1000, 5000), (1000, 5000)) == 0.0


def test_timeline_draws_one_row_per_resource(tmp_path: Path) -> None:
    phase = Phase("DockyardInstance create x2", started=100.0, ended=130.0)
    phase.events = [
        command(101, 110, resource="DockyardInstance h/dy1_", step="install instance dy1_"),
        command(102, 120, resource="DockyardInstance h/dy2_", step="install instance dy2_"),
    ]
    assert report._rows(phase) == ["DockyardInstance h/dy1_", "DockyardInstance h/dy2_"]
    picture = tmp_path / "timeline.png"
    report.timeline([phase], picture)
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_per_step_baseline_writes_every_file_dockyard_renders_one_command_each() -> None:
    conn = {"host": "h", "port": 22.0, "user": "root"}
    spec = InstanceSpec.from_props(instance_props(conn, 1, host_name="h", owner="o"))
    steps = per_step_commands(spec)
    files = instance_files(spec)
    for f in files:
        (body,) = [b for command, b in steps if f"cat >{f.path} " in command]
        assert body == f.content.encode()
    assert sum(command.startswith("install -d ") for command, _ in steps) == len(DIR_MODES)
    assert steps[-1][0] == f"systemctl start {spec.service_name}"


def test_lock_span_times_the_host_lock_from_a_real_xtrace(tmp_path: Path) -> None:
    """A script shaped like the install (take the host lock, work, release, work) run by
    bash: the span covers the locked part only."""
    body = f"sleep 0.3\n{common.RELEASE_HOST_LOCK}sleep 0.6\n"
    script = common.bash_script(body).replace(common.HOST_LOCK, str(tmp_path / "lock"))
    ran = subprocess.run(["bash", "-c", traced(script)], capture_output=True, text=True, check=True)
    held, whole = lock_span(ran.stderr)
    assert held >= 0.3 and whole >= 0.9, ran.stderr
    assert held < whole - 0.5  # the 0.6 s after the release are not in it
    # Without a release the lock is held to the end.
    script = common.bash_script("sleep 0.2\n").replace(common.HOST_LOCK, str(tmp_path / "lock"))
    ran = subprocess.run(["bash", "-c", traced(script)], capture_output=True, text=True, check=True)
    held, whole = lock_span(ran.stderr)
    assert 0.2 <= held <= whole and whole - held < 0.5
