"""docs/plain-pulumi.md, "A team sharing one backend", as printed, on a real S3-compatible
store (SeaweedFS on loopback, tests/fixtures/s3.py) and the QEMU test host.

Two users, each with a clone of the team's repository and a HOME of their own
(tests/engine/user_paths.py), log in to the same bucket with the same passphrase. Alice
creates the stack, commits and pushes its file, and runs `pulumi up`. While her `up` holds
the stack's lock (the test pauses her `pulumi` with SIGSTOP once the lock object is in the
bucket, so the second run is refused whatever the timing), Bob's `pulumi up` is refused
with the message the doc prints, naming Alice's process. Alice's `up` then finishes; Bob
pulls, sees her deployment in `status` and destroys it; Alice sees it gone.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.engine import doc_host
from tests.engine.user_paths import (
    DOCS,
    UserCheckout,
    doc_commands,
    doc_text,
    for_the_test,
    team_origin,
)
from tests.fixtures.pulumi_cli import PulumiCli
from tests.fixtures.s3 import S3Store
from tests.fixtures.vm import booted_vm
from tools.testbed.artifacts import TestbedArtifacts

# The wait for one of the two machine-wide VM slots counts too (up to an hour).
# Not in `make test` (scripts/test.sh deselects the marker): `make test-outside-budget`.
pytestmark = [
    pytest.mark.engine, pytest.mark.vm, pytest.mark.outside_budget, pytest.mark.timeout(5400)
]  # fmt: skip

DOC = DOCS / "plain-pulumi.md"
STACK = "prod"
DOC_STORE = "http://s3.example.com:8333"
LOCKS = f".pulumi/locks/organization/dockyard/{STACK}"


def _wait_for_lock(store: S3Store, up_pid: int, up_log: str) -> list[str]:
    """The lock object(s) of the stack, once `up` wrote one (fails if `up` ends first)."""
    while True:
        locks = store.keys(LOCKS)
        if locks:
            return locks
        try:
            os.kill(up_pid, 0)
        except ProcessLookupError:
            raise AssertionError(
                f"`pulumi up` ended before it locked the stack:\n{up_log}"
            ) from None
        time.sleep(0.5)


def test_a_team_shares_one_deployment_through_an_s3_backend(
    tmp_path: Path,
    pulumi_cli: PulumiCli,
    testbed_artifacts: TestbedArtifacts,
    s3_store: S3Store,
) -> None:
    origin = team_origin(tmp_path / "origin.git", tmp_path / "seed")
    passphrase_line, login_line = doc_commands(DOC, "shared/login")
    login = [passphrase_line, for_the_test(login_line, {DOC_STORE: s3_store.endpoint})]
    with booted_vm() as host:
        started = time.monotonic()  # the wait for a VM slot is not the path's cost
        alice = UserCheckout.of_clone(tmp_path / "alice", origin, pulumi_cli.bin_dir, name="alice")
        bob = UserCheckout.of_clone(tmp_path / "bob", origin, pulumi_cli.bin_dir, name="bob")
        doc_host.give_key(alice.home, host)
        # Alice makes the team's passphrase as the first section does; Bob gets a copy.
        alice.run(doc_commands(DOC, "plain/backend")[0])
        passphrase = (alice.home / ".pulumi-passphrase").read_bytes()
        (bob.home / ".pulumi-passphrase").touch(mode=0o600)
        (bob.home / ".pulumi-passphrase").write_bytes(passphrase)
        for user in (alice, bob):
            s3_store.give_credentials(user.home)
            for command in login:
                user.run(command)

        copy, *rest, up_command = doc_commands(DOC, "shared/first")
        assert up_command == "pulumi up", up_command
        alice.run(copy)
        stack_file = alice.root / "stacks" / f"Pulumi.{STACK}.yaml"
        doc_host.edit_for_test_host(stack_file, host, testbed_artifacts)
        for command in rest:
            alice.run(for_the_test(command))
        assert s3_store.keys(".pulumi/stacks/dockyard"), "the stack is not in the bucket"

        pull, status_command, destroy_command = doc_commands(DOC, "shared/second")
        bob.run(pull)
        assert (bob.root / "stacks" / f"Pulumi.{STACK}.yaml").is_file(), "Bob has no stack file"

        with alice.background(for_the_test(up_command)) as up:
            _wait_for_lock(s3_store, up.proc.pid, up.output())
            os.kill(up.proc.pid, signal.SIGSTOP)
            try:
                refused = bob.run(for_the_test(f"pulumi up --stack {STACK}"), check=False)
            finally:
                os.kill(up.proc.pid, signal.SIGCONT)
            assert refused.returncode != 0, refused.describe()
            assert doc_text(DOC, "lock message") in refused.output, refused.describe()
            assert f"(pid {up.proc.pid})" in refused.output, refused.describe()
            assert up.wait() == 0, up.output()
        assert s3_store.keys(LOCKS) == [], "Alice's lock outlived her `up`"

        status = bob.run(status_command)
        assert doc_host.HOST in status.output and doc_host.PREFIX in status.output, status.output
        assert "active" in status.output, status.output
        bob.run(for_the_test(destroy_command))
        assert doc_host.traces(host) == []
        seen_by_alice = alice.run(status_command, check=False)
        assert seen_by_alice.returncode == 1
        assert "has no `hosts` output yet" in seen_by_alice.output, seen_by_alice.describe()
        print(f"shared-backend path: {time.monotonic() - started:.0f} s after the VM was up")
