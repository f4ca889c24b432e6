"""A Pulumi project directory outside the checkout, one per stack, running this checkout.

Pulumi writes into a stack's config file (the passphrase's `encryptionsalt`, values set with
`pulumi config set`). Run from the checkout, that dirties the shipped `stacks/*.yaml`. So
`make up`, `make destroy` (scripts/pulumi-stack.sh) and the `ci` command run Pulumi in
`${DOCKYARD_STATE}/stacks/<stack>/` (paths.py) instead: its `Pulumi.yaml` points `main:` at this
checkout and its `.venv`, and its stack file is the checkout's stack file merged in before
every run (the checkout's keys win; the salt and anything else Pulumi keeps there stay).
Relative paths in a stack file still mean the checkout (the program runs there).

`python -m dockyard_resources workdir stacks/Pulumi.<stack>.yaml` prepares it and prints it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from dockyard_resources.config.errors import StackFileError
from dockyard_resources.config.yamlsource import read_yaml
from dockyard_resources.paths import stacks_dir
from dockyard_resources.stack_secrets import PROVIDER_KEYS

REPO_ROOT = Path(__file__).resolve().parents[1]


class NotACheckout(StackFileError):
    """A command that needs a Dockyard checkout ran from an installed package."""


def require_checkout(command: str) -> Path:
    """The checkout this code runs from; an installed package has none (its commands run
    in the user's own Pulumi project instead: docs/library.md)."""
    if not (REPO_ROOT / "Pulumi.yaml").is_file() or not (REPO_ROOT / "tests").is_dir():
        raise NotACheckout(
            f"`{command}` runs from a Dockyard checkout (it uses the checkout's Pulumi project"
            " and tests); with the installed package, run `pulumi` in your own project"
            " (docs/library.md) and `dockyard status|tunnel|logs --project-dir DIR` there"
        )
    return REPO_ROOT


def stack_name_of(stack_file: Path) -> str:
    """`stacks/Pulumi.local.yaml` -> `local`."""
    name = stack_file.name
    if not (name.startswith("Pulumi.") and name.endswith((".yaml", ".yml"))):
        raise StackFileError(f"{stack_file}: a stack file is named Pulumi.<stack>.yaml")
    return name.removeprefix("Pulumi.").rsplit(".", 1)[0]


def write_project(work_dir: Path) -> Path:
    """A Pulumi project that runs this checkout's program with its `.venv`; returns the
    directory its stack files live in."""
    project = yaml.safe_load((require_checkout("deploy") / "Pulumi.yaml").read_text())
    project["main"] = str(REPO_ROOT)
    options = project.get("runtime", {}).get("options", {})
    if options.get("virtualenv"):
        options["virtualenv"] = str((REPO_ROOT / options["virtualenv"]).resolve())
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / "Pulumi.yaml").write_text(yaml.safe_dump(project, sort_keys=False))
    config_dir = work_dir / str(project.get("stackConfigDir", "."))
    config_dir.mkdir(parents=True, exist_ok=True)
    return config_dir


def _document(path: Path) -> dict[str, Any]:
    """A stack file's top-level mapping, read as `validate` reads it (duplicate keys, bad
    bytes and syntax errors are `StackFileError`s naming file and line)."""
    if not path.exists():
        return {}
    loaded = read_yaml(path).data or {}
    if not isinstance(loaded, dict):
        raise StackFileError(f"{path}: not a mapping of keys")
    return loaded


def merge_stack_file(target: Path, source: dict[str, Any]) -> None:
    """Write `source`'s config into the stack file at `target`, keeping what Pulumi put
    there (its own salt, keys set with `pulumi config set`) unless `source` brings its own
    secrets provider, which then comes along with its `secure:` values."""
    document = _document(target)
    if any(key in source for key in PROVIDER_KEYS):
        for key in PROVIDER_KEYS:
            document.pop(key, None)
            if key in source:
                document[key] = source[key]
    config = document.setdefault("config", {})
    config.update(source.get("config") or {})
    target.write_text(yaml.safe_dump(document, sort_keys=False))


def prepare(stack_file: Path, stack: str | None = None) -> Path:
    """The stack's project directory, ready for `pulumi ... --stack <stack>`."""
    name = stack or stack_name_of(stack_file)
    source = _document(stack_file) if stack_file.is_file() else None
    if source is None:
        raise StackFileError(f"{stack_file}: no such stack file")
    work_dir = stacks_dir() / name
    config_dir = write_project(work_dir)
    merge_stack_file(config_dir / f"Pulumi.{name}.yaml", source)
    return work_dir
