"""Read a Pulumi stack file (`stacks/Pulumi.<stack>.yaml`) without Pulumi.

Secure values (`{secure: v1:...}`) stay opaque: validation never needs their plain text.
`check_stack_file` is what `validate` runs: every message names the file, line and column
of its key (`yamlsource.py` keeps them from the parse). The program at preview gets its
config from Pulumi, not from a file: there messages name the key path alone.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from dockyard_resources.config.errors import ConfigError, StackFileError
from dockyard_resources.config.keypath import CONFIG, path_of
from dockyard_resources.config.reachability import stack_warnings
from dockyard_resources.config.spec import HostSpec
from dockyard_resources.config.validate import validate_hosts
from dockyard_resources.config.yamlsource import SourceDocument, read_yaml

NAMESPACE: Final = "dockyard"
# Keys of the `dockyard:` namespace the program reads; anything else is most likely a typo.
KNOWN_KEYS: Final = ("hosts", "sshPrivateKey", "sshPrivateKeyPassphrase")
# Secret keys and how to store each encrypted.
SECRET_KEYS: Final = {
    "sshPrivateKey": "pulumi config set --secret {key} --stack <stack> < ~/.ssh/id_ed25519",
    "sshPrivateKeyPassphrase": "pulumi config set --secret {key} --stack <stack>",
}


def read_stack_file(path: str | Path) -> SourceDocument:
    """The parsed stack file with the positions of its keys; raises `StackFileError` when
    it cannot be read as a mapping with a `config:` mapping (unreadable, not UTF-8, invalid
    YAML, duplicate keys)."""
    source = read_yaml(path)
    document = source.data
    if document is not None and not isinstance(document, dict):
        raise StackFileError(f"{source.position(())}: must be a YAML mapping with a `config:` key")
    config = (document or {}).get(CONFIG)
    if config is not None and not isinstance(config, dict):
        raise StackFileError(
            f"{source.position((CONFIG,))}: config: must be a mapping of `namespace:key: value`"
            f" (got {type(config).__name__})"
        )
    return source


def config_of(source: SourceDocument) -> dict[str, Any]:
    """The `config:` mapping of a read stack file (empty when it has none)."""
    return dict((source.data or {}).get(CONFIG) or {})


def load_stack_document(path: str | Path) -> dict[str, Any]:
    """The whole stack file: `config:` and what Pulumi keeps beside it (its secrets
    provider's `encryptionsalt`, `secretsprovider`, `encryptedkey`); empty for an empty file."""
    return dict(read_stack_file(path).data or {})


def load_stack_file(path: str | Path) -> dict[str, Any]:
    """The `config:` mapping of a stack file (empty when the file has none)."""
    return config_of(read_stack_file(path))


def is_secure(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"secure"}


def project_dir_of(stack_file: str | Path) -> Path:
    """The nearest directory at or above the stack file holding Pulumi.yaml (else the cwd)."""
    start = Path(stack_file).resolve().parent
    for directory in (start, *start.parents):
        if (directory / "Pulumi.yaml").is_file():
            return directory
    return Path.cwd()


def _misplaced_key(key: str, bare: str | None) -> list[str]:
    """A key of another namespace that was most likely meant for dockyard's: a misspelt
    namespace, or a dockyard key written without one (Pulumi then files it under the
    project's name, which is dockyard only in this checkout)."""
    namespace, _, name = key.partition(":")
    if bare is not None:
        # Also the namespace written without its colon (`dockyardhosts`, `dockyard.hosts`).
        names = [bare] + [
            bare[len(NAMESPACE + sep) :]
            for sep in ("", ".", "_", "-")
            if bare.lower().startswith(NAMESPACE + sep) and len(bare) > len(NAMESPACE + sep)
        ]
        close = [m for n in names for m in difflib.get_close_matches(n, KNOWN_KEYS, n=1)][:1]
        if close:
            # `config.` in front: the message path `hosts` means dockyard:hosts (keypath.py).
            return [f"{CONFIG}.{key}: no namespace; write it as {NAMESPACE}:{close[0]}"]
        return []
    if difflib.get_close_matches(namespace, [NAMESPACE], n=1):
        return [f"{key}: unknown namespace {namespace!r}; did you mean '{NAMESPACE}:{name}'?"]
    return []


def validate_stack_config(
    config: dict[str, Any], *, base_dir: Path | None = None
) -> list[HostSpec]:
    """Validate the `dockyard:` keys of a stack's `config:` mapping; raises `ConfigError`."""
    errors: list[str] = []
    for key, value in config.items():
        namespace, colon, name = str(key).partition(":")
        if namespace != NAMESPACE:
            errors.extend(_misplaced_key(str(key), namespace if not colon else None))
            continue
        if name not in KNOWN_KEYS:
            close = difflib.get_close_matches(name, KNOWN_KEYS, n=1)
            fix = f"did you mean '{NAMESPACE}:{close[0]}'? " if close else ""
            errors.append(
                f"{key}: unknown key; {fix}the dockyard namespace has {', '.join(KNOWN_KEYS)}"
            )
        elif name in SECRET_KEYS and not is_secure(value):
            errors.append(
                f"{key}: stored in clear text; remove it and store it encrypted with"
                f" `{SECRET_KEYS[name].format(key=key)}`"
            )
    hosts: list[HostSpec] = []
    try:
        hosts = validate_hosts(config.get(f"{NAMESPACE}:hosts"), base_dir=base_dir)
    except ConfigError as exc:
        errors.extend(exc.errors)
    if errors:
        raise ConfigError(errors)
    return hosts


@dataclass(frozen=True)
class CheckedStack:
    """A valid stack file: its hosts, and warnings (`FILE:LINE:COL: key.path: text`)."""

    hosts: list[HostSpec]
    warnings: list[str]


def locate(source: SourceDocument, message: str) -> str:
    """`key.path: text` -> `FILE:LINE:COL: key.path: text`, at the key's place in the file."""
    return f"{source.position(path_of(message))}: {message}"


def _layout_problems(source: SourceDocument) -> list[str]:
    """A file whose settings are not under `config:`: say so, not that dockyard:hosts is
    missing."""
    document = source.data or {}
    if CONFIG in document:
        return []
    problems = [
        f"{source.position(())}: config: missing; a stack file keeps its settings under"
        " `config:`, e.g. `config:` then `  dockyard:hosts:` indented below it"
    ]
    for key in document:
        where = source.position((str(key),))
        if str(key).startswith(f"{NAMESPACE}:"):
            problems.append(f"{where}: {key}: belongs under `config:`; indent it below `config:`")
        elif difflib.get_close_matches(str(key), [CONFIG], n=1):
            problems.append(f"{where}: {key}: unknown key; did you mean 'config'?")
    return problems


def check_stack_file(path: str | Path) -> CheckedStack:
    """Read and validate a stack file; raises `StackFileError` (unreadable) or `ConfigError`
    (invalid, every problem located in the file)."""
    source = read_stack_file(path)
    errors = _layout_problems(source)
    hosts: list[HostSpec] = []
    if not errors:
        try:
            hosts = validate_stack_config(config_of(source), base_dir=project_dir_of(path))
        except ConfigError as exc:
            errors = [locate(source, line) for line in exc.errors]
    if errors:
        raise ConfigError(errors)
    return CheckedStack(hosts, [locate(source, line) for line in stack_warnings(hosts)])
