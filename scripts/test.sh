#!/usr/bin/env bash
# The test part of `make test` (lint, types and caches ran before): every pytest group and,
# beside it, the testbed stack through the ci command (up, no-change preview, acceptance
# suite, destroy). They run at the same time because both mostly wait on their own VM
# (measured: the two in a row took 53 min, side by side see docs/testing.md); the ci
# command's output goes to a log file, printed when pytest is done.
# Both always run; the exit code is non-zero when either failed. Prints the wall times.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
started=$SECONDS
minutes() { awk -v s="$1" 'BEGIN { printf "%.1f min", s / 60 }'; }

bindir=$(scripts/pulumi-cli.sh) || exit 1
ci_log=$(mktemp "${TMPDIR:-/tmp}/dockyard-ci.XXXXXX.log")
echo "ci (testbed stack + acceptance suite) runs beside pytest; its log: $ci_log"
PATH="$bindir:$PATH" .venv/bin/python -m dockyard_resources ci \
  --stack-file stacks/Pulumi.testbed.yaml >"$ci_log" 2>&1 &
ci_pid=$!
# Ctrl-C or a failure here must not leave the ci run (and its VM) behind: the ci command
# destroys its stack when it gets SIGTERM.
trap 'kill -TERM "$ci_pid" 2>/dev/null; wait "$ci_pid"' INT TERM

status=0
.venv/bin/python -m pytest "$@" || status=$?
pytest_done=$SECONDS

ci_status=0
wait "$ci_pid" || ci_status=$?
trap - INT TERM
echo
echo "=============================== ci (testbed stack) ==============================="
cat "$ci_log"
echo "ci: exit code $ci_status after $(minutes $((SECONDS - started)))"
[ "$ci_status" -eq 0 ] || status=1
echo "pytest: $(minutes "$pytest_done") of wall time; tests total: $(minutes $((SECONDS - started)))"
exit "$status"
