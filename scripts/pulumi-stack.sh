#!/usr/bin/env bash
# What `make up|preview|destroy|refresh` runs:
#   scripts/pulumi-stack.sh up|preview|destroy|refresh STACK [extra pulumi args]
# Finds or builds the Pulumi CLI and, for the offline testbed stack, links the test bed's
# artifacts; `python -m dockyard_resources deploy` does the rest (validation, the backend
# `pulumi` would use or the default local one, the stack on first use, the operation).
set -euo pipefail
cd "$(dirname "$0")/.."

op=${1:?usage: pulumi-stack.sh up|preview|destroy|refresh STACK}
stack=${2:?usage: pulumi-stack.sh up|preview|destroy|refresh STACK}
shift 2

stack_file="stacks/Pulumi.$stack.yaml"
if [ ! -f "$stack_file" ]; then
  echo "dockyard: no stack file $stack_file." >&2
  echo "  Stacks live in stacks/Pulumi.<stack>.yaml; copy stacks/Pulumi.example.yaml to start one." >&2
  exit 1
fi

# The offline testbed stack installs the test bed's artifacts (real ones from
# $DOCKYARD_TEST_ARTIFACTS, the official downloads, or STAND-INs): choose and link them so
# its sha256File pins exist. The choice is printed.
if [ "$stack" = testbed ]; then
  .venv/bin/python -m tools.testbed >/dev/null
fi

bindir=$(scripts/pulumi-cli.sh) || { echo "dockyard: could not find or build the Pulumi CLI (see above)." >&2; exit 1; }
export PATH="$bindir:$PATH"

yes=()
case "${YES:-}" in 1|true|yes) yes=(--yes) ;; esac
exec .venv/bin/python -m dockyard_resources deploy "$op" "$stack_file" "${yes[@]}" -- "$@"
