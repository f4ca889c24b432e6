"""SSH transport: connect with retry, pinned / first-use host keys, run bash as root,
stream + capture output, atomic uploads, a per-process connection pool.

See docs/transport.md.
"""

from .errors import (
    AuthenticationFailed,
    CommandFailed,
    CommandTimeout,
    ConnectionLost,
    ConnectTimeout,
    HostKeyMismatch,
    PrivateKeyError,
    TransportError,
)
from .hostkeys import fingerprint_of, normalize_key_line
from .output import OnLine
from .pool import close_all, session
from .session import Result, SshSession
from .target import SshTarget

__all__ = [
    "AuthenticationFailed",
    "CommandFailed",
    "CommandTimeout",
    "ConnectTimeout",
    "ConnectionLost",
    "HostKeyMismatch",
    "OnLine",
    "PrivateKeyError",
    "Result",
    "SshSession",
    "SshTarget",
    "TransportError",
    "close_all",
    "fingerprint_of",
    "normalize_key_line",
    "session",
]
