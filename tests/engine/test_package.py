"""Dockyard as an installed package: `pip wheel .`, a fresh venv, the `dockyard` console
script and the library in a program of one's own (docs/library.md), through the engine.

The venv gets the wheel and its declared dependencies only; every command runs outside the
checkout with a clean environment, so nothing can come from the checkout's `sys.path`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from dockyard_resources.vm.keys import generate_ed25519
from tests.fixtures.pulumi_cli import REPO_ROOT, PulumiCli, unique_stack_name

pytestmark = pytest.mark.engine

EXAMPLE = REPO_ROOT / "docs" / "examples" / "library"


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    outside: Path  # a working directory with no checkout in it

    def run(
        self, *argv: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv,
            cwd=self.outside,
            env=env or clean_env(),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )


def clean_env() -> dict[str, str]:
    keep = ("HOME", "LANG", "PIP_FIND_LINKS", "PIP_CERT", "SSL_CERT_FILE", "PIP_DEFAULT_TIMEOUT")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    return env


def _checked(proc: subprocess.CompletedProcess[str], what: str) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, (
        f"{what} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    base = tmp_path_factory.mktemp("package")
    dist, venv, outside = base / "dist", base / "venv", base / "elsewhere"
    outside.mkdir()
    # A copy of the tracked tree: the build must not depend on untracked files.
    source = base / "source"
    files = (
        subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True)
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, files):
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (REPO_ROOT / name).is_file():
            shutil.copy2(REPO_ROOT / name, target)
    env = clean_env()
    _checked(
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(source)],
            cwd=outside, env=env, capture_output=True, text=True, timeout=600, check=False,
        ),
        "pip wheel .",
    )  # fmt: skip
    (wheel,) = dist.glob("dockyard-*.whl")
    _checked(
        subprocess.run(["python3", "-m", "venv", str(venv)], env=env, capture_output=True,
                       text=True, check=False),
        "python3 -m venv",
    )  # fmt: skip
    _checked(
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", str(wheel)],
            cwd=outside, env=env, capture_output=True, text=True, timeout=900, check=False,
        ),
        "pip install dockyard.whl",
    )  # fmt: skip
    yield Installed(wheel=wheel, venv=venv, outside=outside)


def test_the_wheel_holds_the_whole_package_and_nothing_of_the_checkout(
    installed: Installed,
) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    tracked = subprocess.run(
        ["git", "ls-files", "dockyard_resources"],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    missing = [name for name in tracked if name not in names]
    assert not missing, f"files of the package missing from the wheel: {missing}"
    assert not [n for n in names if n.startswith(("tools/", "tests/"))]
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(installed.wheel).read(metadata).decode()
    assert "Requires-Dist: pulumi<4,>=3.272.0" in text
    assert "Provides-Extra: aws" in text and "Provides-Extra: hcloud" in text
    # The big cloud SDKs are extras only.
    assert "pulumi-aws" not in [
        line.split()[1].split("<")[0].split(">")[0]
        for line in text.splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    ]


def test_the_console_script_runs_from_the_installed_package(installed: Installed) -> None:
    where = _checked(
        installed.run(str(installed.venv / "bin/python"), "-c",
                      "import dockyard_resources; print(dockyard_resources.__file__)"),
        "import",
    ).stdout.strip()  # fmt: skip
    assert where.startswith(str(installed.venv)), where
    stack_file = installed.outside / "Pulumi.demo.yaml"
    shutil.copy2(REPO_ROOT / "stacks" / "Pulumi.existing.example.yaml", stack_file)
    shown = installed.run(str(installed.venv / "bin/dockyard"), "validate", str(stack_file))
    assert shown.returncode == 0, shown.stderr
    assert "valid, 1 host(s)" in shown.stdout
    usage = installed.run(str(installed.venv / "bin/dockyard"), "--help")
    assert usage.stdout.startswith("usage: dockyard "), usage.stdout
    for command in ("status", "tunnel", "logs", "ci", "validate"):
        assert command in usage.stdout
    ci = installed.run(str(installed.venv / "bin/dockyard"), "ci", "--stack-file", str(stack_file))
    assert ci.returncode == 2
    assert "runs from a Dockyard checkout" in ci.stderr, ci.stderr
    # No cloud SDK came with the plain install.
    find_aws = "import importlib.util as u; print(u.find_spec('pulumi_aws'))"
    probe = installed.run(str(installed.venv / "bin/python"), "-c", find_aws)
    assert probe.stdout.strip() == "None"


def test_the_library_example_runs_through_the_engine(
    installed: Installed, pulumi_backend: PulumiCli, tmp_path: Path
) -> None:
    project = tmp_path / "my-program"
    shutil.copytree(EXAMPLE, project)
    settings = yaml.safe_load((project / "Pulumi.yaml").read_text())
    settings["runtime"]["options"]["virtualenv"] = str(installed.venv)
    (project / "Pulumi.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    key = generate_ed25519("library-example")
    host_key = " ".join(generate_ed25519("host").public_line.split()[:2])
    cli = pulumi_backend
    stack = unique_stack_name("library")
    env = {"PYTHONPATH": ""}
    cli.run("stack", "init", stack, cwd=project, env=env)
    cli.run("config", "set", "address", "192.0.2.10", cwd=project, env=env)
    cli.run("config", "set", "hostKey", host_key, cwd=project, env=env)
    cli.run("config", "set", "--secret", "sshPrivateKey", cwd=project, env=env,
            input_text=key.private_openssh)  # fmt: skip
    preview = cli.run("preview", "--json", cwd=project, env=env)
    document = json.loads(preview.stdout)
    creates = [
        step["urn"].rsplit("::", 1)[1] for step in document["steps"] if step["op"] == "create"
    ]
    for name in ("build-1", "build-1-sysbox", "build-1-ci1_", "build-1-ci2_"):
        assert name in creates, creates
    protected = {
        step["urn"].rsplit("::", 1)[1]: bool((step.get("newState") or {}).get("protect"))
        for step in document["steps"]
    }
    assert protected["build-1-ci2_"] and not protected["build-1-ci1_"]
    assert key.private_openssh.strip().splitlines()[1] not in preview.stdout
