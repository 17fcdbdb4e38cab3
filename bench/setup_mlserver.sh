#!/usr/bin/env bash
# Builds .bench-venvs/mlserver: Seldon MLServer in an environment of its own, used only by bench/serving.py
# for its tensor-protocol comparison (MLServer pins its own protobuf/grpc/fastapi set; it must never touch
# .venv). The bench's model there is a numpy MLP (bench/_mlserver_model.py), so no torch is installed.
# A stamp of the pins makes a second run free.
#
#   bench/setup_mlserver.sh     exit 0: ready; exit 3: cannot be installed here (the reason is printed)
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.bench-venvs/mlserver
PYTHON=${MLMESH_BENCH_PYTHON:-python3.11}
PINS=(mlserver==1.7.1 "numpy<2.3")
STAMP=$VENV/.mlmesh-stamp
want="${PINS[*]}"

if [[ -f $STAMP && "$(cat "$STAMP")" == "$want" ]]; then
  echo "[setup_mlserver] up to date ($VENV)"
  exit 0
fi
"$PYTHON" -c 'import sys, venv, ensurepip; assert (3, 9) <= sys.version_info[:2] < (3, 13)' 2>/dev/null \
  || { echo "[setup_mlserver] cannot install: $PYTHON is not a Python 3.9-3.12 with venv" >&2; exit 3; }

echo "[setup_mlserver] creating $VENV with $("$PYTHON" -V 2>&1); installing ${PINS[*]}"
rm -rf "$VENV"
mkdir -p "$(dirname "$VENV")"
"$PYTHON" -m venv "$VENV"
# pip's notes about this machine's local index folders are noise here; real errors still show.
if ! "$VENV/bin/python" -m pip install --quiet "${PINS[@]}" 2> >(grep -v '^WARNING: Location' >&2); then
  echo "[setup_mlserver] cannot install: pip could not install ${PINS[*]} (see above)" >&2
  exit 3
fi
"$VENV/bin/mlserver" --help >/dev/null
echo "$want" > "$STAMP"
echo "[setup_mlserver] ready: $("$VENV/bin/python" -m pip show mlserver | grep ^Version)"
