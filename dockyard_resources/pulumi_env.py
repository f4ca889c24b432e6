"""The environment every `pulumi` run of Dockyard gets: the backend the CLI itself would use.

Order, as the `pulumi` CLI decides it: `PULUMI_BACKEND_URL`, else the current login
(`pulumi login ...`, kept in `$PULUMI_HOME/credentials.json`, or a `PULUMI_ACCESS_TOKEN` for
Pulumi Cloud). Only when there is neither does Dockyard choose for the user: a local file
backend under the state root (`paths.backend_dir()`) whose stacks encrypt their secrets with
a passphrase generated once into `paths.passphrase_file()`. That default works on a fresh
machine from the first command on (`make up`, `ci`, `status`), whichever comes first.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
from collections.abc import Mapping
from pathlib import Path

from dockyard_resources import paths
from dockyard_resources.errors import DockyardError

NO_PULUMI = (
    "no `pulumi` on PATH: put the Pulumi CLI on PATH (make pulumi-cli builds one and prints"
    " its directory: PATH=$(scripts/pulumi-cli.sh):$PATH)"
)
PASSPHRASE_VARS = ("PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE")
_QUIET = {"PULUMI_SKIP_UPDATE_CHECK": "1", "PULUMI_DIY_BACKEND_NO_LEGACY_WARNING": "1"}


class BackendError(DockyardError):
    """The Pulumi backend settings of the environment cannot work."""


def pulumi_binary(environ: Mapping[str, str]) -> str | None:
    """The `pulumi` that `environ`'s PATH finds, if any (say NO_PULUMI when there is none)."""
    return shutil.which("pulumi", path=environ.get("PATH"))


def pulumi_home(environ: Mapping[str, str]) -> Path:
    """Where the CLI keeps its login: `$PULUMI_HOME`, else `.pulumi` in the home directory of
    this user's account, as the CLI finds it (Go's os/user: the passwd entry, `$HOME` only
    without one). Not `$HOME` first: under `sudo -E` it still names the invoking user's home
    while `pulumi` reads root's login."""
    configured = environ.get("PULUMI_HOME")
    if configured:
        return Path(configured).expanduser()
    try:
        home = pwd.getpwuid(os.getuid()).pw_dir
    except KeyError:
        home = environ.get("HOME") or str(Path.home())
    return Path(home) / ".pulumi"


def current_login(environ: Mapping[str, str]) -> str | None:
    """The backend `pulumi login` made current, if any (a Pulumi Cloud token in the
    environment counts as a login to Pulumi Cloud, as it does for the CLI)."""
    credentials = pulumi_home(environ) / "credentials.json"
    try:
        current = json.loads(credentials.read_text()).get("current")
    except (OSError, ValueError, AttributeError):
        current = None
    if isinstance(current, str) and current:
        return current
    if environ.get("PULUMI_ACCESS_TOKEN"):
        return "https://api.pulumi.com"
    return None


def backend_of(environ: Mapping[str, str]) -> str | None:
    """The backend `pulumi` would use in `environ`; None when Dockyard's default applies."""
    return environ.get("PULUMI_BACKEND_URL") or current_login(environ)


def uses_default_backend(environ: Mapping[str, str]) -> bool:
    return backend_of(environ) is None


def default_backend_url() -> str:
    return paths.backend_dir().as_uri()


def _ensure_passphrase(path: Path) -> None:
    """Generate the default backend's passphrase once (0600); an existing one is kept."""
    if path.is_file() and path.read_text().strip():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(32) + "\n")


def _check_passphrase_file(env: Mapping[str, str]) -> None:
    named = env.get("PULUMI_CONFIG_PASSPHRASE_FILE")
    if named and not env.get("PULUMI_CONFIG_PASSPHRASE") and not Path(named).is_file():
        raise BackendError(
            f"PULUMI_CONFIG_PASSPHRASE_FILE names {named}, which does not exist: point it at"
            " the file holding your stacks' passphrase, or unset it"
        )


def pulumi_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for `pulumi` (CLI or Automation API): the user's backend and
    passphrase when they have one, else the default local backend with its generated
    passphrase (created here on first use)."""
    env = dict(os.environ if environ is None else environ)
    for name, value in _QUIET.items():
        env.setdefault(name, value)
    if uses_default_backend(env):
        backend = paths.backend_dir()
        backend.mkdir(parents=True, exist_ok=True)
        env["PULUMI_BACKEND_URL"] = backend.as_uri()
        if not any(env.get(name) for name in PASSPHRASE_VARS):
            _ensure_passphrase(paths.passphrase_file())
            env["PULUMI_CONFIG_PASSPHRASE_FILE"] = str(paths.passphrase_file())
    else:
        url = env.get("PULUMI_BACKEND_URL", "")
        if url.startswith("file://"):
            Path(url.removeprefix("file://")).expanduser().mkdir(parents=True, exist_ok=True)
    _check_passphrase_file(env)
    return env


def describe_backend(environ: Mapping[str, str]) -> str:
    """Where `pulumi` keeps stacks in `environ` (before `pulumi_environment`), and why."""
    if environ.get("PULUMI_BACKEND_URL"):
        return f"{environ['PULUMI_BACKEND_URL']} (PULUMI_BACKEND_URL)"
    login = current_login(environ)
    if login:
        return f"{login} (the current `pulumi login`)"
    return f"{default_backend_url()} (Dockyard's default: no PULUMI_BACKEND_URL, no pulumi login)"
