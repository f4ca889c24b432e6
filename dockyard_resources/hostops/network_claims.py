"""Network claims: which networks each Dockyard instance holds on a host, of whatever stack.

A claim is a root-owned file `<NETWORK_CLAIMS_DIR>/<prefix>` naming the instance's owner
(`project/stack/resource`), prefix, root and networks. It is checked against every other
claim, the host's routes and addresses and instances of earlier versions, and written, in one
step under the host lock (render/templates/instance/claim-networks.sh.j2); its owner's delete
removes it last (release-networks.sh.j2). So two stacks deploying to one host at the same
time can never end with overlapping networks, and a network the stack file leaves out is
chosen on the host, first fit among what is free there.

That step runs inside every install (every network known: the instance keeps what it has or
takes what the stack file writes), and before the install of a create that leaves networks
to the host (`claim_script`, run by `hostops.instance.claim_networks`), whose answer the
install's files are then rendered with.
"""

from __future__ import annotations

from typing import Any

from dockyard_resources.config.network_request import NetworkRequest
from dockyard_resources.config.networks import (
    BRIDGE_PREFIX_LEN,
    BRIDGE_SPACE,
    POOL_CANDIDATES,
    POOL_PREFIX_LEN,
    POOL_TEXT,
    InstanceNetworks,
    bridge_candidates,
)
from dockyard_resources.config.values import (
    ROOT_STAGING_MARK,
    bridge_interface,
    pool_size,
    private_network,
)
from dockyard_resources.errors import HostOutputError
from dockyard_resources.render import facts
from dockyard_resources.render.common import bash_script, render
from dockyard_resources.render.instance import InstanceIdentity
from dockyard_resources.render.layout import (
    INSTANCE_MARKER,
    NETWORK_CLAIMS_DIR,
    ROOT_MARKER,
    STATE_DIR,
    SYSTEMD_DIR,
)


def claim_file(prefix: str) -> str:
    return f"{NETWORK_CLAIMS_DIR}/{prefix}"


def claim_context(identity: InstanceIdentity, request: NetworkRequest) -> dict[str, Any]:
    """The `networks` of claim-networks.sh.j2: what is asked for ("" = chosen on the host)
    and, for each part left to the host, its candidates in first-fit order."""
    choose_bridge = request.bridge_cidr is None
    choose_pool = request.pool_base is None
    return {
        "claims_dir": NETWORK_CLAIMS_DIR,
        "claim_file": claim_file(identity.prefix),
        "state_dir": STATE_DIR,
        "bridge": "" if choose_bridge else str(request.bridge_cidr),
        "fixed": "" if choose_bridge else str(request.fixed_cidr),
        "pool": "" if choose_pool else str(request.pool_base),
        "pool_size": request.pool_size,
        "bridge_candidates": [str(c) for c in bridge_candidates()] if choose_bridge else [],
        "pool_candidates": [str(c) for c in POOL_CANDIDATES] if choose_pool else [],
        "bridge_space": f"/{BRIDGE_PREFIX_LEN} in {BRIDGE_SPACE}",
        "pool_space": f"/{POOL_PREFIX_LEN} in {POOL_TEXT}",
        "systemd_dir": SYSTEMD_DIR,
        "instance_marker": INSTANCE_MARKER,
        "root_marker": ROOT_MARKER,
        "report": False,
    }


def release_context(identity: InstanceIdentity) -> dict[str, Any]:
    """The `networks` of release-networks.sh.j2."""
    return {
        "claims_dir": NETWORK_CLAIMS_DIR,
        "claim_file": claim_file(identity.prefix),
        "state_dir": STATE_DIR,
    }


def claim_script(
    identity: InstanceIdentity, request: NetworkRequest, *, guards: str, dir_guard: Any
) -> str:
    """The locked script that makes install's checks, then claims (choosing what `request`
    leaves open) and prints the `claim` fact. `guards` and `dir_guard` are those of
    hostops.instance."""
    body = render(
        "instance/claim.sh.j2",
        spec=identity,
        adopt=False,
        guards=guards,
        dir_guard=dir_guard,
        fact_helper=facts.SHELL_HELPER,
        staging_mark=ROOT_STAGING_MARK,
        networks={**claim_context(identity, request), "report": True},
    )
    return bash_script(body)


def parse_claim(stdout: str) -> InstanceNetworks:
    """The `claim` fact: the networks the host recorded for the instance."""
    fact = facts.one(stdout, "claim")
    try:
        return InstanceNetworks(
            bridge_cidr=bridge_interface(fact["bridgeCidr"]),
            fixed_cidr=private_network(fact["fixedCidr"], "172.16.0.0/24"),
            pool_base=private_network(fact["poolBase"], "172.18.0.0/19"),
            pool_size=pool_size(fact["poolSize"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise HostOutputError(f"the host's network claim is unusable ({exc}): {fact!r}") from None
