"""Typed transport errors. Messages never contain keys, passphrases or passwords."""

from __future__ import annotations

from dockyard_resources.errors import DockyardError


class TransportError(DockyardError):
    """Base of every error raised by dockyard_resources.transport."""


class PrivateKeyError(TransportError):
    """The private key could not be read (bad format, wrong or missing passphrase)."""


class HostKeyMismatch(TransportError):
    """The host presented a key other than the pinned one. Never retried."""

    def __init__(self, address: str, expected: str, seen: str, setting: str = "hostKey") -> None:
        self.address = address
        self.expected = expected
        self.seen = seen
        super().__init__(
            f"host key mismatch for {address}: expected {expected}, host presented {seen}. "
            f"Either the host was rebuilt (update the pinned {setting}) or someone is in the way."
        )


class _ConnectGaveUp(TransportError):
    def __init__(self, what: str, address: str, attempts: int, last_error: str) -> None:
        self.address = address
        self.attempts = attempts
        self.last_error = last_error
        super().__init__(f"{what} {address} after {attempts} attempt(s); last error: {last_error}")


class ConnectTimeout(_ConnectGaveUp):
    """The host did not answer SSH before the connect deadline."""

    def __init__(self, address: str, attempts: int, last_error: str, deadline: float) -> None:
        self.deadline = deadline
        super().__init__(
            f"no SSH connection within {deadline:g}s to", address, attempts, last_error
        )


class AuthenticationFailed(_ConnectGaveUp):
    """The host answered but refused every credential until the deadline (or no credential
    was available at all)."""

    def __init__(self, address: str, attempts: int, last_error: str, user: str) -> None:
        self.user = user
        super().__init__(f"authentication as {user!r} failed at", address, attempts, last_error)


class ConnectionLost(TransportError):
    """An established connection died while a command or upload was using it."""


class CommandFailed(TransportError):
    """A remote script exited non-zero. Tails are masked."""

    def __init__(self, step: str, exit_code: int, stderr_tail: str, stdout_tail: str) -> None:
        self.step = step
        self.exit_code = exit_code
        self.stderr_tail = stderr_tail
        self.stdout_tail = stdout_tail
        tail = stderr_tail.strip() or stdout_tail.strip() or "(no output)"
        super().__init__(f"step {step!r} failed with exit code {exit_code}:\n{tail}")


class CommandTimeout(TransportError):
    """A remote script ran past its timeout; its channel was closed and, where the host's
    `timeout` command could, its processes were killed."""

    def __init__(self, step: str, timeout: float, stderr_tail: str, stdout_tail: str) -> None:
        self.step = step
        self.timeout = timeout
        self.stderr_tail = stderr_tail
        self.stdout_tail = stdout_tail
        tail = stderr_tail.strip() or stdout_tail.strip() or "(no output)"
        super().__init__(f"step {step!r} timed out after {timeout:g}s:\n{tail}")
