"""What one instance asks its host for: the networks it keeps or the stack file writes, and
the parts its host must choose.

An instance has two parts: the bridge (bridgeCidr with fixedCidr) and the pool (poolBase with
poolSize). Each part is, in this order of precedence (docs/configuration.md):
- written in the stack file: used as written, the omitted half derived as the config layer
  derives it (fixedCidr = the bridge network, bridgeCidr = the first address of fixedCidr,
  poolSize = the default for poolBase);
- kept: what the instance already has (`kept`: the networks of a deployed instance), so an
  instance keeps its networks whatever happens to other instances, of this stack or another;
- else (a new instance) chosen by its host, first fit among the free candidates, under the host
  lock (`hostops/network_claims.py`).
Pure: the host is asked nothing here.
"""

from __future__ import annotations

from dataclasses import dataclass

from dockyard_resources.config.networks import (
    DEFAULT_POOL_SIZE,
    POOL_PREFIX_LEN,
    InstanceNetworks,
    Interface,
    Net,
    RequestedNetworks,
    bridge_pair,
    default_pool_size,
)
from dockyard_resources.config.values import MAX_PREFIX_LEN


@dataclass(frozen=True)
class NetworkRequest:
    """The networks asked for: a part left None is chosen by the host."""

    bridge_cidr: Interface | None
    fixed_cidr: Net | None  # None exactly when bridge_cidr is None
    pool_base: Net | None
    pool_size: int

    def complete(self) -> InstanceNetworks | None:
        """The networks, when nothing is left to the host."""
        if self.bridge_cidr is None or self.fixed_cidr is None or self.pool_base is None:
            return None
        return InstanceNetworks(self.bridge_cidr, self.fixed_cidr, self.pool_base, self.pool_size)


def request_networks(written: RequestedNetworks, kept: InstanceNetworks | None) -> NetworkRequest:
    """Combine what the stack file writes with what the instance has (None: a new instance).
    Raises ValueError naming the key when the written poolSize does not fit the pool."""
    if written.bridge_cidr is not None or written.fixed_cidr is not None:
        bridge: tuple[Interface | None, Net | None] = bridge_pair(
            written.bridge_cidr, written.fixed_cidr
        )
    elif kept is not None:
        bridge = (kept.bridge_cidr, kept.fixed_cidr)
    else:
        bridge = (None, None)

    pool_base, size = written.pool_base, written.pool_size
    if pool_base is None and kept is not None:
        pool_base = kept.pool_base
        if size is None:
            return NetworkRequest(bridge[0], bridge[1], pool_base, kept.pool_size)
    if size is None:
        size = default_pool_size(pool_base) if pool_base is not None else DEFAULT_POOL_SIZE
        if size is None:
            raise ValueError(f"poolBase: {pool_base} is too small to split; use /28 or larger")
    # A pool the host chooses is a /POOL_PREFIX_LEN.
    length = pool_base.prefixlen if pool_base is not None else POOL_PREFIX_LEN
    if size <= length:
        which = f"poolBase {pool_base}" if pool_base is not None else "a pool the host chooses"
        example = min(max(DEFAULT_POOL_SIZE, length + 2), MAX_PREFIX_LEN)
        raise ValueError(
            f"poolSize: {size} must be longer than the length of {which} (/{length});"
            f" use e.g. {example}, or set poolBase"
        )
    return NetworkRequest(bridge[0], bridge[1], pool_base, size)
