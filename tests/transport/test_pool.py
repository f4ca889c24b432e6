"""The per-process pool: reuse, reconnect, dead-peer detection, thread safety."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from dockyard_resources.transport import ConnectionLost, close_all, session
from tests.fixtures.sshd import SshdServer
from tests.transport.proxy import FreezableProxy


def test_same_target_reuses_one_connection(sshd: SshdServer) -> None:
    first = session(sshd.target())
    first.run("true", step="one")
    transport = first.transport()
    second = session(sshd.target())
    second.run("true", step="two")
    assert second is first
    assert second.transport() is transport
    assert first.connects == 1


def test_different_user_or_pin_gets_its_own_session(sshd: SshdServer) -> None:
    plain = session(sshd.target())
    pinned = session(sshd.target(host_key=sshd.host_key_line()))
    assert pinned is not plain


def test_reconnects_after_the_server_drops_the_connection(sshd: SshdServer) -> None:
    ssh = session(sshd.target())
    ssh.run("true", step="before")
    sshd.drop_connections()
    assert ssh.run("echo again", step="after").stdout == "again\n"
    assert ssh.connects == 2
    assert session(sshd.target()) is ssh


def test_close_all_empties_the_pool(sshd: SshdServer) -> None:
    ssh = session(sshd.target())
    close_all()
    assert session(sshd.target()) is not ssh


def test_threads_share_one_session(sshd: SshdServer) -> None:
    ssh = session(sshd.target())
    results: dict[int, list[str]] = {}
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            own = session(sshd.target())
            results[n] = [
                own.run(f"sleep 0.2; echo {n}-{i}", step=f"t{n}").stdout for i in range(2)
            ]
        except BaseException as exc:  # collected and re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert results == {n: [f"{n}-{i}\n" for i in range(2)] for n in range(12)}
    assert ssh.connects == 1


def test_command_leaving_stdout_open_still_returns(sshd: SshdServer) -> None:
    # A background process keeps the output pipe open after the script exits.
    result = session(sshd.target()).run("sleep 30 &\necho done", step="bg", timeout=60)
    assert (result.exit_code, result.stdout) == (0, "done\n")


@pytest.fixture
def proxy(sshd: SshdServer) -> Iterator[FreezableProxy]:
    forwarder = FreezableProxy(sshd.host, sshd.port)
    yield forwarder
    forwarder.close()


def test_half_open_forwarded_port_fails_instead_of_hanging(
    sshd: SshdServer, proxy: FreezableProxy
) -> None:
    ssh = session(sshd.target(port=proxy.port, keepalive=1))
    assert ssh.run("echo alive", step="before").stdout == "alive\n"
    ssh_lines: list[str] = []

    def freeze_when_started(_stream: str, line: str) -> None:
        ssh_lines.append(line)
        proxy.freeze()

    # Without liveness probes this would wait for the 10-minute command timeout.
    with pytest.raises(ConnectionLost):
        ssh.run("echo started; sleep 120", step="hang", timeout=600, on_line=freeze_when_started)
    assert ssh_lines == ["started"]
