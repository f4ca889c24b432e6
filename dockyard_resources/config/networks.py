"""Network checks and allocation for the instances of one host.

Scheme (documented in docs/configuration.md):
- Explicit networks are checked first: per instance (fixedCidr nested in the bridge network and
  holding the bridge address, poolSize longer than poolBase), then pairwise across instances.
- Omitted networks are then filled in, in instance order, first fit, avoiding every explicit
  network and everything allocated before: a bridge gets the next free /24 of 172.16.0.0/16
  (gateway .1, fixedCidr = that /24), a pool the next free /19 of 172.18.0.0-172.30.255.255
  (see `POOL_CANDIDATES` for the order) with poolSize 24. 172.17.0.0/16 (Docker's default
  bridge) and 172.31.0.0/16 (AWS's default VPC) are never handed out.
The result depends on the stack file alone: it is what `validate` shows, what an empty host
would give. A deployed instance's networks are chosen on its host, where the same candidates
are tried in the same order while avoiding what the host already holds
(`hostops/network_claims.py`), and kept from then on (`config/network_request.py`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from dockyard_resources.config.values import MAX_PREFIX_LEN

Net = ipaddress.IPv4Network
Interface = ipaddress.IPv4Interface

BRIDGE_SPACE: Final = Net("172.16.0.0/16")
BRIDGE_PREFIX_LEN: Final = 24
BRIDGE_CANDIDATES: Final = tuple(BRIDGE_SPACE.subnets(new_prefix=BRIDGE_PREFIX_LEN))
# Pools are /19s (32 networks of /24 each) of 172.18.0.0/16 ... 172.30.0.0/16: 104 per host.
# They are handed out across the /16s first (172.18.0.0/19, 172.19.0.0/19, ..., 172.30.0.0/19,
# 172.18.32.0/19, ...): the first 13 instances get the start of the /16 pool that versions
# before the allocation resource gave them, so moving such a stack over creates no overlap
# between an instance's new pool and another instance's old one.
POOL_PREFIX_LEN: Final = 19
POOL_SECONDS: Final = range(18, 31)
POOL_TEXT: Final = "172.18.0.0-172.30.255.255"
POOL_CANDIDATES: Final = tuple(
    Net(f"172.{second}.{third}.0/{POOL_PREFIX_LEN}")
    for third in range(0, 256, 2 ** (24 - POOL_PREFIX_LEN))
    for second in POOL_SECONDS
)
DEFAULT_POOL_SIZE: Final = 24
# camelCase keys of an instance's networks, as in the stack file and the resource inputs.
NETWORK_KEYS: Final = ("bridgeCidr", "fixedCidr", "poolBase", "poolSize")


class RequestedNetworks(Protocol):
    """What the stack file says about one instance's networks (None: omitted)."""

    @property
    def prefix(self) -> str: ...
    @property
    def bridge_cidr(self) -> Interface | None: ...
    @property
    def fixed_cidr(self) -> Net | None: ...
    @property
    def pool_base(self) -> Net | None: ...
    @property
    def pool_size(self) -> int | None: ...


@dataclass(frozen=True)
class Requested:
    """A `RequestedNetworks` outside the pydantic models (a `DockyardInstance`'s network
    inputs: only what the stack file writes)."""

    prefix: str
    bridge_cidr: Interface | None = None
    fixed_cidr: Net | None = None
    pool_base: Net | None = None
    pool_size: int | None = None

    def props(self) -> dict[str, Any]:
        """`{prefix, <explicit network keys>}`, JSON-ready (omitted keys left out)."""
        values = {
            "bridgeCidr": self.bridge_cidr,
            "fixedCidr": self.fixed_cidr,
            "poolBase": self.pool_base,
            "poolSize": self.pool_size,
        }
        props: dict[str, Any] = {"prefix": self.prefix}
        for key, value in values.items():
            if value is not None:
                props[key] = value if isinstance(value, int) else str(value)
        return props


@dataclass(frozen=True)
class InstanceNetworks:
    bridge_cidr: Interface
    fixed_cidr: Net
    pool_base: Net
    pool_size: int
    # Keys not written in the stack file (allocated or derived).
    allocated: frozenset[str] = frozenset()

    def props(self) -> dict[str, Any]:
        return {
            "bridgeCidr": str(self.bridge_cidr),
            "fixedCidr": str(self.fixed_cidr),
            "poolBase": str(self.pool_base),
            "poolSize": self.pool_size,
        }


@dataclass(frozen=True)
class _Claim:
    """A network an instance occupies, with the key that put it there (for messages)."""

    network: Net
    key: str
    span: tuple[int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "span", _span(self.network))

    def overlaps(self, other: _Claim) -> bool:
        return _overlap(self.span, other.span)


def _span(network: Net) -> tuple[int, int]:
    # Integers: `IPv4Network.overlaps` is too slow for first fit over hundreds of candidates.
    return int(network.network_address), int(network.broadcast_address)


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def default_pool_size(pool_base: Net) -> int | None:
    """poolSize when only poolBase is given: /24 subnets, or as fine as a small base allows."""
    if pool_base.prefixlen < DEFAULT_POOL_SIZE:
        return DEFAULT_POOL_SIZE
    if pool_base.prefixlen < MAX_PREFIX_LEN:
        return min(pool_base.prefixlen + 2, MAX_PREFIX_LEN)
    return None


def _explicit_claims(path: str, cfg: RequestedNetworks, errors: list[str]) -> list[_Claim]:
    """Check one instance's explicit networks on their own; return what it occupies."""
    claims: list[_Claim] = []
    if cfg.bridge_cidr is not None:
        bridge_net = cfg.bridge_cidr.network
        claims.append(_Claim(bridge_net, f"{path}.bridgeCidr"))
        fixed = cfg.fixed_cidr
        if fixed is not None and not fixed.subnet_of(bridge_net):
            errors.append(
                f"{path}.fixedCidr: {fixed} is not inside the bridge network {bridge_net}"
                f" (bridgeCidr {cfg.bridge_cidr}); use {bridge_net} or a part of it that holds"
                f" {cfg.bridge_cidr.ip}, or omit fixedCidr"
            )
        elif fixed is not None and cfg.bridge_cidr.ip not in fixed:
            errors.append(
                f"{path}.fixedCidr: {fixed} does not contain the bridge address"
                f" {cfg.bridge_cidr.ip} (bridgeCidr); use {bridge_net} or omit fixedCidr"
            )
    elif cfg.fixed_cidr is not None:
        claims.append(_Claim(cfg.fixed_cidr, f"{path}.fixedCidr"))

    if cfg.pool_base is not None:
        base = cfg.pool_base
        claims.append(_Claim(base, f"{path}.poolBase"))
        if cfg.pool_size is not None and cfg.pool_size <= base.prefixlen:
            errors.append(
                f"{path}.poolSize: {cfg.pool_size} must be larger than poolBase's length"
                f" ({base}) and at most {MAX_PREFIX_LEN}; e.g. {default_pool_size(base) or 30}"
            )
        elif cfg.pool_size is None and default_pool_size(base) is None:
            errors.append(
                f"{path}.poolBase: {base} is too small to split into networks; use /28 or larger"
            )
    elif cfg.pool_size is not None and cfg.pool_size <= POOL_PREFIX_LEN:
        errors.append(
            f"{path}.poolSize: {cfg.pool_size} must be larger than the allocated poolBase's"
            f" length /{POOL_PREFIX_LEN}; use e.g. {DEFAULT_POOL_SIZE}, or set poolBase"
        )

    # The pool and the bridge of one instance must not overlap either.
    if len(claims) == 2 and claims[0].network.overlaps(claims[1].network):
        errors.append(
            f"{claims[1].key}: {claims[1].network} overlaps {claims[0].key}"
            f" ({claims[0].network}) of the same instance; pick a disjoint range or omit"
            " poolBase to have one allocated"
        )
    return claims


class _Taken:
    """Claimed networks, with the candidates of each allocation space they block (kept up to
    date as claims are added, so first fit stays linear in the number of candidates)."""

    SPACES: Final = (BRIDGE_CANDIDATES, POOL_CANDIDATES)
    _SPANS: Final = tuple(tuple(_span(c) for c in space) for space in SPACES)

    def __init__(self, claims: Sequence[_Claim] = ()) -> None:
        self.claims: list[_Claim] = []
        self.blocked: tuple[set[int], ...] = tuple(set() for _ in self.SPACES)
        for claim in claims:
            self.add(claim)

    def add(self, claim: _Claim) -> None:
        self.claims.append(claim)
        for spans, blocked in zip(self._SPANS, self.blocked, strict=True):
            blocked.update(i for i, span in enumerate(spans) if _overlap(span, claim.span))

    def first_free(self, space: int) -> Net | None:
        """The first candidate of a space overlapping nothing taken."""
        blocked = self.blocked[space]
        return next((c for i, c in enumerate(self.SPACES[space]) if i not in blocked), None)


_BRIDGES: Final = 0
_POOLS: Final = 1


def bridge_candidates() -> list[Interface]:
    """The bridges a host hands out, in first-fit order: gateway .1 of each /24."""
    return [Interface(f"{net.network_address + 1}/{net.prefixlen}") for net in BRIDGE_CANDIDATES]


def bridge_pair(bridge_cidr: Interface | None, fixed_cidr: Net | None) -> tuple[Interface, Net]:
    """The bridge address and fixed range from what is given of them (at least one): the
    fixed range defaults to the bridge network, the bridge to the first address of the fixed
    range."""
    if bridge_cidr is None:
        if fixed_cidr is None:
            raise ValueError("bridge_pair needs bridgeCidr or fixedCidr")
        bridge_cidr = Interface(f"{fixed_cidr.network_address + 1}/{fixed_cidr.prefixlen}")
    return bridge_cidr, fixed_cidr if fixed_cidr is not None else bridge_cidr.network


def plan_host_networks(
    instances: Sequence[tuple[str, RequestedNetworks]],
) -> tuple[list[InstanceNetworks | None], list[str]]:
    """Check and complete the networks of one host's instances, as on an empty host.

    `instances` are (key path, requested networks) in stack-file order. Returns one entry per
    instance (None where its networks are unusable) and every problem found.
    """
    errors: list[str] = []
    explicit = [_explicit_claims(path, cfg, errors) for path, cfg in instances]

    # Pairwise disjointness across instances; the later instance carries the error.
    for j, later in enumerate(explicit):
        for earlier in explicit[:j]:
            for b in later:
                for a in earlier:
                    if b.overlaps(a):
                        errors.append(
                            f"{b.key}: {b.network} overlaps {a.key} ({a.network}); pick a"
                            " disjoint range or omit it to have one allocated"
                        )

    taken = _Taken([claim for claims in explicit for claim in claims])
    planned = [_complete(path, cfg, taken=taken, errors=errors) for path, cfg in instances]
    return planned, errors


def _complete(
    path: str, cfg: RequestedNetworks, *, taken: _Taken, errors: list[str]
) -> InstanceNetworks | None:
    """Fill in one instance's omitted networks; allocations are added to `taken`."""
    allocated: set[str] = set()
    if cfg.bridge_cidr is None and cfg.fixed_cidr is None:
        free = taken.first_free(_BRIDGES)
        if free is None:
            errors.append(
                f"{path}.bridgeCidr: no free /{BRIDGE_PREFIX_LEN} left in {BRIDGE_SPACE}"
                " for this host; set bridgeCidr explicitly (e.g. a /24 in 10.0.0.0/8)"
            )
            return None
        taken.add(_Claim(free, f"{path}.bridgeCidr"))
        bridge, fixed = bridge_pair(None, free)
        allocated.update(("bridgeCidr", "fixedCidr"))
    else:
        bridge, fixed = bridge_pair(cfg.bridge_cidr, cfg.fixed_cidr)
        allocated.update(
            key
            for key, v in (("bridgeCidr", cfg.bridge_cidr), ("fixedCidr", cfg.fixed_cidr))
            if v is None
        )

    pool_base = cfg.pool_base
    if pool_base is None:
        pool_base = taken.first_free(_POOLS)
        if pool_base is None:
            errors.append(
                f"{path}.poolBase: no free /{POOL_PREFIX_LEN} left in {POOL_TEXT} for this"
                " host; set poolBase explicitly (e.g. a /16 in 10.0.0.0/8)"
            )
            return None
        taken.add(_Claim(pool_base, f"{path}.poolBase"))
        allocated.add("poolBase")
    pool_size = cfg.pool_size
    if pool_size is None:
        pool_size = default_pool_size(pool_base)
        allocated.add("poolSize")
    if pool_size is None:  # poolBase too small: reported by _explicit_claims
        return None
    return InstanceNetworks(
        bridge_cidr=bridge,
        fixed_cidr=fixed,
        pool_base=pool_base,
        pool_size=pool_size,
        allocated=frozenset(allocated),
    )
