#!/usr/bin/env bash
# Command 2 of the README: run the test suite in the environment made by ./setup.sh.
# Test files are spread over parallel workers (pytest-xdist; each worker starts its own private
# mongod in tests/conftest.py): OOD_TEST_WORKERS workers, by default the CPU count capped at 4.
# Pass -n yourself (-n 0: one process) to choose; any other arguments go to pytest unchanged.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/python ]; then
  echo "no ./.venv: run ./setup.sh first" >&2
  exit 2
fi
export MALLOC_MMAP_THRESHOLD_=4000000000 MALLOC_TRIM_THRESHOLD_=4000000000
workers=()
case " $* " in
  *" -n "*|*" -n"[0-9]*|*" --numprocesses"*|*" -p no:xdist "*) ;;
  *)
    if .venv/bin/python -c "import xdist" 2>/dev/null; then
      n=${OOD_TEST_WORKERS:-$(nproc 2>/dev/null || echo 2)}
      if [ "$n" -gt 4 ]; then n=4; fi
      # whole files per worker: module fixtures (a demo dataset, a browser, a PostgreSQL) are built once;
      # files in collection order (tests/conftest.py puts the slowest first), not by their number of tests
      workers=(-n "$n" --dist loadfile --no-loadscope-reorder)
    fi
    ;;
esac
exec .venv/bin/python -m pytest "${workers[@]}" "$@"
