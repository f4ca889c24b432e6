"""What every Dockyard provider does with its inputs: spot unknowns, compare numbers the way
Pulumi sends them, and check the `connection` input with the config layer's own rules."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pulumi.output import Unknown
from pulumi.runtime import rpc

from dockyard_resources.config import values

# Keys of `connection` that are text when present (secrets included).
_TEXT_KEYS = ("privateKey", "privateKeyFile", "privateKeyPassphrase", "password")


def is_unknown(value: Any) -> bool:
    """A value not known during preview: the dynamic-provider server hands check and diff
    `Unknown` objects; the raw wire string counts too."""
    return isinstance(value, Unknown) or (isinstance(value, str) and value == rpc.UNKNOWN)


def has_unknown(value: Any) -> bool:
    """`value` or anything nested in it is unknown."""
    if isinstance(value, Mapping):
        return any(has_unknown(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(has_unknown(v) for v in value)
    return is_unknown(value)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def whole_number(value: Any) -> Any:
    """Pulumi sends every number as a float: 24.0 -> 24 (anything else unchanged)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def normal(value: Any) -> Any:
    """Numbers as floats and nested values structurally, for comparing olds with news."""
    if is_number(value):
        return float(value)
    if isinstance(value, Mapping):
        return {k: normal(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [normal(v) for v in value]
    return value


def checked(problems: list[tuple[str, str]], key: str, check: Any, value: Any) -> None:
    if value is None or is_unknown(value):
        return
    try:
        check(value)
    except ValueError as exc:
        problems.append((key, str(exc)))


def _port(value: Any) -> None:
    if not is_number(value) or value != int(value) or not 0 < int(value) < 65536:
        raise ValueError(f"must be an integer 1-65535, got {value!r}")


def _seconds(value: Any) -> None:
    if not is_number(value) or not 0 < value <= 3600:
        raise ValueError(f"must be a number of seconds 1-3600, got {value!r}")


def _flag(value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {value!r}")


def _text(value: Any) -> None:
    if not isinstance(value, str):
        raise ValueError("must be a string")


def _key_file_problem(path: Any, passphrase: Any) -> str | None:
    """Why the key file cannot be used, found at preview: missing, unreadable, encrypted
    without the passphrase, or not a key. The key itself never appears."""
    if not isinstance(path, str) or is_unknown(passphrase):
        return None
    # paramiko only where a key file is checked: the networks provider never loads it.
    from dockyard_resources.transport import PrivateKeyError  # noqa: PLC0415
    from dockyard_resources.transport.keys import load_key_file  # noqa: PLC0415

    try:
        values.private_key_file(path)
        load_key_file(path, passphrase if isinstance(passphrase, str) else None)
    except ValueError as exc:
        return str(exc)
    except PrivateKeyError as exc:
        fix = (
            "; give the passphrase with"
            " `pulumi config set --secret dockyard:sshPrivateKeyPassphrase`"
            if "passphrase" in str(exc)
            else ""
        )
        return f"{exc}{fix}"
    return None


def _jump_problems(conn: Mapping[str, Any]) -> list[tuple[str, str]]:
    jump = conn.get("jumpHost")
    if jump is None or is_unknown(jump):
        return []
    if not isinstance(jump, Mapping):
        return [("connection.jumpHost", "must be a mapping {host, port, user, hostKey}")]
    problems: list[tuple[str, str]] = []
    for key, why in (
        ("host", "is required (the jump host's address)"),
        (
            "hostKey",
            "is required: a jump host is never trusted on first use; give its public"
            " key line, e.g. from `ssh-keyscan -t ed25519 JUMPHOST`",
        ),
    ):
        if not jump.get(key):
            problems.append((f"connection.jumpHost.{key}", why))
    checked(problems, "connection.jumpHost.host", values.address, jump.get("host"))
    checked(problems, "connection.jumpHost.port", _port, jump.get("port"))
    checked(problems, "connection.jumpHost.user", values.user_name, jump.get("user"))
    checked(problems, "connection.jumpHost.hostKey", values.host_key, jump.get("hostKey") or None)
    if not conn.get("hostKey") and not conn.get("sshConfig"):
        problems.append(
            (
                "connection.hostKey",
                "is required with jumpHost: a host behind a jump host is never trusted on"
                " first use; give its public key line",
            )
        )
    return problems


def connection_problems(conn: Any) -> list[tuple[str, str]]:
    """Every problem of a `connection` input as (key path, reason), by the stack file's
    rules: an address, a user name, a port, an OpenSSH host key line, a usable key file, a
    pinned jump host."""
    if is_unknown(conn):
        return []
    if not isinstance(conn, Mapping):
        return [("connection", "must be a mapping {host, port, user, ...}")]
    problems: list[tuple[str, str]] = []
    if conn.get("host") is None:
        problems.append(("connection.host", "is required (the address to SSH to)"))
    checked(problems, "connection.host", values.address, conn.get("host"))
    checked(problems, "connection.port", _port, conn.get("port"))
    checked(problems, "connection.user", values.user_name, conn.get("user"))
    checked(problems, "connection.hostKey", values.host_key, conn.get("hostKey") or None)
    checked(problems, "connection.connectDeadline", _seconds, conn.get("connectDeadline"))
    checked(problems, "connection.sshConfig", _flag, conn.get("sshConfig"))
    for key in _TEXT_KEYS:
        checked(problems, f"connection.{key}", _text, conn.get(key))
    key_file = _key_file_problem(conn.get("privateKeyFile"), conn.get("privateKeyPassphrase"))
    if key_file:
        problems.append(("connection.privateKeyFile", key_file))
    return problems + _jump_problems(conn)
