"""SshSession.run against a real sshd: output, exit codes, timeouts, streaming, masking."""

from __future__ import annotations

import threading

import pytest

from dockyard_resources.transport import CommandFailed, CommandTimeout, session
from tests.fixtures.sshd import SshdServer, SudoUser


def test_runs_script_as_root_and_captures_both_streams(sshd: SshdServer) -> None:
    result = session(sshd.target()).run(
        "id -u\necho to-stderr >&2\nprintf 'no newline'", step="hello"
    )
    assert result.exit_code == 0
    assert result.stdout == "0\nno newline"
    assert result.stderr == "to-stderr\n"


def test_failing_exit_code_raises_with_step_code_and_tails(sshd: SshdServer) -> None:
    ssh = session(sshd.target())
    with pytest.raises(CommandFailed) as caught:
        ssh.run(
            "echo progress\nfor i in $(seq 1 100); do echo line-$i >&2; done\nexit 3",
            step="install docker",
        )
    error = caught.value
    assert error.step == "install docker"
    assert error.exit_code == 3
    assert error.stderr_tail.endswith("line-100")
    assert "line-1\n" not in error.stderr_tail  # a tail, not everything
    assert error.stdout_tail == "progress"
    assert "install docker" in str(error) and "3" in str(error) and "line-100" in str(error)


def test_check_false_returns_the_failure(sshd: SshdServer) -> None:
    result = session(sshd.target()).run("echo out; exit 7", step="probe", check=False)
    assert (result.exit_code, result.stdout) == (7, "out\n")


def test_set_e_script_stops_at_first_error(sshd: SshdServer) -> None:
    result = session(sshd.target()).run(
        "set -euo pipefail\nfalse\necho not-reached", step="strict", check=False
    )
    assert result.exit_code == 1
    assert "not-reached" not in result.stdout


def test_commands_cannot_swallow_the_script_from_stdin(sshd: SshdServer) -> None:
    # With a plain `bash -s`, `cat` would eat the remaining lines of the script.
    result = session(sshd.target()).run("cat\necho after-cat", step="stdin")
    assert result.stdout == "after-cat\n"


def test_env_is_exported_with_quoting(sshd: SshdServer) -> None:
    value = 'it\'s $HOME `x` "q"'
    result = session(sshd.target()).run('printf %s "$WEIRD"', step="env", env={"WEIRD": value})
    assert result.stdout == value


def test_script_and_secrets_are_not_in_any_process_argv(sshd: SshdServer) -> None:
    token = "tok-" + "7f3a9c1e5b"
    script = (
        f"# secret {token}\n"
        "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' <\"$f\" 2>/dev/null; echo; done\n"
    )
    result = session(sshd.target()).run(script, step="ps")
    assert "sshd" in result.stdout  # the listing works...
    assert token not in result.stdout  # ...and the script is nowhere in it


def test_timeout_raises_and_kills_the_remote_command(sshd: SshdServer) -> None:
    ssh = session(sshd.target())
    with pytest.raises(CommandTimeout) as caught:
        ssh.run("echo started\nsleep 4321", step="hang", timeout=1)
    assert caught.value.step == "hang"
    assert caught.value.stdout_tail == "started"
    left = ssh.run("pgrep -fx 'sleep 4321' || true", step="check")
    assert left.stdout == ""
    # The session stays usable.
    assert ssh.run("echo ok", step="after").stdout == "ok\n"


def test_large_output_on_both_streams_does_not_deadlock(sshd: SshdServer) -> None:
    size = 20 * 1024 * 1024
    script = f"(yes e | head -c 5000000 >&2) &\nyes 0123456789abcdef | head -c {size}\nwait\n"
    result = session(sshd.target()).run(script, step="big", timeout=300)
    assert len(result.stdout) == size
    assert len(result.stderr) == 5_000_000
    assert result.stdout.startswith("0123456789abcdef\n")


def test_lines_stream_before_the_command_ends(sshd: SshdServer) -> None:
    ssh = session(sshd.target())
    flag = f"/tmp/dockyard-stream-{threading.get_ident()}"
    seen: list[tuple[str, str]] = []

    def on_line(stream: str, line: str) -> None:
        seen.append((stream, line))
        if line == "waiting":
            # The command only ends once this line has been seen: if lines were only
            # delivered at the end, the run would time out instead.
            ssh.run(f"touch {flag}", step="release")

    result = ssh.run(
        f"rm -f {flag}\necho waiting\nwhile [ ! -e {flag} ]; do sleep 0.1; done\n"
        f"echo warn >&2\necho released\nrm -f {flag}",
        step="stream",
        timeout=60,
        on_line=on_line,
    )
    # Order across the two streams is not defined, order within one stream is.
    assert seen[0] == ("stdout", "waiting")
    assert sorted(seen[1:]) == [("stderr", "warn"), ("stdout", "released")]
    assert result.stdout == "waiting\nreleased\n"


def test_secrets_are_masked_in_errors_and_streamed_lines(sshd: SshdServer) -> None:
    secret = "hunter2-9d8c7b"
    lines: list[str] = []
    ssh = session(sshd.target())
    with pytest.raises(CommandFailed) as caught:
        ssh.run(
            f"echo token={secret}\necho auth failed for {secret} >&2\nexit 5",
            step="login",
            secrets=[secret],
            on_line=lambda _stream, line: lines.append(line),
        )
    error = caught.value
    for text in (str(error), error.stderr_tail, error.stdout_tail, *lines):
        assert secret not in text
    assert error.stderr_tail == "auth failed for ***"
    assert lines == ["token=***", "auth failed for ***"]


def test_target_password_is_masked_too(sshd: SshdServer, sudo_user: SudoUser) -> None:
    target = sshd.target(user=sudo_user.name, private_key=None, password=sudo_user.password)
    with pytest.raises(CommandFailed) as caught:
        session(target).run(f"echo {sudo_user.password} >&2; exit 1", step="leak")
    assert sudo_user.password not in str(caught.value)
    assert "***" in caught.value.stderr_tail
