#!/usr/bin/env bash
# Builds .bench-venvs/mlserver: Seldon MLServer in an environment of its own, used only by the benches
# (MLServer pins its own protobuf/grpc/fastapi set; it must never touch .venv):
#   - bench/serving.py's tensor-protocol comparison: a numpy MLP (bench/_mlserver_model.py), so no torch;
#   - bench/byom.py: MLServer's own runtimes, mlserver-xgboost and mlserver-sklearn, on the same models
#     mlmesh imports. mlserver-xgboost requires the `xgboost` distribution, which pulls ~700 MB of CUDA/NCCL
#     wheels on this CPU machine: it is installed with --no-deps next to `xgboost-cpu` (the same `xgboost`
#     module) and its other requirement, scikit-learn. Versions match .venv's (pyproject.toml).
# uvloop < 0.22: from 0.22 its get_event_loop() raises outside a running loop, which MLServer 1.7.1's
# parallel inference workers call at start (parallel_workers >= 1, its default, then loads no model).
# A stamp of the pins makes a second run free.
#
#   bench/setup_mlserver.sh     exit 0: ready; exit 3: cannot be installed here (the reason is printed)
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.bench-venvs/mlserver
PYTHON=${MLMESH_BENCH_PYTHON:-python3.11}
PINS=(mlserver==1.7.1 "numpy<2.3" "uvloop<0.22" mlserver-sklearn==1.7.1 scikit-learn==1.9.1 joblib xgboost-cpu==3.2.0)
NO_DEPS=(mlserver-xgboost==1.7.1)   # its `xgboost[scikit-learn]` is met by xgboost-cpu + scikit-learn above
STAMP=$VENV/.mlmesh-stamp
want="${PINS[*]} --no-deps ${NO_DEPS[*]}"

if [[ -f $STAMP && "$(cat "$STAMP")" == "$want" ]]; then
  echo "[setup_mlserver] up to date ($VENV)"
  exit 0
fi
"$PYTHON" -c 'import sys, venv, ensurepip; assert (3, 9) <= sys.version_info[:2] < (3, 13)' 2>/dev/null \
  || { echo "[setup_mlserver] cannot install: $PYTHON is not a Python 3.9-3.12 with venv" >&2; exit 3; }

echo "[setup_mlserver] creating $VENV with $("$PYTHON" -V 2>&1); installing $want"
rm -rf "$VENV"
mkdir -p "$(dirname "$VENV")"
"$PYTHON" -m venv "$VENV"
# pip's notes about this machine's local index folders are noise here; real errors still show.
install() {
  "$VENV/bin/python" -m pip install --quiet "$@" 2> >(grep -v '^WARNING: Location' >&2)
}
if ! install "${PINS[@]}"; then
  echo "[setup_mlserver] cannot install: pip could not install ${PINS[*]} (see above)" >&2
  exit 3
fi
if ! install --no-deps "${NO_DEPS[@]}"; then
  echo "[setup_mlserver] cannot install: pip could not install ${NO_DEPS[*]} (see above)" >&2
  exit 3
fi
"$VENV/bin/mlserver" --help >/dev/null
if ! "$VENV/bin/python" -c 'import mlserver_xgboost, mlserver_sklearn, xgboost, sklearn' 2>&1; then
  echo "[setup_mlserver] cannot install: MLServer's xgboost / sklearn runtimes do not import (see above)" >&2
  exit 3
fi
if "$VENV/bin/python" -m pip show xgboost >/dev/null 2>&1 || "$VENV/bin/python" -m pip show nvidia-nccl-cu12 >/dev/null 2>&1; then
  echo "[setup_mlserver] cannot install: the CUDA build of xgboost came in; it must not (see the header)" >&2
  exit 3
fi
echo "$want" > "$STAMP"
versions=$("$VENV/bin/python" -c 'import mlserver, sklearn, xgboost
print(f"mlserver {mlserver.__version__}, xgboost {xgboost.__version__}, scikit-learn {sklearn.__version__}")')
echo "[setup_mlserver] ready: $versions"
