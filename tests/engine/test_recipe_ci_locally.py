"""docs/ci.md's "Locally" recipe, taken from the doc and run as printed in a fresh clone.

The block under `## Locally` runs as one `bash -e` script (a command that fails stops it),
as root (the doc says so: the first run builds the VM image), with the environment of a
machine that never ran Dockyard (tests/userpaths/fresh_clone.py): no Pulumi login, backend or
passphrase, an empty state root; only the content-addressed caches and the test bed's
artifacts ($DOCKYARD_TEST_ARTIFACTS) carry over. It is the full `ci` run of the testbed stack
(up, no-change preview, the acceptance suite, destroy; ~13 min here).
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest

from dockyard_resources.paths import vms_dir
from tests.fixtures.vm import qemu_pids_using
from tests.userpaths.bash import run_bash
from tests.userpaths.fresh_clone import REPO_ROOT, clone, new_machine_env

pytestmark = [pytest.mark.engine, pytest.mark.vm, pytest.mark.acceptance]

DOC = REPO_ROOT / "docs" / "ci.md"


def locally_block(text: str) -> str:
    """The first ```sh block of the `## Locally` section."""
    section = text.partition("\n## Locally\n")[2].partition("\n## ")[0]
    found = re.search(r"^```sh\n(.*?)^```$", section, re.MULTILINE | re.DOTALL)
    assert found, f"{DOC}: no ```sh block under ## Locally"
    return found.group(1)


@pytest.mark.timeout(5400)
def test_the_locally_recipe_runs_as_printed(tmp_path: Path) -> None:
    workspace, state = tmp_path / "workspace", tmp_path / "state"
    clone(workspace)
    script = tmp_path / "locally.sh"
    script.write_text(locally_block((workspace / "docs" / "ci.md").read_text()))
    env = new_machine_env(home=Path.home(), state=state, caches=True)
    started = time.monotonic()
    try:
        output = run_bash(script, cwd=workspace, env=env, log=tmp_path / "locally.log")
    finally:
        shutil.rmtree(workspace, ignore_errors=True)  # its .venv is large
    print(f"the Locally block took {(time.monotonic() - started) / 60:.1f} min")
    print(output[-3000:])
    for line in ("] up", "] preview --expect-no-changes", "] acceptance:", "] destroy: stack"):
        assert line in output, output[-6000:]
    assert output.rstrip().endswith("] passed"), output[-6000:]
    assert not list((state / "dockyard" / "ci").glob("ci-*"))
    # The engine's destroy of the qemu host ended its VM: no directory, no QEMU process.
    stack = re.search(r"\] stack (ci-\S+) from ", output)
    assert stack, output[:3000]
    assert not list(vms_dir().glob(f"{stack.group(1)}-*")), sorted(vms_dir().iterdir())
    assert not qemu_pids_using(vms_dir() / f"{stack.group(1)}-")
