"""Copy bytes between a local client socket and an SSH channel, both ways, until one side
is done for good.

Half-closes are passed on, not taken as the end: a client that shuts its sending side
(`docker exec -i` after its stdin, an HTTP client after its request) still reads the
answer, and a command that closes its stdout may still be reading. The relay ends when the
command has exited (or its channel closed: connection lost) or the client is gone for
good (closed or killed: it can read nothing any more); then both are closed, so neither
a channel nor a thread outlives its client.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading

import paramiko

CHUNK = 65536
_BROKEN = (OSError, EOFError, paramiko.SSHException)


def relay(client: socket.socket, channel: paramiko.Channel) -> None:
    upstream = threading.Thread(
        target=_client_to_channel, args=(client, channel), name="tunnel-up", daemon=True
    )
    upstream.start()
    try:
        _channel_to_client(channel, client)
    finally:
        # Wakes the upstream thread wherever it waits (recv, or the hang-up poll).
        with contextlib.suppress(OSError):
            client.shutdown(socket.SHUT_RDWR)
        channel.close()
        upstream.join()


def _client_to_channel(client: socket.socket, channel: paramiko.Channel) -> None:
    try:
        while data := client.recv(CHUNK):
            channel.sendall(data)
        channel.shutdown_write()  # the client's EOF; it may still be reading the answer
        wait_for_hangup(client)
    except _BROKEN:
        pass
    finally:
        channel.close()  # the client is gone: nothing the command says can reach it


def _channel_to_client(channel: paramiko.Channel, client: socket.socket) -> None:
    try:
        while data := channel.recv(CHUNK):
            client.sendall(data)
        client.shutdown(socket.SHUT_WR)  # the command's EOF; it may still be reading
        channel.status_event.wait()  # set when the command exits or the channel closes
    except _BROKEN:
        pass


def wait_for_hangup(sock: socket.socket) -> None:
    """Until `sock` can neither send nor receive: its peer closed it (a half-close is not
    enough) or it was shut down here. POLLHUP and POLLERR are reported without asking."""
    poller = select.poll()
    poller.register(sock, 0)
    poller.poll()
