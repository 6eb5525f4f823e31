#!/usr/bin/env bash
# Command 2 of the README: run the test suite in the environment made by ./setup.sh.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/python ]; then
  echo "no ./.venv: run ./setup.sh first" >&2
  exit 2
fi
export MALLOC_MMAP_THRESHOLD_=4000000000 MALLOC_TRIM_THRESHOLD_=4000000000
exec .venv/bin/python -m pytest "$@"
