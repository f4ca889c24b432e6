"""Open one authenticated paramiko connection, retrying while the host boots.

Retried until the deadline: refused / unreachable / timed-out TCP, an SSH banner that
does not come, EOF or reset during key exchange, and rejected credentials (cloud-init
may not have written authorized_keys yet). Not retried: a host key mismatch, an
unreadable private key, having no credential to offer, anything unexpected.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import paramiko
from tenacity import RetryCallState, Retrying, retry_if_exception, wait_exponential

from .errors import AuthenticationFailed, ConnectTimeout, HostKeyMismatch, TransportError
from .hostkeys import (
    RecordingPolicy,
    fingerprint_of,
    hostkey_name,
    key_line_of,
    parse_key_line,
    pkey_from_line,
)
from .keys import load_key_file, load_private_key
from .masking import mask, mask_pieces
from .quiet import silence_paramiko
from .route import open_stream
from .target import JUMP_HOST, ResolvedTarget

log = logging.getLogger(__name__)
# This module reports the last failed attempt itself when it gives up.
silence_paramiko()

# Per-attempt limits: each socket operation is bounded even if the deadline is far.
TCP_CONNECT_TIMEOUT = 10.0
BANNER_TIMEOUT = 15.0
AUTH_TIMEOUT = 20.0
CHANNEL_TIMEOUT = 15.0
# Shorter than the limits above would make a slow but healthy host look dead.
_MIN_ATTEMPT_TIMEOUT = 2.0

_TRANSIENT_SSH_MESSAGES = (
    "error reading ssh protocol banner",
    "no existing session",
    "negotiation failed",
    "connection reset",
    "eof",
)


@dataclass
class Connected:
    client: paramiko.SSHClient
    host_key: str  # "type base64" the host presented
    attempts: int


def connect(resolved: ResolvedTarget, pins: Sequence[str]) -> Connected:
    """Connect and authenticate before `resolved.target.connect_deadline` passes.

    `pins`: accepted host key lines; empty means trust on first use (the key seen is
    returned, the caller keeps it).
    """
    target = resolved.target
    pkey = _client_key(resolved)
    deadline = time.monotonic() + target.connect_deadline
    attempts = 0

    def attempt() -> Connected:
        nonlocal attempts
        attempts += 1
        remaining = deadline - time.monotonic()
        return _connect_once(resolved, pins, pkey, remaining, attempts)

    base_wait = wait_exponential(multiplier=0.5, min=0.5, max=10)

    def wait(state: RetryCallState) -> float:
        # Never sleep past the deadline: the last attempt should still get a chance.
        return max(0.0, min(base_wait(state), deadline - time.monotonic() - 0.5))

    def stop(state: RetryCallState) -> bool:
        return deadline - time.monotonic() < 0.5

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.info("ssh %s not ready (attempt %d): %s", resolved.where, attempts, _describe(exc))

    retrying = Retrying(
        retry=retry_if_exception(_is_transient),
        wait=wait,
        stop=stop,
        before_sleep=before_sleep,
        reraise=True,
    )
    secrets = mask_pieces(target.secrets())
    try:
        return retrying(attempt)
    except paramiko.AuthenticationException as exc:
        raise AuthenticationFailed(
            resolved.where, attempts, mask(_describe(exc), secrets), resolved.user
        ) from None
    except (TransportError, paramiko.BadHostKeyException):
        raise
    except Exception as exc:
        if _is_transient(exc):
            raise ConnectTimeout(
                resolved.where, attempts, mask(_describe(exc), secrets), target.connect_deadline
            ) from None
        raise TransportError(
            f"ssh to {resolved.where} failed: {mask(_describe(exc), secrets)}"
        ) from None


def _client_key(resolved: ResolvedTarget) -> paramiko.PKey | None:
    target = resolved.target
    if target.private_key:
        return load_private_key(target.private_key, target.passphrase, "privateKey")
    if target.key_file:
        return load_key_file(target.key_file, target.passphrase)
    return None


def _connect_once(
    resolved: ResolvedTarget,
    pins: Sequence[str],
    pkey: paramiko.PKey | None,
    remaining: float,
    attempt: int,
) -> Connected:
    target = resolved.target
    step_timeout = max(_MIN_ATTEMPT_TIMEOUT, remaining)
    client = paramiko.SSHClient()
    policy = RecordingPolicy()
    client.set_missing_host_key_policy(policy)
    # Only the pins are known: nothing is read from or written to known_hosts here.
    name = hostkey_name(resolved.hostname, resolved.port)
    for line in pins:
        key_type, _ = parse_key_line(line)
        client.get_host_keys().add(name, key_type, pkey_from_line(line))
    # After the explicit key, the IdentityFiles of ~/.ssh/config (ssh_config mode).
    key_files = list(resolved.key_files)
    try:
        # Through the jump host or ProxyCommand, if any; paramiko owns it from here on.
        stream = open_stream(resolved, min(CHANNEL_TIMEOUT, step_timeout))
        client.connect(
            resolved.hostname,
            port=resolved.port,
            username=resolved.user,
            password=target.password,
            pkey=pkey,
            key_filename=cast(Any, key_files or None),
            passphrase=target.passphrase,
            allow_agent=target.use_agent,
            look_for_keys=target.look_for_keys,
            timeout=min(TCP_CONNECT_TIMEOUT, step_timeout),
            banner_timeout=min(BANNER_TIMEOUT, step_timeout),
            auth_timeout=min(AUTH_TIMEOUT, step_timeout),
            channel_timeout=CHANNEL_TIMEOUT,
            sock=cast(Any, stream),
        )
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise HostKeyMismatch(
            resolved.where,
            " or ".join(fingerprint_of(p) for p in pins),
            fingerprint_of(key_line_of(exc.key)),
            "jumpHost.hostKey" if resolved.target.role == JUMP_HOST else "hostKey",
        ) from None
    except paramiko.SSHException as exc:
        client.close()
        if "no authentication methods available" in str(exc).lower():
            raise AuthenticationFailed(
                resolved.where,
                attempt,
                "no credential to offer (give a private key, a password, or an ssh-agent key)",
                resolved.user,
            ) from None
        raise
    except BaseException:
        client.close()
        raise
    transport = client.get_transport()
    assert transport is not None  # connect() succeeded
    _enable_tcp_keepalive(transport.sock)
    seen = key_line_of(transport.get_remote_server_key())
    return Connected(client=client, host_key=seen, attempts=attempt)


def _enable_tcp_keepalive(sock: object) -> None:
    """Kernel-level keepalive in addition to the SSH-level probes of the session: it
    catches a peer that vanished without a FIN on a direct connection."""
    if not isinstance(sock, socket.socket):
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, TransportError | paramiko.BadHostKeyException):
        return False
    if isinstance(exc, paramiko.AuthenticationException):
        return True
    if isinstance(exc, EOFError | OSError):
        return True
    if isinstance(exc, paramiko.SSHException):
        text = str(exc).lower()
        return any(marker in text for marker in _TRANSIENT_SSH_MESSAGES)
    return False


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    text = str(exc) or repr(exc)
    return f"{type(exc).__name__}: {text}"
