"""The bench's outputs: a table on the terminal, a JSON file, and a timeline picture."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib
from rich.console import Console
from rich.table import Table

from tools.bench.measure import Phase


def table(phases: list[Phase], console: Console) -> None:
    view = Table(title="Dockyard provisioning benchmark")
    for column in ("phase", "wall s", "ssh conn", "cmds", "sent", "received", "host busy"):
        view.add_column(column, justify="left" if column == "phase" else "right")
    for p in phases:
        d = p.as_dict()
        view.add_row(
            p.name,
            f"{p.wall:.1f}",
            str(d["sshConnections"]),
            str(d["commands"]),
            _size(p.bytes_sent),
            _size(p.bytes_received),
            f"{100 * p.host_share:.0f}%",
        )
    console.print(view)


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024**2:
        return f"{n / 1024:.1f} KiB"
    return f"{n / 1024**2:.1f} MiB"


def figures(phases: list[Phase]) -> dict[str, Any]:
    """The issue's targets, computed from the phases that ran (absent ones are left out)."""
    by_name = {p.name: p for p in phases}
    out: dict[str, Any] = {}
    one = by_name.get("DockyardInstance create x1")
    if one:
        out["dockyardOverheadShareOneInstance"] = round(1 - one.host_share, 3)
        for p in phases:
            n = p.extra.get("instances")
            if p.name.startswith("DockyardInstance create x") and n:
                out[f"ratio{n}to1"] = round(p.wall / one.wall, 2)
                out[f"hostMemoryMbPerInstance{n}"] = p.extra.get("hostMemoryMbPerInstance")
                busy = p.extra.get("guestCpuBusy")
                out[f"guestCpuBusy{n}"] = busy
                if busy is not None:
                    # The smallest ratio any order of the steps could reach with this much
                    # CPU work on this guest: its busy time spread over all its vCPUs.
                    out[f"cpuBoundRatio{n}to1"] = round(busy * p.wall / one.wall, 2)
    locked = by_name.get("install under xtrace: time holding the host lock")
    if locked:
        out["hostLockSecondsPerInstall"] = locked.extra.get("hostLockSeconds")
        out["installScriptSeconds"] = locked.extra.get("scriptSeconds")
    ours = by_name.get("Dockyard: one instance (one pooled connection)")
    if ours:
        out["dockyardToReplayBaselineRatio"] = ours.extra.get("baselineRatio")
    again = by_name.get("Dockyard: one instance, again (pooled connection)")
    if again:
        out["dockyardToPerStepBaselineRatio"] = again.extra.get("baselineRatio")
    host = by_name.get("SysboxHost create (upload + install)")
    three = by_name.get("DockyardInstance create x3")
    if host and three:
        wall = host.wall + three.wall
        out["bareHostToThreeInstancesSeconds"] = round(wall, 1)
        out["bareHostToWorkRatio"] = round(wall / (host.host_busy + three.host_busy), 3)
    for name, key in (
        ("engine: up (VM + SysboxHost + 3 instances)", "up"),
        ("engine: up again, nothing changed", "noChangeUp"),
        ("engine: preview", "preview"),
        ("engine: refresh", "refresh"),
    ):
        if name in by_name:
            out[f"{key}SshConnectionsPerHost"] = by_name[name].connections_per_host()
    for p in phases:
        k = p.extra.get("hosts")
        if k:
            out[f"upWith{k}HostsSeconds"] = round(p.wall, 1)
    return out


def write_json(phases: list[Phase], meta: dict[str, Any], path: Path) -> None:
    data = {"machine": meta, "figures": figures(phases), "phases": [p.as_dict() for p in phases]}
    path.write_text(json.dumps(data, indent=2) + "\n")


def timeline(phases: list[Phase], path: Path) -> None:
    """One panel per phase that did SSH work in parallel or at length: one row per
    resource, one bar per host-side step, so parallelism and idle gaps show."""
    matplotlib.use("Agg")  # no display here
    from matplotlib import pyplot as plt  # noqa: PLC0415 - only after choosing the backend

    shown = [p for p in phases if p.events and _worth_a_panel(p)]
    if not shown:
        return
    fig, grid = plt.subplots(
        len(shown), 1, figsize=(12, 2.2 + sum(len(_rows(p)) for p in shown) * 0.45), squeeze=False
    )
    axes = list(grid[:, 0])
    for ax, phase in zip(axes, shown, strict=True):
        rows = _rows(phase)
        for event in phase.events:
            y = rows.index(_row_of(event))
            start = event["started"] - phase.started
            width = max(event["ended"] - event["started"], 0.05)
            color = "tab:gray" if event["kind"] == "connect" else _color(event.get("step", ""))
            ax.barh(y, width, left=start, color=color, edgecolor="black", linewidth=0.3)
            if event["kind"] == "command" and width > phase.wall / 25:
                ax.text(start + width / 2, y, event["step"], ha="center", va="center", fontsize=6)
        ax.set_yticks(range(len(rows)), rows, fontsize=7)
        ax.set_xlim(0, phase.wall)
        ax.set_title(f"{phase.name}: {phase.wall:.0f} s wall", fontsize=9)
        ax.invert_yaxis()
    axes[-1].set_xlabel("seconds since the phase started (gray: SSH connection setup)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _worth_a_panel(phase: Phase) -> bool:
    return phase.name.startswith(("SysboxHost create", "DockyardInstance create", "engine: up ("))


def _row_of(event: dict[str, Any]) -> str:
    return str(event.get("resource") or event["address"])


def _rows(phase: Phase) -> list[str]:
    return sorted({_row_of(e) for e in phase.events})


_PALETTE = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:olive"]


def _color(step: str) -> str:
    kind = step.split(maxsplit=1)[0] if step else ""
    return str(_PALETTE[sum(map(ord, kind)) % len(_PALETTE)])
