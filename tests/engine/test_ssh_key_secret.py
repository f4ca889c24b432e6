"""One way to set the SSH key, for plain `pulumi`, `make up` and `ci` alike: the command of
docs/plain-pulumi.md, "The SSH key: one way for every path", run in the checkout.

In a user's own checkout and backend (tests/engine/user_paths.py), no VM: `make preview`'s
recipe (scripts/pulumi-stack.sh, without make's setup steps) must hand the program exactly
that key, also when the stack was made by `make` first; with another passphrase, or without
the login the secret was set in, it stops with Dockyard's message; `ci` on the same stack
file decrypts it in its own throw-away stack. Plain `pulumi up` with the key on a real host
is tests/engine/test_plain_pulumi.py.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.engine.user_paths import DOCS, UserCheckout, doc_commands, for_the_test
from tests.fixtures.pulumi_cli import PulumiCli

pytestmark = pytest.mark.engine

DOC = DOCS / "plain-pulumi.md"
[SET_KEY] = doc_commands(DOC, "secret/one-way")
MAKE_PREVIEW = "scripts/pulumi-stack.sh preview {stack}"


@pytest.fixture
def user(tmp_path: Path, pulumi_cli: PulumiCli) -> UserCheckout:
    """A user logged in to their own directory backend, with a passphrase file and a key."""
    user = UserCheckout.make(tmp_path / "user", pulumi_cli.bin_dir)
    key = user.home / ".ssh" / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    user.run_doc(DOC, "plain/backend")
    return user


def _digest(text: str) -> str:
    """Compared instead of the key itself: a failed assertion must not print it."""
    return hashlib.sha256(text.encode()).hexdigest()


def _planned_key(preview_json: str) -> str | None:
    """The private key the preview plans for the SysboxHost's connection (`[secret]`)."""
    for step in json.loads(preview_json).get("steps") or []:
        if str(step.get("urn", "")).endswith("-sysbox"):
            inputs: dict[str, Any] = (step.get("newState") or {}).get("inputs") or {}
            key = (inputs.get("connection") or {}).get("privateKey")
            return str(key) if key else None
    raise AssertionError("the preview plans no SysboxHost")


def test_the_key_set_in_the_checkout_reaches_make_up(user: UserCheckout) -> None:
    key = (user.home / ".ssh" / "id_ed25519").read_text()
    user.run("cp stacks/Pulumi.existing.example.yaml stacks/Pulumi.staging.yaml")
    # `make preview` first: the stack is created in make's own project directory.
    user.run(MAKE_PREVIEW.format(stack="staging"))
    user.run(for_the_test(SET_KEY, {"<stack>": "staging"}))
    assert "secure:" in (user.root / "stacks" / "Pulumi.staging.yaml").read_text()

    preview = user.run(MAKE_PREVIEW.format(stack="staging") + " --json", stdout_only=True)
    assert _planned_key(preview.output) == "[secret]", "make preview planned no login key"
    # ... and it is the key set in the checkout, decrypted in make's own project directory.
    work_dir = user.home / ".cache" / "dockyard" / "stacks" / "staging"
    decrypted = user.run(
        f"cd {work_dir} && pulumi config get dockyard:sshPrivateKey --stack staging",
        stdout_only=True,
    )
    assert _digest(decrypted.output) == _digest(key), "make up decrypts another key"

    # Another passphrase: Dockyard's message, not Pulumi's "message authentication failed".
    (user.home / "other-passphrase").write_text("not the passphrase\n")
    user.env["PULUMI_CONFIG_PASSPHRASE_FILE"] = str(user.home / "other-passphrase")
    refused = user.run(MAKE_PREVIEW.format(stack="staging"), check=False)
    assert refused.returncode == 1, refused.describe()
    assert "secrets in stacks/Pulumi.staging.yaml do not decrypt for stack staging" in (
        refused.output
    ), refused.describe()
    assert "pulumi config set --secret dockyard:sshPrivateKey --stack staging" in refused.output


def test_without_the_login_the_secret_was_set_in_make_up_says_so(user: UserCheckout) -> None:
    user.run("cp stacks/Pulumi.existing.example.yaml stacks/Pulumi.staging.yaml")
    user.run("pulumi stack init staging")
    user.run(for_the_test(SET_KEY, {"<stack>": "staging"}))
    # No login, no passphrase variable: make up's own default backend and passphrase.
    user.run("pulumi logout")
    del user.env["PULUMI_CONFIG_PASSPHRASE_FILE"]
    refused = user.run(MAKE_PREVIEW.format(stack="staging"), check=False)
    assert refused.returncode == 1, refused.describe()
    assert "Dockyard's default" in refused.output, refused.describe()
    assert "do not decrypt for stack staging here (incorrect passphrase)" in refused.output


def recording_pulumi(bin_dir: Path, log: Path) -> None:
    """`bin_dir/pulumi`: appends its arguments to `log` (one per line, a blank line per run),
    then runs the `pulumi` found after it on PATH with the same arguments and stdin."""
    bin_dir.mkdir(parents=True)
    wrapper = bin_dir / "pulumi"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"printf '%s\\n' \"$@\" '' >>'{log}'\n"
        f'PATH=$(printf %s "$PATH" | sed "s#^{bin_dir}:##")\n'
        'exec pulumi "$@"\n'
    )
    wrapper.chmod(0o755)


def test_ci_decrypts_the_stack_files_key_in_its_own_stack(user: UserCheckout) -> None:
    """An empty host list keeps it quick; Pulumi decrypts every config value before the
    program runs, so a key that did not travel with its salt fails the `up`. Every local user
    can read a running process's arguments (`/proc/PID/cmdline`): a recording `pulumi` first
    on PATH shows that no command `ci` runs is given the key."""
    stack_file = user.root / "stacks" / "Pulumi.cikey.yaml"
    stack_file.write_text(yaml.safe_dump({"config": {"dockyard:hosts": []}}))
    user.run("pulumi stack init cikey")
    user.run(for_the_test(SET_KEY, {"<stack>": "cikey"}))
    log, wrappers = user.home / "argv.log", user.home / "recording" / "bin"
    recording_pulumi(wrappers, log)
    ci = user.run(
        f'PATH="{wrappers}:$PATH" .venv/bin/python -m dockyard_resources ci'
        " --stack-file stacks/Pulumi.cikey.yaml -- --collect-only -q",
        check=False,
    )
    assert ci.returncode == 0, ci.describe()
    for step in ("] up", "] preview --expect-no-changes", "] destroy: stack", "] passed"):
        assert step in ci.output, ci.describe()
    calls = log.read_text()
    assert "stack\ninit\n" in calls and "\nup\n" in calls, calls[:2000]
    key = (user.home / ".ssh" / "id_ed25519").read_text()
    body = [line for line in key.splitlines() if line and "-----" not in line]
    assert body and not [line for line in body if line in calls], "the key was in an argv"
