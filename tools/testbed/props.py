"""The DockyardInstance properties the host tests and the benchmark hand the provider
directly (no engine): instance N gets prefix `dyN_`, root `/dyN` and networks of its own."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dockyard_resources.render import sysbox_host as sysbox_render

DOCKER_VERSION = "29.2.1"
SYSBOX_VERSION = "0.6.7"


def instance_props(
    connection: dict[str, Any], n: int, *, host_name: str, owner: str, members: Sequence[str] = ()
) -> dict[str, Any]:
    return {
        "connection": connection,
        "hostName": host_name,
        "dockerDir": sysbox_render.docker_dir(DOCKER_VERSION),
        "sysboxDir": sysbox_render.sysbox_dir(SYSBOX_VERSION),
        "prefix": f"dy{n}_",
        "root": f"/dy{n}",
        "bridgeCidr": f"172.22.{n}.1/24",
        "fixedCidr": f"172.22.{n}.0/24",
        "poolBase": f"172.23.{n * 16}.0/20",
        "poolSize": 24.0,
        "members": list(members),
        "owner": owner,
    }
