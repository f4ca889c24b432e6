"""Warnings for addresses that are valid but that no runner can reach.

The documentation ranges (RFC 5737 for IPv4, RFC 3849 for IPv6) are what examples and
templates use; they are never routed. A host address in them cannot be reached, and an SSH
firewall open only to them lets nobody in. Both are warnings, not errors: the stack file is
well-formed (the shipped templates are written this way on purpose), it just cannot work
until the real addresses replace the examples.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Final

from dockyard_resources.config.models import AwsProvision, ExistingProvision, HcloudProvision
from dockyard_resources.config.spec import HostSpec

DOCUMENTATION_RANGES: Final = (
    ipaddress.ip_network("192.0.2.0/24"),  # RFC 5737 TEST-NET-1
    ipaddress.ip_network("198.51.100.0/24"),  # RFC 5737 TEST-NET-2
    ipaddress.ip_network("203.0.113.0/24"),  # RFC 5737 TEST-NET-3
    ipaddress.ip_network("2001:db8::/32"),  # RFC 3849
)


def documentation_range(text: str) -> str | None:
    """The documentation range an address or network lies in (None: a real one, or a name)."""
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None  # a DNS name or ~/.ssh/config alias: nothing to say before it resolves
    for documentation in DOCUMENTATION_RANGES:
        # Both ends inside: the whole network is (an address of the other family never is).
        if network.network_address in documentation and network.broadcast_address in documentation:
            return str(documentation)
    return None


def _address_warning(path: str, address: str) -> list[str]:
    found = documentation_range(address)
    if found is None:
        return []
    return [
        f"{path}.provision.address: {address} is in {found}, a range reserved for documentation"
        " that no runner can reach; replace it with the machine's real address"
    ]


def _cidr_warnings(path: str, cidrs: Sequence[str]) -> list[str]:
    warnings = []
    for i, cidr in enumerate(cidrs):
        found = documentation_range(cidr)
        if found is not None:
            warnings.append(
                f"{path}.provision.allowedSshCidrs[{i}]: {cidr} is in {found}, a range reserved"
                " for documentation that no runner connects from; list the addresses that run"
                " Pulumi, or SSH from them is blocked"
            )
    return warnings


def stack_warnings(hosts: Sequence[HostSpec]) -> list[str]:
    """`key.path: text` warnings of a valid stack."""
    warnings: list[str] = []
    for host in hosts:
        provision = host.provision
        if isinstance(provision, ExistingProvision):
            warnings.extend(_address_warning(host.path, provision.address))
        if isinstance(provision, HcloudProvision | AwsProvision):
            warnings.extend(_cidr_warnings(host.path, provision.allowed_ssh_cidrs))
    return warnings
