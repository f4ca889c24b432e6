"""Host-side scripts that rotate a cloud host's SSH host key (pure rendering).

A cloud server's first host key comes in its user data, which the metadata service hands to
anyone on the machine who asks. So Dockyard replaces it once it has used it: `prepare`
generates the next ed25519 key on the host, beside the key sshd serves (its private half
never leaves the host), and reports the public half over the connection pinned to the
user-data key; `switch` installs that key for sshd and reloads it; `inspect` tells which key
sshd's key files hold. sshd's key files come from `sshd -T -f <config>`.
"""

from __future__ import annotations

from typing import Final

from dockyard_resources.render import facts
from dockyard_resources.render.common import bash_script, render

DEFAULT_SSHD_CONFIG: Final = "/etc/ssh/sshd_config"
# The next key waits beside the key file it will replace: `<key file>.dockyard-new`.
PENDING_SUFFIX: Final = ".dockyard-new"
NEW_FACT: Final = "newHostKey"
ROTATED_FACT: Final = "rotated"
KEYS_FACT: Final = "hostKeyFiles"
ACTION_FACT: Final = "action"
# A comment line of the switch script: a run cut right there has installed the new key
# without reloading sshd (the tests cut it there).
INSTALLED_MARKER: Final = "# (here: the new key is installed, sshd not yet reloaded)"


def _helpers(config: str) -> str:
    return render(
        "host_key/sshd-keys.sh.j2",
        fact_helper=facts.SHELL_HELPER,
        config=config,
        pending_suffix=PENDING_SUFFIX,
        action_fact=ACTION_FACT,
    )


def prepare_script(old_key: str, config: str = DEFAULT_SSHD_CONFIG) -> str:
    """Generate (or keep) the next host key beside the one holding `old_key` ("type blob")."""
    body = render("host_key/prepare.sh.j2", old=old_key, new_fact=NEW_FACT)
    return bash_script(_helpers(config) + body)


def switch_script(old_key: str, new_key: str, config: str = DEFAULT_SSHD_CONFIG) -> str:
    """Install the waiting `new_key` in place of `old_key` and reload sshd."""
    body = render(
        "host_key/switch.sh.j2",
        old=old_key,
        new=new_key,
        rotated_fact=ROTATED_FACT,
        installed_marker=INSTALLED_MARKER,
    )
    return bash_script(_helpers(config) + body)


def inspect_script(old_key: str, new_key: str, config: str = DEFAULT_SSHD_CONFIG) -> str:
    """Read-only: the key files holding `new_key` and `old_key` ("" for none)."""
    body = render("host_key/inspect.sh.j2", old=old_key, new=new_key, keys_fact=KEYS_FACT)
    return bash_script(_helpers(config) + body, locked=False)
