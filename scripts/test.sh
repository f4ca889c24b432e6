#!/usr/bin/env bash
# The test part of `make test` (lint, types and caches ran before): every pytest group, then
# the testbed stack through the ci command (up, no-change preview, acceptance suite, destroy).
# One after the other: side by side they took as long in total (measured; the VMs under TCG
# keep both cores busy), with slower and noisier tests. Both always run; the exit code is
# non-zero when either failed. Prints the wall times.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
started=$SECONDS

# Fresh state for every run: the file backend, its passphrase, stacks and `ci` work dirs start
# empty (as on a new machine), and no Pulumi login or backend of the developer's is seen. Only
# the content-addressed caches under $DOCKYARD_CACHE (CLI build, VM images and templates,
# test images) carry over. Removed at the end unless DOCKYARD_KEEP_STATE=1.
cache=${DOCKYARD_CACHE:-$HOME/.cache/dockyard}
mkdir -p "$cache/test-runs"
DOCKYARD_STATE=$(mktemp -d "$cache/test-runs/run-$(date +%Y%m%d-%H%M%S)-XXXXXX")
export DOCKYARD_STATE
export PULUMI_HOME="$DOCKYARD_STATE/pulumi-home"
unset PULUMI_BACKEND_URL PULUMI_ACCESS_TOKEN PULUMI_CONFIG_PASSPHRASE PULUMI_CONFIG_PASSPHRASE_FILE
cleanup() { [ "${DOCKYARD_KEEP_STATE:-}" = 1 ] || rm -rf "$DOCKYARD_STATE"; }
trap cleanup EXIT
echo "test state (starts empty): $DOCKYARD_STATE"
minutes() { awk -v s="$1" 'BEGIN { printf "%.1f min", s / 60 }'; }
status=0

.venv/bin/python -m pytest "$@" || status=$?

acceptance_started=$SECONDS
bindir=$(scripts/pulumi-cli.sh) || exit 1
PATH="$bindir:$PATH" .venv/bin/python -m dockyard_resources ci \
  --stack-file stacks/Pulumi.testbed.yaml || status=$?

echo "acceptance (ci on stacks/Pulumi.testbed.yaml): $(minutes $((SECONDS - acceptance_started)))"
echo "tests total: $(minutes $((SECONDS - started)))"
exit "$status"
