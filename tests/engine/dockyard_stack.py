"""The real Dockyard program as one Pulumi stack, driven through the `pulumi` CLI.

The project is run from a throw-away copy (Pulumi writes `stacks/Pulumi.<stack>.yaml`, with
its encryption salt, beside the program): `__main__.py`, a `Pulumi.yaml` whose virtualenv is
the repo's `.venv` by absolute path, and a symlink to the repo's `dockyard_resources`, so the
code under test is the working tree itself.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dockyard_resources.operate.deployed import unwrap_secrets
from tests.fixtures.pulumi_cli import REPO_ROOT, PulumiCli

VENV = REPO_ROOT / ".venv"
STACK_CONFIG_DIR = "stacks"


def copy_project(dest: Path) -> Path:
    """A runnable copy of the Dockyard project in `dest` (which must not exist)."""
    dest.mkdir(parents=True)
    shutil.copy2(REPO_ROOT / "__main__.py", dest / "__main__.py")
    (dest / "dockyard_resources").symlink_to(REPO_ROOT / "dockyard_resources")
    project = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())
    project["runtime"]["options"]["virtualenv"] = str(VENV)
    project["stackConfigDir"] = STACK_CONFIG_DIR
    (dest / "Pulumi.yaml").write_text(yaml.safe_dump(project, sort_keys=False))
    (dest / STACK_CONFIG_DIR).mkdir()
    return dest


@dataclass(frozen=True)
class Run:
    """One finished CLI run with its `--json` output parsed.

    `up`/`refresh`/`destroy --json` without preview stream engine events, one JSON object per
    line (`resourcePreEvent`, `resOutputsEvent`, `summaryEvent`, ...); `preview --json` prints
    one document with `steps` and `changeSummary`. Both are read into `steps` and
    `change_summary`.
    """

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def events(self) -> list[dict[str, Any]]:
        return parse_events(self.stdout)

    @property
    def document(self) -> dict[str, Any]:
        return _json_object(self.stdout) or {}

    @property
    def change_summary(self) -> dict[str, int]:
        """Counts per operation, without `same` (what the engine reports at the end)."""
        summary: dict[str, Any] = self.document.get("changeSummary") or {}
        for event in self.events:
            if "summaryEvent" in event:
                summary = event["summaryEvent"].get("resourceChanges") or {}
        return {op: int(n) for op, n in summary.items() if op != "same" and n}

    def steps(self, op: str | None = None) -> list[dict[str, Any]]:
        """Step metadata (`op`, `urn`, `diffs`, ...) of every step the engine took."""
        steps: list[dict[str, Any]] = list(self.document.get("steps") or [])
        steps += [e["resourcePreEvent"]["metadata"] for e in self.events if "resourcePreEvent" in e]
        return [s for s in steps if op is None or s.get("op") == op]

    def outputs_steps(self, op: str | None = None) -> list[dict[str, Any]]:
        """Metadata of the steps that completed (`resOutputsEvent`)."""
        steps = [e["resOutputsEvent"]["metadata"] for e in self.events if "resOutputsEvent" in e]
        return [s for s in steps if op is None or s.get("op") == op]

    def urns(self, op: str) -> list[str]:
        return sorted({str(s["urn"]) for s in self.steps(op)})

    def describe(self) -> str:
        return (
            f"`pulumi {' '.join(self.args)}` exited {self.returncode}\n"
            f"--- diagnostics ---\n{self.diagnostics()[-6000:]}\n"
            f"--- stderr ---\n{self.stderr[-4000:]}"
        )

    def diagnostics(self) -> str:
        """The engine's non-debug messages (errors, warnings, provider logs)."""
        if not self.events:
            return self.stdout
        lines = []
        for event in self.events:
            diag = event.get("diagnosticEvent")
            if diag and diag.get("severity") != "debug":
                lines.append(f"{diag.get('severity')}: {diag.get('message', '').rstrip()}")
        return "\n".join(lines)


def parse_events(text: str) -> list[dict[str, Any]]:
    """JSON-lines engine events; empty when `text` is a single JSON document."""
    if _json_object(text) is not None:
        return []
    events = []
    for line in text.splitlines():
        value = _json_object(line)
        if value is not None:
            events.append(value)
    return events


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


@dataclass
class DockyardStack:
    """A stack of the Dockyard project in a copy at `work_dir`."""

    cli: PulumiCli
    work_dir: Path
    name: str

    @property
    def config_file(self) -> Path:
        return self.work_dir / STACK_CONFIG_DIR / f"Pulumi.{self.name}.yaml"

    def init(self) -> None:
        self.cli.run("stack", "init", self.name, cwd=self.work_dir)

    def set_hosts(self, hosts: list[dict[str, Any]]) -> None:
        """Write `dockyard:hosts` into the stack file, keeping what `stack init` put there."""
        document = yaml.safe_load(self.config_file.read_text()) or {}
        document.setdefault("config", {})["dockyard:hosts"] = hosts
        self.config_file.write_text(yaml.safe_dump(document, sort_keys=False))

    def pulumi(self, *args: str, json_report: bool = False, check: bool = True) -> Run:
        full = (*args, "--stack", self.name, *(("--json",) if json_report else ()))
        proc = self.cli.run(*full, cwd=self.work_dir, check=False, timeout=1800)
        run = Run(full, proc.returncode, proc.stdout, proc.stderr)
        if check and run.returncode != 0:
            raise AssertionError(run.describe())
        return run

    def up(self, *extra: str, check: bool = True) -> Run:
        return self.pulumi("up", "--yes", "--skip-preview", *extra, json_report=True, check=check)

    def preview(self, *extra: str, check: bool = True) -> Run:
        return self.pulumi("preview", *extra, json_report=True, check=check)

    def refresh(self, *extra: str, check: bool = True) -> Run:
        return self.pulumi(
            "refresh", "--yes", "--skip-preview", *extra, json_report=True, check=check
        )

    def destroy(self, *extra: str, check: bool = True) -> Run:
        return self.pulumi(
            "destroy", "--yes", "--skip-preview", *extra, json_report=True, check=check
        )

    def outputs(self) -> dict[str, Any]:
        proc = self.pulumi("stack", "output", "--json")
        outputs: dict[str, Any] = json.loads(proc.stdout)
        return outputs

    def export(self, *, show_secrets: bool = False) -> dict[str, Any]:
        args = ("stack", "export", *(("--show-secrets",) if show_secrets else ()))
        exported: dict[str, Any] = json.loads(self.pulumi(*args).stdout)
        return exported

    def export_text(self) -> str:
        """The checkpoint exactly as stored (secrets encrypted)."""
        return self.pulumi("stack", "export").stdout

    def import_state(self, deployment: dict[str, Any]) -> None:
        path = self.work_dir / f"{self.name}.state.json"
        path.write_text(json.dumps(deployment))
        try:
            self.pulumi("stack", "import", "--file", str(path))
        finally:
            path.unlink()

    def resources(self, *, show_secrets: bool = False) -> list[dict[str, Any]]:
        """Resources of the checkpoint; with `show_secrets`, secret values are unwrapped."""
        deployment = self.export(show_secrets=show_secrets).get("deployment") or {}
        resources: list[dict[str, Any]] = deployment.get("resources") or []
        return [unwrap_secrets(r) for r in resources] if show_secrets else resources

    def resource(self, name: str, *, show_secrets: bool = False) -> dict[str, Any]:
        """The state entry of the resource whose URN ends in `::name`."""
        for resource in self.resources(show_secrets=show_secrets):
            if str(resource["urn"]).endswith(f"::{name}"):
                return resource
        raise AssertionError(f"no resource {name!r} in the state of stack {self.name}")

    def urn_of(self, name: str) -> str:
        return str(self.resource(name)["urn"])

    def env(self) -> dict[str, str]:
        return self.cli.env | {"PULUMI_STACK": self.name}

    def command(self, *args: str) -> list[str]:
        """argv of a CLI run this module does not wait for (see `interrupted_up`)."""
        return [str(self.cli.executable), *args, "--stack", self.name, "--non-interactive"]


# Marks a secret value in a checkpoint.
