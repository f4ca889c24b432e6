"""shellcheck every host-side script: the rendered ones (with sample values) and the static ones.

Run as `python -m tools.lint_scripts` (part of `make lint`). Every script the providers send to
a host is rendered here with realistic sample inputs, in each variant its template has
(artifacts download/upload, sysbox restart allowed or not, owner set or not, network isolation
on or off, pool bridges or none), and checked with `shellcheck -S warning`, as bash unless the
script starts with `#!/bin/sh` (or says `# shellcheck shell=sh`). The repo's own shell scripts
are checked as they are. Prints each failing script with shellcheck's findings and exits 1 on
any finding.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from dockyard_resources.config.network_request import NetworkRequest
from dockyard_resources.hostops import instance as instance_ops
from dockyard_resources.hostops import network_claims
from dockyard_resources.render import host_key as host_key_render
from dockyard_resources.render import instance as instance_render
from dockyard_resources.render import metadata_block as metadata_render
from dockyard_resources.render import sysbox_host as sysbox_render
from dockyard_resources.transport.upload import upload_script

REPO = Path(__file__).resolve().parent.parent
SEVERITY = "warning"
# Scripts kept in the repo as files, relative to REPO (globs allowed).
STATIC = (
    "dockyard_resources/hostops/instance_guards.sh",
    "dockyard_resources/vm/guest_config.sh",
    "dockyard_resources/**/*.sh",  # any other script shipped with the package
    "scripts/*.sh",
    ".ci/run",
    "tools/standins/build.sh",
)
# Accepted findings: (file a fix would go into, "SCxxxx") -> why. Keep this small: fix the
# script (or its template) instead whenever the finding is real.
ALLOWED: dict[tuple[str, str], str] = {
    ("dockyard_resources/render/templates/instance/remove.sh.j2", "SC2043"): (
        "`for link in <bridge> <pool bridges...>` runs once when the instance made no networks"
    ),
}
TEMPLATES = "dockyard_resources/render/templates"

SHA_A, SHA_B = "a" * 64, "0123456789abcdef" * 4
INSTANCES = (
    {
        "prefix": "dy1_",
        "root": "/dy1",
        "dockerDir": "/usr/local/lib/dockyard/docker-29.2.1",
        "sysboxDir": "/usr/local/lib/dockyard/sysbox-0.6.7",
        "bridgeCidr": "172.22.147.1/24",
        "fixedCidr": "172.22.147.0/25",
        "poolBase": "172.28.0.0/16",
        "poolSize": 24.0,
        "members": ["alice", "bob"],
        "owner": "dockyard/prod/build-1-dy1_",
    },
    {
        "prefix": "ci7_",
        "root": "/srv/dockyard/ci7",
        "dockerDir": "/usr/local/lib/dockyard/docker-28.0.0",
        "sysboxDir": "/usr/local/lib/dockyard/sysbox-0.6.6",
        "bridgeCidr": "10.99.0.1/24",
        "fixedCidr": "10.99.0.0/24",
        "poolBase": "10.100.0.0/20",
        "poolSize": 26.0,
        "members": [],
        "owner": "dockyard/ci/build-2-ci7_",
        "networkIsolation": False,
    },
)
DOCKER = sysbox_render.Artifact(
    "docker",
    "29.2.1",
    "https://download.docker.com/linux/static/stable/x86_64/docker-29.2.1.tgz",
    SHA_A,
)
SYSBOX = sysbox_render.Artifact("sysbox", "0.6.7", "/srv/artifacts/sysbox-ce_0.6.7.deb", SHA_B)
SYSBOX_OWNER = "dockyard/prod/build-1-sysbox"


@dataclass(frozen=True)
class Script:
    name: str  # what the report calls it
    text: str
    source: str  # the file (relative to REPO) a fix goes into: script, template or module
    path: Path | None = None  # the script as a file in the repo; None for a rendered one

    @property
    def shell(self) -> str:
        head = self.text.split("\n", 3)[:3]
        if head[0] in ("#!/bin/sh", "#!/usr/bin/env sh") or "# shellcheck shell=sh" in head:
            return "sh"
        return "bash"


def instance_scripts() -> Iterator[Script]:
    for props in INSTANCES:
        spec = instance_render.InstanceSpec.from_props(props)
        name = f"instance {spec.prefix}"
        # The scripts hostops.instance runs; a fix goes into the template named last (or
        # one it includes: stale-binaries.sh.j2, system-dir-guard.sh.j2,
        # claim-networks.sh.j2, release-networks.sh.j2).
        for what, text, template in (
            ("install", instance_ops._install_script(spec), "install"),
            ("install (adopt)", instance_ops._install_script(spec, adopt=True), "install"),
            ("install (parked)", instance_ops._install_script(spec, enabled=False), "install"),
            ("park", instance_ops._park_script(spec), "park"),
            ("remove", instance_ops._remove_script(spec, ["br-0123456789ab"]), "remove"),
            ("remove (no pool bridges)", instance_ops._remove_script(spec, []), "remove"),
            ("stop", instance_ops._stop_script(spec), "stop"),
            ("inspect", instance_ops._inspect_script(spec), "inspect"),
            ("activate", instance_ops._activate_script(spec, restart=False), "activate"),
            ("activate (restart)", instance_ops._activate_script(spec, restart=True), "activate"),
            ("exists", instance_ops._exists_script(spec), "exists"),
        ):
            yield Script(f"{name}: {what}", text, f"{TEMPLATES}/instance/{template}.sh.j2")
        # The claim of a create that leaves networks to the host: both parts, or one of them.
        for what, request in (
            ("claim (bridge and pool chosen)", NetworkRequest(None, None, None, 24)),
            ("claim (pool chosen)", NetworkRequest(spec.bridge_cidr, spec.fixed_cidr, None, 26)),
            ("claim (bridge chosen)", NetworkRequest(None, None, spec.pool_base, spec.pool_size)),
        ):
            text = network_claims.claim_script(
                spec,
                request,
                guards=instance_ops.guards(),
                dir_guard=instance_ops._system_dir_patterns(),
            )
            yield Script(f"{name}: {what}", text, f"{TEMPLATES}/instance/claim-networks.sh.j2")
        for f in instance_render.instance_files(spec):
            if f.path.startswith(spec.path("bin", "")):
                program = f.path.rsplit("/", 1)[1]
                source = f"{TEMPLATES}/instance/{program}.sh.j2"
                yield Script(f"{name}: bin/{program}", f.content, source)


def sysbox_host_scripts() -> Iterator[Script]:
    def template(name: str) -> str:
        return f"{TEMPLATES}/sysbox_host/{name}.sh.j2"

    yield Script(
        "sysbox host: supervisor", sysbox_render.render_supervisor(), template("supervisor")
    )
    for what, cached in (("preflight", ()), ("preflight (cached)", (SHA_A, SHA_B))):
        yield Script(
            f"sysbox host: {what}", sysbox_render.preflight_script(cached), template("preflight")
        )
    yield Script(
        "sysbox host: inspect", sysbox_render.inspect_script(DOCKER, SYSBOX), template("inspect")
    )
    yield Script(
        "sysbox host: staging", sysbox_render.staging_script((SHA_A, SHA_B)), template("stage")
    )
    for mode in ("download", "upload"):
        for allow in (False, True):
            for owner in ("", SYSBOX_OWNER):
                plan = sysbox_render.InstallPlan(DOCKER, SYSBOX, mode, allow, owner)
                variant = f"{mode}, restart {'allowed' if allow else 'refused'}"
                variant += ", owner" if owner else ", no owner"
                yield Script(
                    f"sysbox host: install ({variant})",
                    sysbox_render.install_script(plan),
                    template("install"),
                )
    for what, owner in (("remove (no owner)", ""), ("remove (owner)", SYSBOX_OWNER)):
        yield Script(f"sysbox host: {what}", sysbox_render.remove_script(owner), template("remove"))


def transport_scripts() -> Iterator[Script]:
    for owner in (None, "nobody:root"):
        yield Script(
            f"transport: upload{' (owner)' if owner else ''}",
            upload_script("/var/cache/dockyard/uploads/" + SHA_A, 0o600, owner),
            "dockyard_resources/transport/upload.py",
        )


OLD_HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOld0000000000000000000000000000000000000000"
NEW_HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINew0000000000000000000000000000000000000000"


def cloud_host_scripts() -> Iterator[Script]:
    """The host key rotation and the metadata block of cloud hosts."""

    def template(name: str) -> str:
        return f"{TEMPLATES}/{name}.sh.j2"

    for config in (host_key_render.DEFAULT_SSHD_CONFIG, "/srv/dockyard-test/sshd_config"):
        yield Script(
            f"host key: prepare ({config})",
            host_key_render.prepare_script(OLD_HOST_KEY, config),
            template("host_key/prepare"),
        )
        yield Script(
            f"host key: switch ({config})",
            host_key_render.switch_script(OLD_HOST_KEY, NEW_HOST_KEY, config),
            template("host_key/switch"),
        )
        yield Script(
            f"host key: inspect ({config})",
            host_key_render.inspect_script(OLD_HOST_KEY, NEW_HOST_KEY, config),
            template("host_key/inspect"),
        )
    for what, text, name in (
        ("program", metadata_render.render_program(), "program"),
        ("install", metadata_render.install_script(), "install"),
        ("inspect", metadata_render.inspect_script(), "inspect"),
        ("remove", metadata_render.remove_script(), "remove"),
    ):
        yield Script(f"metadata block: {what}", text, template(f"metadata_block/{name}"))


def static_scripts() -> Iterator[Script]:
    seen: set[Path] = set()
    for pattern in STATIC:
        matches = sorted(REPO.glob(pattern))
        if not matches:
            raise SystemExit(f"lint_scripts: {pattern} matches no file; update STATIC")
        for path in matches:
            if path not in seen and ".venv" not in path.parts:
                seen.add(path)
                relative = str(path.relative_to(REPO))
                yield Script(relative, path.read_text(), relative, path)


def shellcheck(script: Script, scratch: Path) -> str:
    """shellcheck's findings for one script; empty when it passes."""
    path = script.path
    if path is None:
        path = scratch / (re.sub(r"[^A-Za-z0-9_.-]+", "-", script.name).strip("-") + ".sh")
        path.write_text(script.text)
    excluded = sorted(code for (source, code) in ALLOWED if source == script.source)
    command = ["shellcheck", "--color=never", "-s", script.shell, "-S", SEVERITY]
    if excluded:
        command += ["-e", ",".join(excluded)]
    done = subprocess.run(
        [*command, str(path)], capture_output=True, text=True, check=False, cwd=REPO
    )
    if done.returncode == 0:
        return ""
    return (done.stdout + done.stderr).strip() or f"shellcheck exited {done.returncode}"


def main() -> int:
    if shutil.which("shellcheck") is None:
        print("lint_scripts: shellcheck not found; scripts/system-deps.sh installs it")
        return 2
    scripts = [
        *instance_scripts(),
        *sysbox_host_scripts(),
        *transport_scripts(),
        *cloud_host_scripts(),
        *static_scripts(),
    ]
    with (
        tempfile.TemporaryDirectory(prefix="dockyard-lint-") as tmp,
        ThreadPoolExecutor(max_workers=os.cpu_count() or 4) as pool,
    ):
        results = list(pool.map(lambda s: shellcheck(s, Path(tmp)), scripts))
    failed = [(s, out) for s, out in zip(scripts, results, strict=True) if out]
    for script, out in failed:
        print(f"FAIL {script.name} [{script.source}] (shellcheck -s {script.shell})")
        print(out, end="\n\n")
    if failed:
        print(f"lint_scripts: {len(failed)} of {len(scripts)} scripts have shellcheck findings")
        return 1
    print(f"lint_scripts: {len(scripts)} scripts pass shellcheck -S {SEVERITY}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
