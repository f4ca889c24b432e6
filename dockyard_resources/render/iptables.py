"""Instance-scoped iptables rules (pure).

Every dockerd runs with `--iptables=false` because Docker's chain names are global; each
instance instead owns explicit rules for its bridge and its address pool in filter FORWARD and
nat POSTROUTING. Every rule carries the comment `dockyard:<prefix>` so that inspection and
removal find exactly this instance's rules and never another instance's, nor Docker's own
chains.

Isolation between instances (docs/security.md) rests on where the rules go, not on a chain of
their own: instances are created, updated and removed in any order and in parallel, so the
rule sets must give the same verdicts however they interleave.

- "Guard" rules are inserted at the top of FORWARD. Each one names this instance on the
  receiving side (out via its bridge, or out via a `br-*` bridge to its pool), or is a
  link-local DROP: no ACCEPT guard of one instance can match a packet a guard of another
  instance is about, and the link-local DROPs of all instances give the same verdict, so
  their relative order does not matter. Within one instance the guards keep the listed
  order: link-local traffic is dropped first, then replies and the instance's own traffic
  are accepted before everything else toward its containers is dropped.
- "Egress" rules (this instance's containers to anywhere else) are appended at the end of
  FORWARD, below every instance's guards: a container's new connection toward another
  instance meets that instance's DROP before it meets its own instance's generic ACCEPT.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from dockyard_resources.render.common import quote, quote_all

COMMENT_PREFIX = "dockyard:"
# Link-local addresses, home of cloud instance metadata (169.254.169.254 on AWS, GCP, Azure,
# Hetzner, OpenStack, ...; 169.254.170.2 for ECS task credentials): it hands out the host's
# credentials and its user data, which carries the host's private SSH key (cloud/cloudinit.py).
LINK_LOCAL = "169.254.0.0/16"
# Docker names the bridge of every user-defined network `br-<12 hex digits of the network id>`,
# unknown in advance: `br-+` (iptables' wildcard) together with the pool address binds pool
# rules to such bridges, so a pool source arriving on eth0 is not taken for a container.
POOL_BRIDGES = "br-+"


@dataclass(frozen=True)
class Rule:
    """One rule: its table, chain and match/target arguments (without the comment).

    `append` rules go to the end of the chain (`-A`); the others are inserted at its top
    (`-I`), keeping the order in which they are listed.
    """

    table: str
    chain: str
    spec: tuple[str, ...]
    append: bool = False

    def args(self, tag: str) -> tuple[str, ...]:
        """The rule with its tag, the comment placed before the target as iptables -S prints."""
        at = self.spec.index("-j")
        return (*self.spec[:at], "-m", "comment", "--comment", tag, *self.spec[at:])


def tag_for(prefix: str) -> str:
    return COMMENT_PREFIX + prefix


def instance_rules(
    bridge: str,
    fixed_cidr: ipaddress.IPv4Network,
    pool_base: ipaddress.IPv4Network,
    *,
    isolate: bool = True,
) -> list[Rule]:
    """Every rule of one instance, in the order they take effect in their chain.

    `isolate=False` (`networkIsolation: false`) leaves out the two DROPs that refuse new
    connections toward this instance's containers from anywhere but the instance itself.
    """
    pool = str(pool_base)
    fixed = str(fixed_cidr)
    replies = ("-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED")
    # Where this instance's packets come from / go to: its default bridge, or a bridge of one
    # of its user-defined networks together with the pool address.
    from_bridge = ("-i", bridge)
    from_pool = ("-i", POOL_BRIDGES, "-s", pool)
    to_bridge = ("-o", bridge)
    to_pool = ("-o", POOL_BRIDGES, "-d", pool)

    def guard(*spec: str) -> Rule:
        return Rule("filter", "FORWARD", spec)

    rules = [
        # No container reaches the cloud metadata service (credentials, user data), whatever
        # source address it forges: matched by the interface alone, every `br-*` bridge
        # included (the bridges of user-defined networks cannot be named in advance).
        guard(*from_bridge, "-d", LINK_LOCAL, "-j", "DROP"),
        guard("-i", POOL_BRIDGES, "-d", LINK_LOCAL, "-j", "DROP"),
        # Replies to connections the containers opened (or that were let in).
        guard(*to_bridge, *replies, "-j", "ACCEPT"),
        guard(*to_pool, *replies, "-j", "ACCEPT"),
        # The instance's own networks reach each other (same bridge, bridge <-> pool, pool
        # <-> pool: its user-defined networks are not told apart, see docs/security.md).
        guard(*from_bridge, *to_bridge, "-j", "ACCEPT"),
        guard(*from_pool, *to_bridge, "-j", "ACCEPT"),
        guard(*from_bridge, *to_pool, "-j", "ACCEPT"),
        guard(*from_pool, *to_pool, "-j", "ACCEPT"),
    ]
    if isolate:
        # Anything else toward the containers: other instances, other host interfaces.
        rules += [
            guard(*to_bridge, "-j", "DROP"),
            guard(*to_pool, "-j", "DROP"),
        ]
    rules += [
        # The containers reach everything else (the outside world), below every guard.
        Rule("filter", "FORWARD", (*from_bridge, "-j", "ACCEPT"), append=True),
        Rule("filter", "FORWARD", (*from_pool, "-j", "ACCEPT"), append=True),
        Rule("nat", "POSTROUTING", ("-s", fixed, "!", "-o", bridge, "-j", "MASQUERADE")),
        Rule("nat", "POSTROUTING", ("-s", pool, "!", "-d", pool, "-j", "MASQUERADE")),
    ]
    return rules


def _iptables(table: str, op: str, chain: str, args: tuple[str, ...]) -> str:
    # -w: wait for the xtables lock instead of failing when another instance is busy.
    return f"iptables -w -t {quote(table)} {op} {quote(chain)} {quote_all(args)}"


def check_command(rule: Rule, tag: str) -> str:
    return _iptables(rule.table, "-C", rule.chain, rule.args(tag))


def add_commands(rules: list[Rule], tag: str) -> str:
    """Idempotent insertion: each rule is added only when absent.

    Top rules are inserted last-first, so that they end up in the listed order; appended
    rules follow in the listed order.
    """
    top = [r for r in rules if not r.append]
    end = [r for r in rules if r.append]
    lines = []
    for rule in [*reversed(top), *end]:
        op = "-A" if rule.append else "-I"
        add = _iptables(rule.table, op, rule.chain, rule.args(tag))
        lines.append(f"{check_command(rule, tag)} 2>/dev/null || {add}")
    return "\n".join(lines) + "\n"


def all_present_command(rules: list[Rule], tag: str) -> str:
    """A command list that succeeds only when every rule is present."""
    return " && ".join(f"{check_command(r, tag)} 2>/dev/null" for r in rules)


def sweep_function(tag: str) -> str:
    """A bash function `dockyard_sweep_rules` deleting every rule carrying exactly `tag`.

    Used on stop and delete, and before adding the current rules, so rules left by an older
    configuration (e.g. a changed pool) disappear too. Tags hold only [a-z0-9_:], so
    `iptables -S` prints them unquoted and plain word splitting is safe.
    """
    return f"""\
dockyard_sweep_rules() {{
  local table chain line
  for table in filter nat; do
    for chain in FORWARD POSTROUTING; do
      [ "$table/$chain" = filter/POSTROUTING ] && continue
      [ "$table/$chain" = nat/FORWARD ] && continue
      while IFS= read -r line; do
        # Some iptables builds quote comments in -S output; the delete needs the bare tag.
        line=${{line//\\"{tag}\\"/{tag}}}
        case " $line " in
          *" --comment {tag} "*)
            # shellcheck disable=SC2086
            iptables -w -t "$table" -D ${{line#-A }} || true ;;
        esac
      done < <(iptables -w -t "$table" -S "$chain" 2>/dev/null | grep -F -- {quote(tag)} || true)
    done
  done
}}
"""
