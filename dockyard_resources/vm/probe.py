"""One SSH probe with hard timeouts at every stage: TCP, banner, key exchange, auth, command.

Used while a VM boots: QEMU's forwarded port accepts TCP even when the guest's
sshd is not up yet, so an unbounded probe could hang for minutes. The host key
is checked against the pin before authenticating.
"""

from __future__ import annotations

import io
import socket
import time

import paramiko

from dockyard_resources.transport.quiet import silence_paramiko
from dockyard_resources.vm.keys import fingerprint, key_type_and_blob

# Refused banners are the normal state of a booting VM: only the final outcome is reported.
silence_paramiko()


class ProbeHostKeyMismatch(RuntimeError):
    """The guest answered with another host key than the pinned one: never retried."""


def run_probe(
    *,
    host: str,
    port: int,
    user: str,
    private_key: str,
    host_key: str,
    command: str,
    timeout: float = 10.0,
) -> tuple[int, str]:
    """Run `command`, return (exit status, stdout). Raises OSError/SSHException on failure."""
    pkey = paramiko.Ed25519Key.from_private_key(io.StringIO(private_key))
    sock = socket.create_connection((host, port), timeout=timeout)
    transport = paramiko.Transport(sock)
    try:
        transport.banner_timeout = timeout
        transport.handshake_timeout = timeout
        transport.auth_timeout = timeout
        transport.start_client(timeout=timeout)
        seen = transport.get_remote_server_key()
        seen_line = f"{seen.get_name()} {seen.get_base64()}"
        if seen_line != key_type_and_blob(host_key):
            raise ProbeHostKeyMismatch(
                f"{host}:{port} presented {fingerprint(seen_line)}, "
                f"expected pinned {fingerprint(host_key)}"
            )
        transport.auth_publickey(user, pkey)
        channel = transport.open_session(timeout=timeout)
        channel.settimeout(timeout)
        channel.exec_command(command)
        deadline = time.monotonic() + timeout
        chunks: list[bytes] = []
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError(f"probe command did not finish in {timeout} s")
            data = channel.recv(65536)
            if not data:
                break
            chunks.append(data)
        if not channel.status_event.wait(timeout):
            raise TimeoutError(f"no exit status within {timeout} s")
        return channel.exit_status, b"".join(chunks).decode(errors="replace")
    finally:
        transport.close()
