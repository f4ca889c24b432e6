"""The network claim (claim-networks.sh.j2 in the claim and install scripts, release-networks.sh.j2
in remove) run by bash against a scratch host: claim files in a temp directory, `ip` answering
with recorded routes and addresses, the host lock a temp file (see test_behaviour_guards.py).

What decides: the claim files left behind, the networks the claim script reports, and at which
moment (host lock held or not) the host's state is read and the claim is written.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from dockyard_resources.config.network_request import NetworkRequest
from dockyard_resources.hostops import instance as hostops
from dockyard_resources.hostops import network_claims
from dockyard_resources.render import common
from dockyard_resources.render.instance import InstanceIdentity
from tests.unit.test_behaviour_guards import PREFIX, Host, Ran, make_root
from tests.unit.test_behaviour_guards import host as host  # noqa: PLC0414 - the fixture
from tests.unit.test_instance_guards import OTHER, OWNER, unit

Net = ipaddress.IPv4Network
OPEN = NetworkRequest(None, None, None, 24)  # everything left to the host
# `ip` answering from recorded JSON ($DY_ADDRS, $DY_ROUTES); every call logs whether the host
# lock is held at that moment, and so does `mv` (the claim file is written by a rename).
IP_AND_LOCK_PROBE = f"""
dy_host_lock() {{ if flock -n {common.HOST_LOCK} true; then echo free; else echo held; fi; }}
ip() {{
  dy_log "ip $* host-lock=$(dy_host_lock)"
  case "$*" in
    "-j -4 addr show") printf '%s\\n' "${{DY_ADDRS:-[]}}" ;;
    "-j -4 route show table all") printf '%s\\n' "${{DY_ROUTES:-[]}}" ;;
    "link show dev "*) case " ${{DY_LINKS:-}} " in *" $4 "*) return 0 ;; *) return 1 ;; esac ;;
  esac
}}
mv() {{ dy_log "mv $* host-lock=$(dy_host_lock)"; command mv "$@"; }}
"""


def identity(host: Host, prefix: str = PREFIX, owner: str = OWNER) -> InstanceIdentity:
    return InstanceIdentity(prefix=prefix, root=str(host.base / prefix.rstrip("_")), owner=owner)


def claim_script(who: InstanceIdentity, request: NetworkRequest = OPEN) -> str:
    return network_claims.claim_script(
        who, request, guards=hostops.guards(), dir_guard=hostops._system_dir_patterns()
    )


def run(host: Host, script: str, **env: Any) -> Ran:
    encoded = {k: v if isinstance(v, str) else json.dumps(v) for k, v in env.items()}
    return host.run(IP_AND_LOCK_PROBE + script, **encoded)


def claimed(ran: Ran) -> dict[str, Any]:
    assert ran.code == 0, ran.out
    return network_claims.parse_claim(ran.out).props()


def seed_claim(host: Host, prefix: str, owner: str, bridge: str, pool: str) -> Path:
    host.claims.mkdir(parents=True, exist_ok=True)
    path = host.claims / prefix
    fixed = str(ipaddress.IPv4Interface(bridge).network)
    path.write_text(
        f"owner={owner}\nprefix={prefix}\nroot=/srv/{prefix}\nbridgeCidr={bridge}\n"
        f"fixedCidr={fixed}\npoolBase={pool}\npoolSize=24\n"
    )
    return path


def claim_file(host: Host, prefix: str = PREFIX) -> dict[str, str]:
    lines = (host.claims / prefix).read_text().splitlines()
    return dict(line.split("=", 1) for line in lines)


def addr(dev: str, cidr: str) -> dict[str, Any]:
    local, length = cidr.split("/")
    return {
        "ifname": dev,
        "addr_info": [{"family": "inet", "local": local, "prefixlen": int(length)}],
    }


# --- choosing: first fit among what is free on the host -------------------------------------


def test_an_empty_host_gives_the_first_candidates_and_records_them(host: Host) -> None:
    ran = run(host, claim_script(identity(host)))
    assert claimed(ran) == {
        "bridgeCidr": "172.16.0.1/24",
        "fixedCidr": "172.16.0.0/24",
        "poolBase": "172.18.0.0/19",
        "poolSize": 24,
    }
    assert claim_file(host) == {
        "owner": OWNER,
        "prefix": PREFIX,
        "root": identity(host).root,
        "bridgeCidr": "172.16.0.1/24",
        "fixedCidr": "172.16.0.0/24",
        "poolBase": "172.18.0.0/19",
        "poolSize": "24",
    }


def test_a_second_stack_gets_networks_nobody_on_the_host_holds(host: Host) -> None:
    """The reviewer's case: two single-instance stacks both got 172.16.0.0/24 and
    172.18.0.0/19. The second one's claim now avoids the first one's."""
    seed_claim(host, "dy1_", OTHER, "172.16.0.1/24", "172.18.0.0/19")
    got = claimed(run(host, claim_script(identity(host))))
    assert (got["bridgeCidr"], got["poolBase"]) == ("172.16.1.1/24", "172.19.0.0/19")
    assert (host.claims / "dy1_").read_text().startswith(f"owner={OTHER}\n")


def test_choosing_avoids_routes_addresses_and_instances_without_a_claim(host: Host) -> None:
    # An instance of an earlier Dockyard: no claim, its networks in etc/instance.json.
    legacy_root = host.base / "legacy"
    (legacy_root / "etc").mkdir(parents=True)
    networks = {"bridgeNetwork": "172.16.1.0/24", "poolBase": "172.19.0.0/19"}
    (legacy_root / "etc" / "instance.json").write_text(json.dumps({"networks": networks}))
    unit(host.units, "old_", str(legacy_root), None)
    routes = [
        {"dst": "default", "gateway": "10.0.2.2", "dev": "eth0"},
        {"dst": "172.16.0.0/23", "dev": "wg0"},  # covers 172.16.0.0/24 and .1
        {"dst": "172.16.2.1", "dev": "eth0", "type": "local"},  # not a unicast route
    ]
    addrs = [addr("eth1", "172.16.3.9/24"), addr("lo", "127.0.0.1/8")]
    got = claimed(run(host, claim_script(identity(host)), DY_ROUTES=routes, DY_ADDRS=addrs))
    assert (got["bridgeCidr"], got["poolBase"]) == ("172.16.2.1/24", "172.18.0.0/19")


def test_an_instance_is_not_in_its_own_way(host: Host) -> None:
    """Its own bridge and the bridges of its user-defined networks (addresses in the pool it
    held) are no conflict when its claim is made again, e.g. by a create run a second time."""
    seed_claim(host, PREFIX, OWNER, "172.16.5.1/24", "172.20.0.0/19")
    addrs = [addr(f"{PREFIX}docker0", "172.16.5.1/24"), addr("br-0123456789ab", "172.20.3.1/24")]
    routes = [{"dst": "172.20.3.0/24", "dev": "br-0123456789ab"}]
    got = claimed(run(host, claim_script(identity(host)), DY_ADDRS=addrs, DY_ROUTES=routes))
    assert (got["bridgeCidr"], got["poolBase"]) == ("172.16.5.1/24", "172.20.0.0/19")


def test_a_part_given_is_kept_and_the_other_avoids_it(host: Host) -> None:
    request = NetworkRequest(None, None, Net("172.16.0.0/22"), 24)
    got = claimed(run(host, claim_script(identity(host), request)))
    assert (got["bridgeCidr"], got["poolBase"]) == ("172.16.4.1/24", "172.16.0.0/22")


def test_running_out_names_the_key_and_the_fix(host: Host) -> None:
    request = NetworkRequest(None, None, Net("172.16.0.0/16"), 24)  # covers every bridge
    ran = run(host, claim_script(identity(host), request))
    assert ran.code == 3
    assert "bridgeCidr: no free /24 in 172.16.0.0/16 left on this host; set bridgeCidr" in ran.out
    assert not (host.claims / PREFIX).exists()


# --- one locked step: check and record -------------------------------------------------------


def test_claims_made_at_the_same_time_never_overlap(host: Host) -> None:
    """Six creates of six stacks at once: each checks and records under the host lock, so
    each sees the claims of those before it."""
    people = [identity(host, f"c{n}_", f"team{n}/prod/h-c{n}_") for n in range(6)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        runs = list(pool.map(lambda who: run(host, claim_script(who)), people))
    got = [claimed(ran) for ran in runs]
    nets = [Net(g["bridgeCidr"], strict=False) for g in got] + [Net(g["poolBase"]) for g in got]
    for a, b in itertools.combinations(nets, 2):
        assert not a.overlaps(b), (a, b)
    assert sorted(p.name for p in host.claims.iterdir()) == [f"c{n}_" for n in range(6)]


def test_the_host_is_read_and_the_claim_written_while_the_host_lock_is_held(host: Host) -> None:
    ran = run(host, claim_script(identity(host)))
    assert ran.code == 0, ran.out
    reads = [c for c in ran.calls if c.startswith("ip -j")]
    writes = [c for c in ran.calls if c.startswith("mv ") and f"/{PREFIX} " in c]
    assert len(reads) == 2 and len(writes) == 1, ran.calls
    assert all(c.endswith("host-lock=held") for c in reads + writes), ran.calls


def test_install_claims_under_the_host_lock_before_it_lets_go_of_it(host: Host) -> None:
    """The install of an instance whose networks are known claims them in its locked part,
    right after the ownership checks: before the root, user or unit exist."""
    spec = host.spec()
    ran = run(host, hostops._install_script(spec))
    assert ran.code == 0, ran.out
    written = [i for i, c in enumerate(ran.calls) if c.startswith("mv ") and f"/{PREFIX} " in c]
    assert len(written) == 1 and ran.calls[written[0]].endswith("host-lock=held"), ran.calls
    first_change = next(i for i, c in enumerate(ran.calls) if c.startswith(("groupadd", "mv ")))
    assert first_change == written[0], ran.calls
    assert claim_file(host)["bridgeCidr"] == str(spec.bridge_cidr)
    assert claim_file(host)["owner"] == OWNER


def test_install_refuses_networks_another_owner_holds_and_changes_nothing(host: Host) -> None:
    spec = host.spec()  # bridge 172.22.147.1/24, pool 172.28.0.0/16
    theirs = seed_claim(host, "dy7_", OTHER, "172.30.0.1/24", "172.28.64.0/19")
    before = theirs.read_text()
    ran = run(host, hostops._install_script(spec))
    assert ran.code == 3, ran.out
    assert (
        f"poolBase 172.28.0.0/16 overlaps the pool 172.28.64.0/19 of Dockyard instance dy7_"
        f" ({OTHER})" in ran.out
    )
    assert not (host.claims / PREFIX).exists()
    assert theirs.read_text() == before
    assert not Path(spec.root).exists()
    assert [c for c in ran.calls if not c.startswith("ip ")] == []  # no user, group or unit


def test_install_refuses_an_address_on_another_interface(host: Host) -> None:
    ran = run(
        host, hostops._install_script(host.spec()), DY_ADDRS=[addr("fake0", "172.22.147.9/24")]
    )
    assert ran.code == 3, ran.out
    assert "bridgeCidr 172.22.147.1/24 overlaps the address 172.22.147.9/24 on fake0" in ran.out


def test_a_claim_of_this_prefix_by_another_owner_is_refused(host: Host) -> None:
    seed_claim(host, PREFIX, OTHER, "172.16.9.1/24", "172.25.0.0/19")
    ran = run(host, claim_script(identity(host)))
    assert ran.code == 3
    assert f"are claimed by {OTHER}" in ran.out and f"not by {OWNER}" in ran.out
    assert claim_file(host)["owner"] == OTHER


def test_an_instance_holding_exactly_its_networks_is_not_checked_again(host: Host) -> None:
    """An update that changes no network does not fail on a route added since."""
    spec = host.spec()
    assert run(host, hostops._install_script(spec)).code == 0
    clash = [{"dst": "172.28.0.0/16", "dev": "wg0"}]
    again = run(host, hostops._install_script(spec), DY_ROUTES=clash)
    assert again.code == 0, again.out
    assert not [c for c in again.calls if c.startswith("ip -j")], again.calls
    # Changing the pool checks again, and the new pool is refused.
    moved = host.spec()
    moved = type(moved).from_props({**_props(moved), "poolBase": "172.28.0.0/17"})
    refused = run(host, hostops._install_script(moved), DY_ROUTES=clash)
    assert refused.code == 3 and "the host route 172.28.0.0/16 dev wg0" in refused.out


def _props(spec: Any) -> dict[str, Any]:
    return {
        "prefix": spec.prefix,
        "root": spec.root,
        "owner": spec.owner,
        "dockerDir": spec.docker_dir,
        "sysboxDir": spec.sysbox_dir,
        "bridgeCidr": str(spec.bridge_cidr),
        "fixedCidr": str(spec.fixed_cidr),
        "poolBase": str(spec.pool_base),
        "poolSize": spec.pool_size,
        "members": [],
    }


# --- release: only by the owner ----------------------------------------------------------------


def test_remove_releases_its_own_claim_last(host: Host) -> None:
    spec = host.spec()
    make_root(Path(spec.root), OWNER)
    unit(host.units, PREFIX, spec.root, OWNER)
    seed_claim(host, PREFIX, OWNER, str(spec.bridge_cidr), str(spec.pool_base))
    ran = run(host, hostops._remove_script(spec, []))
    assert ran.code == 0, ran.out
    assert not host.claims.exists()  # the last claim takes the directory with it


def test_remove_leaves_a_claim_of_another_owner(host: Host) -> None:
    spec = host.spec()
    seed_claim(host, PREFIX, OTHER, str(spec.bridge_cidr), str(spec.pool_base))
    seed_claim(host, "dy7_", OTHER, "172.30.0.1/24", "172.29.0.0/19")
    ran = run(host, hostops._remove_script(spec, []))
    assert ran.code == 0, ran.out
    assert f"network claim {host.claims / PREFIX} left in place: it belongs to {OTHER}" in ran.out
    assert claim_file(host)["owner"] == OTHER
    assert (host.claims / "dy7_").exists()


def test_remove_of_another_owners_instance_keeps_its_claim(host: Host) -> None:
    spec = host.spec()
    make_root(Path(spec.root), OTHER)
    unit(host.units, PREFIX, spec.root, OTHER)
    seed_claim(host, PREFIX, OTHER, str(spec.bridge_cidr), str(spec.pool_base))
    ran = run(host, hostops._remove_script(spec, []))
    assert ran.code == 0 and "left alone" in ran.out, ran.out
    assert claim_file(host)["owner"] == OTHER


def test_a_second_owner_installing_the_same_networks_is_refused(host: Host) -> None:
    """The reviewer's case at the install itself: the other stack's instance holds these
    networks (another prefix and root), so installing them again is refused."""
    first = host.spec()
    assert run(host, hostops._install_script(first)).code == 0
    props = {**_props(first), "prefix": "zq8_", "root": str(host.base / "zq8"), "owner": OTHER}
    second = type(first).from_props(props)
    ran = run(host, hostops._install_script(second))
    assert ran.code == 3, ran.out
    assert f"overlaps the bridge {first.bridge_cidr} of Dockyard instance {PREFIX}" in (ran.out)
    assert not Path(second.root).exists()
