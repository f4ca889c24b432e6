"""How the byte stream to a host is made: directly (paramiko opens a TCP socket), through a
jump host's `direct-tcpip` channel (what `ssh -J` does), or through a ProxyCommand."""

from __future__ import annotations

import shlex

import paramiko
from paramiko.common import OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

from .errors import TransportError
from .target import ResolvedTarget

Stream = paramiko.Channel | paramiko.ProxyCommand
_LOCAL_END = ("127.0.0.1", 0)  # the originator sshd logs; nothing listens there


def open_stream(resolved: ResolvedTarget, timeout: float) -> Stream | None:
    """A stream to `resolved`'s address, or None when paramiko should connect directly."""
    if resolved.jump is not None:
        return _through_jump(resolved, timeout)
    if resolved.proxy_command:
        # As ssh runs it: `exec` in /bin/sh, so that quoting, pipes and `~` work.
        return paramiko.ProxyCommand(
            shlex.join(["/bin/sh", "-c", f"exec {resolved.proxy_command}"])
        )
    return None


def _through_jump(resolved: ResolvedTarget, timeout: float) -> paramiko.Channel:
    # pool -> session -> connect -> route: imported here, when the pool exists.
    from .pool import session  # noqa: PLC0415

    assert resolved.jump is not None
    jump = session(resolved.jump)  # pooled: hosts behind one jump host share its connection
    transport = jump.transport()
    destination = (resolved.hostname, resolved.port)
    try:
        return transport.open_channel("direct-tcpip", destination, _LOCAL_END, timeout=timeout)
    except paramiko.ChannelException as exc:
        if exc.code == OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED:
            raise TransportError(
                f"{resolved.jump.where} refuses to forward to {resolved.address} ({exc.text}):"
                f" allow TCP forwarding for {resolved.jump.user} there (sshd's"
                " AllowTcpForwarding)"
            ) from None
        # Refused or unreachable from the jump host: the host may still be booting (retried).
        raise ConnectionRefusedError(
            f"{resolved.jump.where} cannot reach {resolved.address}: {exc.text}"
        ) from None
    except (paramiko.SSHException, EOFError, OSError) as exc:
        jump.drop_connection(transport)  # the next attempt reconnects to the jump host
        raise ConnectionResetError(f"{resolved.jump.where}: connection lost: {exc}") from None
