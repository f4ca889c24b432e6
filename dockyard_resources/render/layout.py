"""Names and paths both host resources agree on (one place; both renderers import them)."""

from __future__ import annotations

from typing import Final

SYSTEMD_DIR: Final = "/etc/systemd/system"
# The one shared sysbox service per host; every instance unit Requires= it.
SYSBOX_SERVICE: Final = "dockyard-sysbox.service"
# Header lines of an instance unit: its prefix, its root and its owner (the Pulumi resource,
# `project/stack/resource`). Other instances, the SysboxHost and delete read them.
INSTANCE_MARKER: Final = "# dockyard-instance: "
ROOT_MARKER: Final = "# dockyard-root: "
OWNER_MARKER: Final = "# dockyard-owner: "
# Dockyard's state on a host, root's alone.
STATE_DIR: Final = "/var/lib/dockyard"
# The networks each instance holds on the host: one file per instance, named by its prefix,
# naming its owner and networks; checked and written under the host lock, removed by its
# owner's delete (hostops/network_claims.py).
NETWORK_CLAIMS_DIR: Final = f"{STATE_DIR}/networks"
# PATH of every host-side script and unit.
SYSTEM_PATH: Final = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
