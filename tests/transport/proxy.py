"""A TCP forwarder that can freeze: sockets stay open, nothing passes any more.

That is what a forwarded port looks like when the machine behind it hangs or dies
(QEMU user networking, a bastion): the local TCP peer is fine, the SSH peer is gone.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading


class FreezableProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._frozen = threading.Event()
        self._stopped = threading.Event()
        self._sockets: list[socket.socket] = [self._listener]
        self._relays: list[threading.Event] = []  # one "frozen" flag per connection
        threading.Thread(target=self._accept, daemon=True).start()

    def freeze(self) -> None:
        self._frozen.set()

    def freeze_existing(self) -> None:
        """Freeze the connections made so far; new ones still pass."""
        for frozen in self._relays:
            frozen.set()

    def close(self) -> None:
        self._stopped.set()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._target)
            self._sockets += [client, upstream]
            frozen = threading.Event()
            self._relays.append(frozen)
            threading.Thread(
                target=self._relay, args=(client, upstream, frozen), daemon=True
            ).start()

    def _relay(self, a: socket.socket, b: socket.socket, frozen: threading.Event) -> None:
        selector = selectors.DefaultSelector()
        selector.register(a, selectors.EVENT_READ, b)
        selector.register(b, selectors.EVENT_READ, a)
        while not self._stopped.is_set():
            if self._frozen.is_set() or frozen.is_set():
                self._stopped.wait(0.2)  # hold the sockets open, move nothing
                continue
            for key, _ in selector.select(timeout=0.2):
                try:
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)
                except OSError:
                    return
