"""Instance-scoped iptables rules (pure).

Every dockerd runs with `--iptables=false` because Docker's chain names are global; each
instance instead owns a handful of explicit rules for its bridge and its address pool. Every
rule carries the comment `dockyard:<prefix>` so that inspection and removal find exactly this
instance's rules and never another instance's, nor Docker's own chains.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from dockyard_resources.render.common import quote, quote_all

COMMENT_PREFIX = "dockyard:"


@dataclass(frozen=True)
class Rule:
    """One rule: its table, chain and match/target arguments (without the comment)."""

    table: str
    chain: str
    spec: tuple[str, ...]

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
) -> list[Rule]:
    """FORWARD and MASQUERADE rules for one instance's bridge and pool, in insertion order."""
    pool = str(pool_base)
    fixed = str(fixed_cidr)
    established = ("-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED")
    return [
        # Containers on the default bridge talk to each other and to the outside...
        Rule("filter", "FORWARD", ("-i", bridge, "-o", bridge, "-j", "ACCEPT")),
        Rule("filter", "FORWARD", ("-i", bridge, "!", "-o", bridge, "-j", "ACCEPT")),
        # ...and receive replies.
        Rule("filter", "FORWARD", ("-o", bridge, *established, "-j", "ACCEPT")),
        # User-defined networks get bridges named br-<id> that we cannot know in advance,
        # so they are matched by address instead.
        Rule("filter", "FORWARD", ("-s", pool, "-d", pool, "-j", "ACCEPT")),
        Rule("filter", "FORWARD", ("-s", pool, "!", "-d", pool, "-j", "ACCEPT")),
        Rule("filter", "FORWARD", ("-d", pool, *established, "-j", "ACCEPT")),
        Rule("nat", "POSTROUTING", ("-s", fixed, "!", "-o", bridge, "-j", "MASQUERADE")),
        Rule("nat", "POSTROUTING", ("-s", pool, "!", "-d", pool, "-j", "MASQUERADE")),
    ]


def _iptables(table: str, op: str, chain: str, args: tuple[str, ...]) -> str:
    # -w: wait for the xtables lock instead of failing when another instance is busy.
    return f"iptables -w -t {quote(table)} {op} {quote(chain)} {quote_all(args)}"


def check_command(rule: Rule, tag: str) -> str:
    return _iptables(rule.table, "-C", rule.chain, rule.args(tag))


def add_commands(rules: list[Rule], tag: str) -> str:
    """Idempotent insertion: each rule is inserted only when absent."""
    lines = []
    for rule in rules:
        insert = _iptables(rule.table, "-I", rule.chain, rule.args(tag))
        lines.append(f"{check_command(rule, tag)} 2>/dev/null || {insert}")
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
