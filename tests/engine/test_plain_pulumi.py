"""docs/plain-pulumi.md, "One machine, your own backend", run as printed on the QEMU test host.

A new user (tests/engine/user_paths.py: a fresh clone, its own HOME, no make, no Dockyard
variable) logs in to a directory backend, makes a stack from the template, sets the SSH key
with `pulumi config set --secret`, runs `pulumi up`, `status`, the tunnel with the real
Docker CLI (`docker version`, `docker run`), then `pulumi destroy` and `pulumi stack rm`.
The commands come from the doc's blocks; the test only answers Pulumi with `--yes`, edits
the copied template for the test host (tests/engine/doc_host.py), takes the socket the
tunnel printed, and loads a `busybox` image through the tunnel (the VM has no internet).
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import pytest

from tests.engine import doc_host
from tests.engine.user_paths import (
    DOCS,
    UserCheckout,
    doc_commands,
    for_the_test,
    runtime_dir,
)
from tests.fixtures.pulumi_cli import PulumiCli
from tests.hosts.test_instances import sysbox_host_vm
from tools.testbed.artifacts import TestbedArtifacts

# The wait for one of the two machine-wide VM slots counts too (up to an hour).
# Not in `make test` (scripts/test.sh deselects the marker): `make test-outside-budget`.
pytestmark = [
    pytest.mark.engine, pytest.mark.vm, pytest.mark.outside_budget, pytest.mark.timeout(5400)
]  # fmt: skip

DOC = DOCS / "plain-pulumi.md"
STACK = "prod"


def test_the_documented_plain_pulumi_path(
    tmp_path: Path, pulumi_cli: PulumiCli, testbed_artifacts: TestbedArtifacts
) -> None:
    # A clone of the SysboxHost template (the testbed's files, another owner): the stack's
    # SysboxHost converges there and leaves it installed for that owner at destroy; a fresh
    # install through the engine is the Locally recipe's (test_recipe_ci_locally.py).
    with (
        contextlib.contextmanager(sysbox_host_vm)(testbed_artifacts) as host,
        runtime_dir() as runtime,
    ):
        started = time.monotonic()  # the wait for a VM slot is not the path's cost
        user = UserCheckout.make(tmp_path / "user", pulumi_cli.bin_dir, runtime=runtime)
        key = doc_host.give_key(user.home, host)

        user.run_doc(DOC, "plain/backend")
        assert (user.home / "pulumi-state").is_dir(), "no backend directory"

        copy, *rest = doc_commands(DOC, "plain/stack")
        assert copy.startswith("cp stacks/"), copy
        user.run(copy)
        stack_file = user.root / "stacks" / f"Pulumi.{STACK}.yaml"
        doc_host.edit_for_test_host(stack_file, host, testbed_artifacts)
        for command in rest:
            user.run(for_the_test(command))
        # The key is stored encrypted in the checkout's stack file, not in clear.
        assert "secure:" in stack_file.read_text()
        assert key.read_text().splitlines()[1] not in stack_file.read_text()

        _, status = user.run_doc(DOC, "plain/up")
        assert doc_host.PREFIX in status.output and "active" in status.output, status.output
        # The secret reached the program: the host's connection logs in with this key.
        exported = json.loads(
            user.run(f"pulumi stack export --show-secrets --stack {STACK}", stdout_only=True).output
        )
        planned = doc_host.connection_key(exported)
        assert doc_host.same_key(planned, key.read_text()), "not the configured key"

        [tunnel_command] = doc_commands(DOC, "plain/tunnel")
        export, version, run = doc_commands(DOC, "plain/docker")
        with user.background(tunnel_command, read_stdout=True) as tunnel:
            printed = tunnel.first_line()
            # The doc shows the line the tunnel prints, for its own socket name.
            assert printed.startswith("export DOCKER_HOST=unix://"), printed
            assert Path(printed.partition("unix://")[2]).name == Path(export).name, (
                printed,
                export,
            )
            user.run(printed)
            archive = doc_host.busybox_archive(host, tmp_path / "busybox.tar")
            user.run(f"docker load -q -i {archive}")
            assert "29.2.1" in user.run(version).output
            assert "hello from prod" in user.run(run).output

        user.run_doc(DOC, "plain/destroy")
        assert doc_host.traces(host) == []
        assert "prod" not in user.run("pulumi stack ls").output
        print(f"plain-Pulumi path: {time.monotonic() - started:.0f} s after the VM was up")
