"""Host-side files and scripts that keep non-root users away from the cloud metadata service
(pure rendering).

The metadata service (169.254.169.254) answers anyone on the machine: on a cloud host it
hands out the user data, which holds the server's first SSH host key, and on AWS the instance
role's credentials. One iptables rule in OUTPUT rejects every packet to it that a process of
a non-root user sends; cloud-init and the cloud's agents run as root and keep working. A
oneshot unit puts the rule back at every boot, before the network comes up.
"""

from __future__ import annotations

from typing import Final

from dockyard_resources.render import facts
from dockyard_resources.render.common import bash_script, render
from dockyard_resources.render.layout import SYSTEM_PATH, SYSTEMD_DIR

METADATA_ADDRESS: Final = "169.254.169.254"
CHAIN: Final = "OUTPUT"
RULE_TAG: Final = "dockyard:metadata"
PROGRAM_PATH: Final = "/usr/local/sbin/dockyard-metadata-block"
UNIT_NAME: Final = "dockyard-metadata-block.service"
UNIT_PATH: Final = f"{SYSTEMD_DIR}/{UNIT_NAME}"
STATE_FACT: Final = "metadataBlock"


def render_program() -> str:
    return render(
        "metadata_block/program.sh.j2",
        address=METADATA_ADDRESS,
        chain=CHAIN,
        tag=RULE_TAG,
        path=SYSTEM_PATH,
    )


def render_unit() -> str:
    return render("metadata_block/unit.service.j2", program=PROGRAM_PATH)


def _names() -> dict[str, str]:
    return {"program_path": PROGRAM_PATH, "unit_path": UNIT_PATH, "unit_name": UNIT_NAME}


def _inspect_body() -> str:
    return render(
        "metadata_block/inspect.sh.j2",
        fact_helper=facts.SHELL_HELPER,
        state_fact=STATE_FACT,
        **_names(),
    )


def install_script() -> str:
    """Write the program and the unit, enable and start it, add the rule; ends with the
    state fact."""
    body = render(
        "metadata_block/install.sh.j2",
        program=render_program().rstrip("\n"),
        unit=render_unit().rstrip("\n"),
        **_names(),
    )
    return bash_script(body + _inspect_body())


def inspect_script() -> str:
    """Read-only: the state fact."""
    return bash_script(_inspect_body(), locked=False)


def remove_script() -> str:
    """Disable the unit, remove every tagged rule, the unit and the program."""
    body = render("metadata_block/remove.sh.j2", program=render_program().rstrip("\n"), **_names())
    return bash_script(body)
