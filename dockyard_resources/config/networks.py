"""Network checks and deterministic allocation for the instances of one host.

Scheme (documented in docs/configuration.md):
- Explicit networks are checked first: per instance (fixedCidr nested in the bridge network and
  holding the bridge address, poolSize longer than poolBase), then pairwise across instances.
- Omitted networks are then allocated in instance order, first fit, avoiding every explicit
  network of the host and everything allocated before: a bridge gets the next free /24 of
  172.16.0.0/16 (gateway .1, fixedCidr = that /24), a pool the next free /16 of
  172.18.0.0/16 ... 172.30.0.0/16 with poolSize 24. 172.17.0.0/16 (Docker's default bridge)
  and 172.31.0.0/16 (AWS's default VPC) are never handed out.
The same stack file therefore always yields the same networks.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from dockyard_resources.config.models import InstanceConfig
from dockyard_resources.config.values import MAX_PREFIX_LEN

Net = ipaddress.IPv4Network

BRIDGE_SPACE: Final = Net("172.16.0.0/16")
BRIDGE_PREFIX_LEN: Final = 24
POOL_BASES: Final = tuple(Net(f"172.{second}.0.0/16") for second in range(18, 31))
DEFAULT_POOL_SIZE: Final = 24


@dataclass(frozen=True)
class InstanceNetworks:
    bridge_cidr: ipaddress.IPv4Interface
    fixed_cidr: Net
    pool_base: Net
    pool_size: int
    allocated: frozenset[str]


@dataclass(frozen=True)
class _Claim:
    """A network an instance occupies, with the key that put it there (for messages)."""

    network: Net
    key: str


def _bridge_candidates() -> Iterator[Net]:
    return BRIDGE_SPACE.subnets(new_prefix=BRIDGE_PREFIX_LEN)


def default_pool_size(pool_base: Net) -> int | None:
    """poolSize when only poolBase is given: /24 subnets, or as fine as a small base allows."""
    if pool_base.prefixlen < DEFAULT_POOL_SIZE:
        return DEFAULT_POOL_SIZE
    if pool_base.prefixlen < MAX_PREFIX_LEN:
        return min(pool_base.prefixlen + 2, MAX_PREFIX_LEN)
    return None


def _explicit_claims(path: str, cfg: InstanceConfig, errors: list[str]) -> list[_Claim]:
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
    elif cfg.pool_size is not None and cfg.pool_size <= POOL_BASES[0].prefixlen:
        errors.append(
            f"{path}.poolSize: {cfg.pool_size} must be larger than the allocated poolBase's"
            f" length /{POOL_BASES[0].prefixlen}; use e.g. {DEFAULT_POOL_SIZE}, or set poolBase"
        )

    # The pool and the bridge of one instance must not overlap either.
    if len(claims) == 2 and claims[0].network.overlaps(claims[1].network):
        errors.append(
            f"{claims[1].key}: {claims[1].network} overlaps {claims[0].key}"
            f" ({claims[0].network}) of the same instance; pick a disjoint range or omit"
            " poolBase to have one allocated"
        )
    return claims


def _first_free(candidates: Iterator[Net], taken: Sequence[_Claim]) -> Net | None:
    for candidate in candidates:
        if not any(candidate.overlaps(c.network) for c in taken):
            return candidate
    return None


def plan_host_networks(
    instances: Sequence[tuple[str, InstanceConfig]],
) -> tuple[list[InstanceNetworks | None], list[str]]:
    """Check and complete the networks of one host's instances.

    `instances` are (key path, config) in stack-file order. Returns one entry per instance
    (None where its networks are unusable) and every problem found.
    """
    errors: list[str] = []
    explicit = [_explicit_claims(path, cfg, errors) for path, cfg in instances]

    # Pairwise disjointness across instances; the later instance carries the error.
    for j, later in enumerate(explicit):
        for earlier in explicit[:j]:
            for b in later:
                for a in earlier:
                    if b.network.overlaps(a.network):
                        errors.append(
                            f"{b.key}: {b.network} overlaps {a.key} ({a.network}); pick a"
                            " disjoint range or omit it to have one allocated"
                        )

    taken: list[_Claim] = [claim for claims in explicit for claim in claims]
    planned = [_complete(path, cfg, taken, errors) for path, cfg in instances]
    return planned, errors


def _complete(
    path: str, cfg: InstanceConfig, taken: list[_Claim], errors: list[str]
) -> InstanceNetworks | None:
    """Fill in one instance's omitted networks; allocations are appended to `taken`."""
    allocated: set[str] = set()
    if cfg.bridge_cidr is not None:
        bridge = cfg.bridge_cidr
    elif cfg.fixed_cidr is not None:
        gateway = cfg.fixed_cidr.network_address + 1
        bridge = ipaddress.IPv4Interface(f"{gateway}/{cfg.fixed_cidr.prefixlen}")
        allocated.add("bridgeCidr")
    else:
        free = _first_free(_bridge_candidates(), taken)
        if free is None:
            errors.append(
                f"{path}.bridgeCidr: no free /{BRIDGE_PREFIX_LEN} left in {BRIDGE_SPACE}"
                " for this host; set bridgeCidr explicitly (e.g. a /24 in 10.0.0.0/8)"
            )
            return None
        taken.append(_Claim(free, f"{path}.bridgeCidr"))
        bridge = ipaddress.IPv4Interface(f"{free.network_address + 1}/{free.prefixlen}")
        allocated.add("bridgeCidr")
    fixed = cfg.fixed_cidr
    if fixed is None:
        fixed = bridge.network
        allocated.add("fixedCidr")

    pool_base = cfg.pool_base
    if pool_base is None:
        pool_base = _first_free(iter(POOL_BASES), taken)
        if pool_base is None:
            errors.append(
                f"{path}.poolBase: no free /16 left in 172.18.0.0-172.30.255.255 for this"
                " host; set poolBase explicitly (e.g. a /16 in 10.0.0.0/8)"
            )
            return None
        taken.append(_Claim(pool_base, f"{path}.poolBase"))
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
