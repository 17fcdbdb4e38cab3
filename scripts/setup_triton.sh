#!/usr/bin/env bash
# Builds .triton-venv: the real `tritonserver` (from the nvidia-pytriton wheel) with its python backend,
# in an environment of its own, from requirements-triton.lock.
#
# Why its own environment, and why Debian's interpreter: the wheel pins numpy<2 (the main .venv has
# numpy 2), and the python backend stub is linked against the system libpython3.11, so the packages the
# models import must be built for that interpreter. A stamp (the lock's hash) makes a second run free.
#
#   scripts/setup_triton.sh            build or confirm the environment
#   scripts/setup_triton.sh --relock   rebuild from the top-level pins below and rewrite the lock
#
# Exit status 3 means "Triton cannot run on this kind of machine" (the reason is printed); tests skip on
# it and fail on any other error.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.triton-venv
LOCK=requirements-triton.lock
PYTHON=${MLMESH_TRITON_PYTHON:-/usr/bin/python3.11}
STAMP=$VENV/.mlmesh-triton-stamp
# What the python-backend models need; exact versions of everything live in the lock.
TOP_LEVEL=(nvidia-pytriton==0.7.0 numpy==1.26.4 torch==2.13.0 onnxruntime==1.32.0 safetensors==0.8.0)
STAMP_VERSION=1

pip_install() { "$VENV/bin/python" -m pip install --quiet "$@" 2> >(grep -v '^WARNING: Location' >&2); }
say() { echo "[setup_triton] $*"; }
impossible() { echo "[setup_triton] cannot run Triton here: $*" >&2; exit 3; }
t0=$(date +%s.%N)

[[ "$(uname -s)/$(uname -m)" == Linux/x86_64 ]] || impossible "the wheel ships a linux x86_64 binary only ($(uname -s)/$(uname -m))"
glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}')
[[ -n "$glibc" ]] && printf '%s\n2.35\n' "$glibc" | sort -V -C && [[ "$glibc" != 2.35 ]] \
  && impossible "glibc $glibc is older than the 2.35 the binary needs"
[[ -x "$PYTHON" ]] || impossible "$PYTHON is missing (the python backend stub links the system libpython3.11)"
"$PYTHON" -c 'import sys, venv, ensurepip; assert sys.version_info[:2] == (3, 11)' 2>/dev/null \
  || impossible "$PYTHON is not a Python 3.11 with venv+ensurepip (Debian: apt-get install python3.11-venv)"

relock=0
[[ "${1:-}" == --relock ]] && relock=1
[[ $relock == 1 || -f $LOCK ]] || { echo "[setup_triton] $LOCK is missing; run with --relock" >&2; exit 1; }

want="v$STAMP_VERSION $( [[ $relock == 1 ]] && echo relock || sha256sum "$LOCK" | cut -d' ' -f1)"
if [[ $relock == 0 && -f $STAMP && "$(cat "$STAMP")" == "$want" ]]; then
  say "up to date ($VENV matches $LOCK)"
  exit 0
fi

# A fresh environment every time the lock changes: no stale packages, no half-finished earlier run.
say "creating $VENV with $PYTHON ($("$PYTHON" -V 2>&1))"
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
if [[ $relock == 1 ]]; then
  say "installing ${TOP_LEVEL[*]}"
  pip_install "${TOP_LEVEL[@]}"
else
  say "installing $LOCK (torch comes from local disk where a CPU wheel is there, ~25 s)"
  pip_install -r "$LOCK"
fi
"$VENV/bin/python" - <<'PY'
import numpy, onnxruntime, safetensors, torch  # what the models import; numpy must be 1.x
assert numpy.__version__.startswith("1."), numpy.__version__
PY

TS=$("$VENV/bin/python" -c 'import pathlib, pytriton; print(pathlib.Path(pytriton.__file__).parent / "tritonserver")')
say "copying the Python 3.11 backend stub into $TS/backends/python/"
cp "$TS/python_backend_stubs/3.11/triton_python_backend_stub" "$TS/backends/python/"
missing=$(ldd "$TS/backends/python/triton_python_backend_stub" "$TS/bin/tritonserver" | grep 'not found' || true)
[[ -z "$missing" ]] || { echo "[setup_triton] unresolved libraries: $missing (Debian: apt-get install libpython3.11)" >&2; exit 1; }
"$TS/bin/tritonserver" --help >/dev/null 2>&1 || [[ $? == 1 ]]  # --help exits 1; a loader failure would be 127

if [[ $relock == 1 ]]; then
  { echo "# Triton's own environment (.triton-venv, Debian python3.11). Built by scripts/setup_triton.sh;"
    echo "# regenerate with scripts/setup_triton.sh --relock. torch 2.13.0 is the CPU wheel from local disk."
    "$VENV/bin/python" -m pip freeze --exclude-editable \
      | sed -E 's/^nvidia-pytriton @ .*/nvidia-pytriton==0.7.0/; s/^torch==([0-9.]+)\+cpu$/torch==\1/'
  } > "$LOCK"
  say "wrote $LOCK ($(grep -vc '^#' "$LOCK") packages)"
  want="v$STAMP_VERSION $(sha256sum "$LOCK" | cut -d' ' -f1)"
fi
echo "$want" > "$STAMP"
say "ready in $(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $t0}") s: $TS/bin/tritonserver"
