"""The transport's counters and trace file, against a real sshd: what a benchmark reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dockyard_resources.transport import session, trace
from tests.fixtures.sshd import SshdServer


def test_counters_count_connections_commands_and_bytes(sshd: SshdServer) -> None:
    before = trace.totals()
    ssh = session(sshd.target())
    ssh.run("printf 12345", step="five bytes")
    ssh.run("printf abc >&2", step="three bytes")
    ssh.upload(b"x" * 1000, "/tmp/dockyard-trace-upload")
    after = trace.totals()
    assert after.connections - before.connections == 1  # one pooled connection for all
    assert after.commands - before.commands == 3
    assert after.bytes_received - before.bytes_received == 8
    # The scripts travel on stdin: at least their text plus the uploaded kilobyte.
    assert after.bytes_sent - before.bytes_sent > 1000 + len("printf 12345")
    assert after.command_seconds > before.command_seconds


def test_trace_file_tags_commands_with_their_resource_and_holds_no_script(
    sshd: SshdServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "trace.jsonl"
    monkeypatch.setenv(trace.TRACE_ENV, str(path))
    with trace.for_resource("DockyardInstance h/dy1_"):
        session(sshd.target()).run("echo secret-script-text >/dev/null", step="install it")
    session(sshd.target()).run("true", step="untagged")
    events = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e["kind"] for e in events] == ["connect", "command", "command"]
    connect, tagged, untagged = events
    assert connect["resource"] == "DockyardInstance h/dy1_"  # connected for its first command
    assert (tagged["step"], tagged["resource"]) == ("install it", "DockyardInstance h/dy1_")
    assert (untagged["step"], untagged["resource"]) == ("untagged", "")
    assert tagged["started"] <= tagged["ended"] <= untagged["started"]
    assert "secret-script-text" not in path.read_text()
