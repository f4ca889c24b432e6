"""Which networks an instance asks its host for (`config.network_request`): written ones win,
an existing instance keeps the rest, a new one leaves the rest to its host; and the provider
of the retired `NetworkAllocation` resource, kept so that old stacks can delete it.

What the host then chooses is tested by running the claim script: test_network_claims.py.
"""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from typing import Any

import dill
import pytest
from pulumi.dynamic.dynamic import serialize_provider

from dockyard_resources.config.network_request import NetworkRequest, request_networks
from dockyard_resources.config.networks import InstanceNetworks, Requested
from dockyard_resources.providers.networks import NetworkAllocationProvider

Net = ipaddress.IPv4Network
Iface = ipaddress.IPv4Interface

HELD = InstanceNetworks(Iface("172.16.3.1/24"), Net("172.16.3.0/24"), Net("172.20.0.0/19"), 24)


def written(**explicit: Any) -> Requested:
    parsed: dict[str, Any] = {}
    for key, value in explicit.items():
        if key == "bridge_cidr":
            parsed[key] = Iface(value)
        elif key in ("fixed_cidr", "pool_base"):
            parsed[key] = Net(value)
        else:
            parsed[key] = value
    return Requested("dy1_", **parsed)


def test_a_new_instance_leaves_what_the_file_omits_to_its_host() -> None:
    request = request_networks(written(), None)
    assert request == NetworkRequest(None, None, None, 24)
    assert request.complete() is None
    # Only the pool open: the host chooses it, avoiding the written bridge.
    request = request_networks(written(bridge_cidr="10.9.0.1/24", pool_size=26), None)
    assert request == NetworkRequest(Iface("10.9.0.1/24"), Net("10.9.0.0/24"), None, 26)


def test_an_existing_instance_keeps_every_network_the_file_omits() -> None:
    assert request_networks(written(), HELD).complete() == HELD


@pytest.mark.parametrize(
    ("explicit", "expected"),
    [
        # The bridge part is decided as a whole: fixedCidr follows a written bridgeCidr ...
        (
            {"bridge_cidr": "10.1.0.1/24"},
            (Iface("10.1.0.1/24"), Net("10.1.0.0/24"), HELD.pool_base, 24),
        ),
        # ... and the bridge the first address of a written fixedCidr.
        (
            {"fixed_cidr": "10.2.0.0/25"},
            (Iface("10.2.0.1/25"), Net("10.2.0.0/25"), HELD.pool_base, 24),
        ),
        # A written poolBase gets its default size; the kept bridge stays.
        (
            {"pool_base": "10.8.0.0/16"},
            (HELD.bridge_cidr, HELD.fixed_cidr, Net("10.8.0.0/16"), 24),
        ),
        ({"pool_base": "10.8.0.0/26"}, (HELD.bridge_cidr, HELD.fixed_cidr, Net("10.8.0.0/26"), 28)),
        # A written poolSize alone resizes the kept pool.
        ({"pool_size": 26}, (HELD.bridge_cidr, HELD.fixed_cidr, HELD.pool_base, 26)),
    ],
)
def test_written_networks_win_over_kept_ones(
    explicit: dict[str, Any], expected: tuple[Any, ...]
) -> None:
    got = request_networks(written(**explicit), HELD).complete()
    assert got is not None
    assert (got.bridge_cidr, got.fixed_cidr, got.pool_base, got.pool_size) == expected


@pytest.mark.parametrize(
    ("explicit", "held", "words"),
    [
        ({"pool_size": 19}, None, "poolSize: 19 must be longer than the length of a pool the host"),
        ({"pool_size": 19}, HELD, "poolSize: 19 must be longer than the length of poolBase"),
        ({"pool_base": "10.8.0.0/30"}, None, "poolBase: 10.8.0.0/30 is too small to split"),
    ],
)
def test_a_pool_size_that_cannot_split_the_pool_names_the_key(
    explicit: dict[str, Any], held: InstanceNetworks | None, words: str
) -> None:
    with pytest.raises(ValueError, match=words):
        request_networks(written(**explicit), held)


def test_instance_networks_shape() -> None:
    assert HELD.props() == {
        "bridgeCidr": "172.16.3.1/24",
        "fixedCidr": "172.16.3.0/24",
        "poolBase": "172.20.0.0/19",
        "poolSize": 24,
    }


# --- the retired NetworkAllocation resource ---------------------------------------------------


def test_the_retired_allocation_provider_deletes_and_reads_without_io() -> None:
    """Stacks deployed before hosts chose networks hold a `<host>-networks` resource; their
    next `up` deletes it through the provider pickled in their state (by reference)."""
    provider = NetworkAllocationProvider()
    props = {"hostName": "build-1", "instances": [{"prefix": "a_"}], "allocation": {}}
    assert provider.delete("build-1-networks", props) is None
    read = provider.read("build-1-networks", props)
    assert (read.id, read.outs) == ("build-1-networks", props)
    assert vars(provider) == {}
    assert isinstance(serialize_provider(provider), str)
    assert type(dill.loads(dill.dumps(provider))) is NetworkAllocationProvider  # noqa: S301
    # Importing it pulls in neither the SSH transport nor the host operations.
    code = (
        "import sys, dockyard_resources.providers.networks;"
        "print(sorted(m for m in sys.modules if m.startswith(('dockyard_resources.transport',"
        " 'dockyard_resources.hostops', 'paramiko'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
