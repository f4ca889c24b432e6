"""The on-host program of MetadataBlock run by bash against a stubbed `iptables`.

`up` adds the rule once, `check` finds it, and `down` removes every rule carrying the tag,
whether iptables prints the comment quoted (iptables-nft) or bare (iptables-legacy): on the
QEMU test host `down` removed nothing while the comment was printed quoted.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from dockyard_resources.render import metadata_block

# A fake iptables keeping its OUTPUT chain in a file: -C/-I/-D on the exact argument list,
# -S prints each rule with the comment quoted when $QUOTE is set.
FAKE_IPTABLES = r"""#!/bin/bash
chain="$FAKE_DIR/output"
touch "$chain"
[ "$1" = -w ] && shift
op=$1; shift
rule="$*"
case "$op" in
  -C) grep -qxF -- "$rule" "$chain" ;;
  -I) { echo "$rule"; cat "$chain"; } >"$chain.new" && mv "$chain.new" "$chain" ;;
  -D) grep -qxF -- "$rule" "$chain" || { echo "iptables: Bad rule" >&2; exit 1; }
      grep -vxF -- "$rule" "$chain" >"$chain.new" || true; mv "$chain.new" "$chain" ;;
  -S) echo "-P OUTPUT ACCEPT"
      while IFS= read -r line; do
        if [ -n "${QUOTE:-}" ]; then
          line=$(sed -E 's/--comment ([^ ]+)/--comment "\1"/' <<<"$line")
        fi
        echo "-A $line"
      done <"$chain" ;;
  *) exit 2 ;;
esac
"""


def run(program: Path, fake: Path, action: str, quote: bool) -> subprocess.CompletedProcess[str]:
    text = program.read_text().replace("export PATH=", "export PATH=$FAKE_DIR:", 1)
    env = {**os.environ, "FAKE_DIR": str(fake), "QUOTE": "1" if quote else ""}
    return subprocess.run(
        ["bash", "-c", text, "program", action],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize("quote", [True, False], ids=["nft-quoted", "legacy-bare"])
def test_down_removes_the_tagged_rule_however_iptables_prints_it(
    tmp_path: Path, quote: bool
) -> None:
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "iptables").write_text(FAKE_IPTABLES)
    (fake / "iptables").chmod(0o755)
    program = tmp_path / "program.sh"
    program.write_text(metadata_block.render_program())
    (fake / "output").write_text("-d 10.0.0.1/32 -j ACCEPT\n")  # someone else's rule

    for _ in range(2):  # idempotent: one rule after two runs
        assert run(program, fake, "up", quote).returncode == 0
    rules = (fake / "output").read_text().splitlines()
    assert len([r for r in rules if metadata_block.RULE_TAG in r]) == 1, rules
    assert run(program, fake, "check", quote).returncode == 0

    down = run(program, fake, "down", quote)
    assert down.returncode == 0, down.stderr
    assert (fake / "output").read_text().splitlines() == ["-d 10.0.0.1/32 -j ACCEPT"]
    assert run(program, fake, "check", quote).returncode != 0
