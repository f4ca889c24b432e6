#!/bin/sh
# Build (or find cached) the offline STAND-IN artifacts and print their paths as JSON.
set -eu
repo=$(cd "$(dirname "$0")/../.." && pwd)
python=${PYTHON:-$repo/.venv/bin/python}
cd "$repo"
exec "$python" -m tools.standins "$@"
