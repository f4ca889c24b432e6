"""Checks of single configuration values.

Each function takes the raw value, returns it parsed or normalised, and raises `ValueError`
with a message that says what is wrong and how to fix it (the key path is added by the caller).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import posixpath
import re
import struct
from typing import Any, Final

from dockyard_resources.config.urls import public_url

PRIVATE_RANGES: Final = (
    ipaddress.IPv4Network("10.0.0.0/8"),
    ipaddress.IPv4Network("172.16.0.0/12"),
    ipaddress.IPv4Network("192.168.0.0/16"),
)
_PRIVATE_TEXT: Final = "10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16"

# Longest network prefix that still leaves room for a gateway and containers.
MAX_PREFIX_LEN: Final = 30

_HOST_NAME_RE: Final = re.compile(r"[a-z0-9-]{1,40}")
_DNS_LABEL_RE: Final = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_USER_RE: Final = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")
_PREFIX_RE: Final = re.compile(r"[a-z][a-z0-9]{0,6}_")
_ROOT_CHARS_RE: Final = re.compile(r"[A-Za-z0-9._+/-]+")
_SHA256_RE: Final = re.compile(r"[0-9a-fA-F]{64}")
_AWS_REGION_RE: Final = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]+")
_AWS_SUBNET_RE: Final = re.compile(r"subnet-[0-9a-f]{8,17}")
_VERSION_RE: Final = re.compile(r"[0-9][0-9A-Za-z.+~-]{0,39}")
# `project/stack/resource` of a Pulumi resource (Pulumi's own name rules, plus the slashes).
_OWNER_RE: Final = re.compile(r"[A-Za-z0-9_.-]{1,100}(/[A-Za-z0-9_.-]{1,100}){2}")

# Sockets live under an instance's root; a unix socket path is limited to 107 bytes.
MAX_ROOT_LEN: Final = 64
# An install builds a new root as `<root><ROOT_STAGING_MARK>.XXXXXX` beside it and renames it
# into place; a root whose path holds the mark could be taken for such a leftover.
ROOT_STAGING_MARK: Final = ".dockyard-new"

# Directories an instance root may never be (it gets chowned, and destroy removes it). The
# on-host checks (hostops/instance_guards.sh) catch what no list can: an existing directory
# without Dockyard's marker, symlinks, and parents a local user could swap.
SYSTEM_DIRS: Final = frozenset(
    {
        "/",
        "/bin",
        "/boot",
        "/dev",
        "/etc",
        "/home",
        "/lib",
        "/lib32",
        "/lib64",
        "/libx32",
        "/media",
        "/mnt",
        "/opt",
        "/proc",
        "/run",
        "/sbin",
        "/srv",
        "/sys",
        "/tmp",
        "/usr",
        "/usr/local",
        "/var",
        "/var/cache",
        "/var/lib",
        "/var/local",
        "/var/log",
        "/var/mail",
        "/var/opt",
        "/var/spool",
        "/var/tmp",
    }
)
# Trees an instance root may neither be nor lie inside, with the reason shown to the user.
FORBIDDEN_TREES: Final = {
    "/proc": "a kernel filesystem",
    "/sys": "a kernel filesystem",
    "/dev": "device nodes",
    "/run": "a tmpfs cleared at boot",
    "/var/run": "a link to /run, cleared at boot",
    "/var/lock": "a link to /run/lock, cleared at boot",
    "/tmp": "cleared at boot and writable by everyone",
    "/var/tmp": "a scratch directory writable by everyone",
    "/etc": "system configuration",
    "/usr": "owned by the package manager",
    "/boot": "the boot partition",
    "/bin": "owned by the package manager",
    "/sbin": "owned by the package manager",
    "/lib": "owned by the package manager",
    "/lib32": "owned by the package manager",
    "/lib64": "owned by the package manager",
    "/libx32": "owned by the package manager",
    "/snap": "owned by snapd",
    "/lost+found": "the file system's own recovery directory",
    "/root": "root's home directory",
    "/var/log": "the system's logs",
    "/var/cache": "other software's caches",
    "/var/spool": "other software's queues",
    "/var/mail": "users' mail",
    "/var/backups": "the system's backups",
    "/var/lib/dpkg": "the package manager's database",
    "/var/lib/apt": "the package manager's state",
    "/var/lib/systemd": "systemd's state",
    "/var/lib/docker": "the system Docker's data",
    "/var/lib/containerd": "the system containerd's data",
    "/var/lib/sysbox": "sysbox's data",
    "/var/lib/sysboxfs": "sysbox-fs's mount point",
    "/var/lib/dockyard-sysbox": "the shared sysbox service's data",
    "/var/lib/dockyard": "Dockyard's network claims",
    "/var/lib/kubelet": "Kubernetes' data",
    "/var/lib/lxc": "LXC's containers",
    "/var/lib/lxd": "LXD's containers",
    "/usr/local/lib/dockyard": "Dockyard's shared binaries",
    "/var/cache/dockyard": "Dockyard's artifact cache",
}
# Directories whose direct children are other people's homes: never an instance root.
HOME_PARENTS: Final = ("/home",)

_HOST_KEY_TYPES: Final = frozenset(
    {
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    }
)


def _text(value: Any, example: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string like {example} (got {value!r})")
    return value


def host_name(value: Any) -> str:
    text = _text(value, "build-1")
    if not _HOST_NAME_RE.fullmatch(text):
        raise ValueError(
            f"{text!r} is not a valid host name; use 1-40 lowercase letters, digits or '-'"
            " (e.g. build-1)"
        )
    return text


def address(value: Any) -> str:
    text = _text(value, "203.0.113.10 or build-1.example.com")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    labels = text.removesuffix(".").split(".")
    if len(text) > 253 or not all(_DNS_LABEL_RE.fullmatch(label) for label in labels):
        raise ValueError(
            f"{text!r} is neither an IP address nor a DNS name; give the machine's address"
            " (e.g. 203.0.113.10 or build-1.example.com)"
        )
    return text


def user_name(value: Any) -> str:
    text = _text(value, "root")
    if not _USER_RE.fullmatch(text):
        raise ValueError(
            f"{text!r} is not a valid user name; use 1-32 characters: lowercase letters,"
            " digits, '_', '-' or '.', starting with a letter or '_'"
        )
    return text


def host_key(value: Any) -> str:
    """An OpenSSH public key line (`type base64 [comment]`) whose blob matches its type."""
    text = _text(value, "'ssh-ed25519 AAAAC3Nza...'").strip()
    fix = (
        "paste the host's public key line, e.g. the output of"
        " `ssh-keyscan -t ed25519 HOST` without the host name, or omit hostKey to trust the"
        " first key seen"
    )
    parts = text.split()
    if len(parts) < 2 or parts[0] not in _HOST_KEY_TYPES:
        raise ValueError(f"{text[:40]!r} is not an OpenSSH public key line; {fix}")
    try:
        blob = base64.b64decode(parts[1], validate=True)
        (length,) = struct.unpack(">I", blob[:4])
        embedded = blob[4 : 4 + length].decode("ascii")
    except (binascii.Error, struct.error, UnicodeDecodeError):
        raise ValueError(f"the key data of {parts[0]} is not valid base64; {fix}") from None
    if embedded != parts[0]:
        raise ValueError(f"the key data is a {embedded!r} key, not {parts[0]!r}; {fix}")
    return f"{parts[0]} {parts[1]}"


def private_key_file(value: Any) -> str:
    """A private key file on the machine running Pulumi: an absolute or `~/` path. Only the
    path is kept in the state; the file is read when connecting."""
    text = _text(value, "~/.ssh/id_ed25519")
    if "PRIVATE KEY" in text or "\n" in text:
        raise ValueError(
            "holds a key's text, not a file path; keep the text out of the stack file: give the"
            " file's path, or store the key with"
            " `pulumi config set --secret dockyard:sshPrivateKey < KEYFILE`"
        )
    if text.endswith(".pub"):
        raise ValueError(f"{text!r} is a public key; give the private half ({text[:-4]!r})")
    if not text.startswith(("/", "~/")) or any(ord(c) < 32 for c in text):
        raise ValueError(
            f"{text!r} is not an absolute or ~/ path; give the key file on the machine running"
            " Pulumi, e.g. ~/.ssh/id_ed25519"
        )
    return text


def prefix(value: Any) -> str:
    text = _text(value, "dy1_")
    if not _PREFIX_RE.fullmatch(text):
        raise ValueError(
            f"{text!r} is not a valid prefix; use a lowercase letter, up to 6 more lowercase"
            " letters or digits, then '_' (e.g. dy1_), so that the bridge name"
            " '<prefix>docker0' fits Linux's 15-character limit"
        )
    return text


def root_dir(value: Any) -> str:
    text = _text(value, "/dy1")
    if not text.startswith("/"):
        raise ValueError(f"{text!r} is not absolute; use an absolute path such as /dy1")
    normal = "/" + posixpath.normpath(text).lstrip("/")
    if normal != text:
        raise ValueError(f"{text!r} is not normalised; write it as {normal!r}")
    if not _ROOT_CHARS_RE.fullmatch(text):
        raise ValueError(
            f"{text!r} contains unsupported characters; use letters, digits, '.', '_', '+', '-'"
        )
    if len(text) > MAX_ROOT_LEN:
        raise ValueError(
            f"{text!r} is longer than {MAX_ROOT_LEN} characters; use a shorter path so the"
            " daemon's sockets under it stay within the unix socket path limit"
        )
    if ROOT_STAGING_MARK in text:
        raise ValueError(
            f"{text!r} contains {ROOT_STAGING_MARK!r}, the name Dockyard gives the temporary"
            " directory it builds a root in; use a path without it such as"
            f" {text.replace(ROOT_STAGING_MARK, '-new')!r}"
        )
    if text in SYSTEM_DIRS:
        raise ValueError(
            f"{text!r} is a system directory; use a dedicated directory such as /dy1"
            " (destroy removes the whole root)"
        )
    for tree, reason in FORBIDDEN_TREES.items():
        if text == tree or text.startswith(tree + "/"):
            where = "is" if text == tree else "is inside"
            raise ValueError(
                f"{text!r} {where} {tree} ({reason}); use a dedicated directory such as /dy1"
            )
    if posixpath.dirname(text) in HOME_PARENTS:
        raise ValueError(
            f"{text!r} is a user's home directory; use a dedicated directory such as /dy1"
            " (destroy removes the whole root)"
        )
    return text


def host_path(value: Any) -> str:
    """An absolute, normalised directory on a host made of safe characters (no `..`, no
    spaces, quotes, `$` or newlines), e.g. the Docker directory a SysboxHost installed."""
    text = _text(value, "/usr/local/lib/dockyard/docker-29.2.1")
    if not text.startswith("/"):
        raise ValueError(f"{text!r} is not absolute; give an absolute directory")
    if "/" + posixpath.normpath(text).lstrip("/") != text:
        raise ValueError(f"{text!r} is not normalised (no '..', '//' or trailing '/')")
    if not _ROOT_CHARS_RE.fullmatch(text) or len(text) > 200:
        raise ValueError(
            f"{text[:80]!r} is not a plain directory path; use letters, digits, '.', '_', '+',"
            " '-' and '/' (at most 200 characters)"
        )
    return text


# Characters an artifact URL or local path may hold: RFC 3986's, without quotes, `$`,
# backquotes, backslashes, spaces or control characters.
_LOCATION_RE: Final = re.compile(r"[A-Za-z0-9._~:/?#\[\]@!&()*+,;=%{}-]+")
_REMOTE_URL_RE: Final = re.compile(r"https?://[^/\s]+(/\S*)?")


def artifact_location(value: Any, mode: str) -> str:
    """Where an artifact comes from: an http(s) URL, or (upload mode) a local path."""
    text = _text(value, "https://mirror.example.com/docker-29.2.1.tgz")
    shown = public_url(text)  # a URL may carry credentials: messages never show them
    if not _LOCATION_RE.fullmatch(text) or len(text) > 2000:
        raise ValueError(
            f"{shown[:80]!r} holds characters a URL or path never needs (spaces, quotes, '$',"
            " backquotes, backslashes or control characters); give a plain URL or path"
        )
    if _REMOTE_URL_RE.fullmatch(text):
        return text
    if mode == "upload":
        if text.startswith(("/", "~", "file://")):
            return text
        raise ValueError(
            f"{shown!r} is neither an http(s) URL nor an absolute or ~ path; give a mirror URL"
            " or the local file to upload, e.g. ~/artifacts/docker-29.2.1.tgz"
        )
    raise ValueError(
        f"{shown!r} is not an http(s) URL the host can download; give a mirror URL, or set"
        " `artifacts: upload` on the host to send a local file from the machine running Pulumi"
    )


def _require_private(network: ipaddress.IPv4Network, text: str) -> None:
    if not any(network.subnet_of(r) for r in PRIVATE_RANGES):
        raise ValueError(
            f"{text} is not in a private (RFC 1918) range; use one inside {_PRIVATE_TEXT}"
        )


def bridge_interface(value: Any) -> ipaddress.IPv4Interface:
    """The bridge's gateway address with its prefix length, e.g. 172.22.147.1/24."""
    text = _text(value, "172.22.147.1/24")
    try:
        iface = ipaddress.IPv4Interface(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not an IPv4 address/length; write the bridge gateway like 172.22.147.1/24"
        ) from None
    if "/" not in text:
        raise ValueError(f"{text!r} has no prefix length; write it like {text}/24")
    net = iface.network
    if net.prefixlen > MAX_PREFIX_LEN:
        raise ValueError(f"{text} is too small a network; use /{MAX_PREFIX_LEN} or larger")
    _require_private(net, text)
    if iface.ip in (net.network_address, net.broadcast_address):
        raise ValueError(
            f"{text} is the network or broadcast address of {net}, not a usable gateway;"
            f" use e.g. {net.network_address + 1}/{net.prefixlen}"
        )
    return iface


def private_network(value: Any, example: str) -> ipaddress.IPv4Network:
    """A private IPv4 network in CIDR notation with no host bits set."""
    text = _text(value, example)
    if "/" not in text:
        raise ValueError(f"{text!r} has no prefix length; write a network like {example}")
    try:
        net = ipaddress.IPv4Network(text)
    except ValueError:
        try:
            loose = ipaddress.IPv4Network(text, strict=False)
        except ValueError:
            raise ValueError(f"{text!r} is not an IPv4 network; write it like {example}") from None
        raise ValueError(f"{text} has host bits set; did you mean {loose}?") from None
    if net.prefixlen > MAX_PREFIX_LEN:
        raise ValueError(f"{text} is too small a network; use /{MAX_PREFIX_LEN} or larger")
    _require_private(net, text)
    return net


_WHOLE_NUMBER_RE: Final = re.compile(r"[+-]?[0-9]+")
_BOOLEAN_WORDS: Final = ("true", "false")


def quoting_hint(value: Any, expected: type[int] | type[bool]) -> str | None:
    """For text where a number or true/false belongs (YAML keeps a quoted `"22"` as text):
    how to write it. None when `value` is not such text."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if expected is bool:
        word = text.lower()
        if word in _BOOLEAN_WORDS:
            return f"{value!r} is a string: write {word} without quotes"
        # yes/no/on/off are booleans only in YAML 1.1; Pulumi (YAML 1.2) passes them as text.
        return f"{value!r} is not a boolean: write true or false"
    if _WHOLE_NUMBER_RE.fullmatch(text):
        return f"{value!r} is a string: write {int(text)} without quotes"
    return None


def pool_size(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        hint = quoting_hint(value, int)
        raise ValueError(hint or f"must be a whole number such as 24 (got {value!r})")
    if not 1 <= value <= MAX_PREFIX_LEN:
        raise ValueError(
            f"{value} is not a usable subnet length; use a number up to {MAX_PREFIX_LEN}"
            " that is larger than poolBase's length (e.g. 24)"
        )
    return value


def ssh_cidr(value: Any) -> str:
    """A source range allowed to reach SSH; IPv4 or IPv6, no host bits."""
    text = _text(value, "198.51.100.0/24")
    try:
        return str(ipaddress.ip_network(text))
    except ValueError:
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValueError(
                f"{text!r} is not a network; write it like 198.51.100.0/24 or 2001:db8::/32"
            ) from None
        raise ValueError(f"{text} has host bits set; did you mean {loose}?") from None


def sha256_hex(value: Any) -> str:
    text = _text(value, "a 64-digit hex string")
    if not _SHA256_RE.fullmatch(text):
        raise ValueError(
            f"{text[:70]!r} is not a sha256; give the 64 hex digits printed by `sha256sum FILE`"
        )
    return text.lower()


def version(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueError(f'{value!r} must be quoted so YAML keeps it as text, e.g. "{value}"')
    text = _text(value, '"29.2.1"')
    if not _VERSION_RE.fullmatch(text):
        raise ValueError(f'{text!r} is not a version; write it like "29.2.1"')
    return text


def owner_id(value: Any) -> str:
    """Who a resource on a host belongs to: `project/stack/resource` (set by the program)."""
    text = _text(value, "dockyard/prod/build-1-dy1_")
    if not _OWNER_RE.fullmatch(text):
        raise ValueError(
            f"{text[:80]!r} is not an owner id; the program sets it to project/stack/resource"
            " (e.g. dockyard/prod/build-1-dy1_)"
        )
    return text


def aws_region(value: Any) -> str:
    text = _text(value, "eu-central-1")
    if not _AWS_REGION_RE.fullmatch(text):
        raise ValueError(f"{text!r} is not an AWS region name; write it like eu-central-1")
    return text


def aws_subnet_id(value: Any) -> str:
    text = _text(value, "subnet-0123456789abcdef0")
    if not _AWS_SUBNET_RE.fullmatch(text):
        raise ValueError(
            f"{text!r} is not a subnet id; write it like subnet-0123456789abcdef0, or omit it"
            " to use the default VPC"
        )
    return text
