# Two commands: `make run` and `make test`. Each creates .venv when missing and installs the pinned set.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.mlmesh-installed

TRITON_VENV := .triton-venv

# The web console (console/): Vite + TypeScript from the npm registry, built into console/dist, which
# `python -m services.console` serves at /console/ behind Envoy. Rebuilt only when its sources or lock change.
CONSOLE_DEPS    := console/node_modules/.mlmesh-installed
CONSOLE_SOURCES := $(shell find console/src -type f 2>/dev/null) console/index.html console/vite.config.ts \
                   console/tsconfig.json

.PHONY: setup triton console run test bench protos lock-check clean

setup: $(STAMP)

# Re-install only when the pinned files change; a present, current .venv costs nothing.
$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

# Triton's own environment (tritonserver 2.51 + python backend, numpy<2, Debian's python3.11):
# ~45-60 s once, then free. Exit 3 means this machine cannot run Triton: serving uses the in-process executor.
triton:
	@scripts/setup_triton.sh || { rc=$$?; [ $$rc -eq 3 ] && echo "Triton unavailable here: in-process executor"; [ $$rc -eq 3 ]; }

console: console/dist/index.html

$(CONSOLE_DEPS): console/package.json console/package-lock.json
	cd console && npm ci --no-audit --no-fund
	@touch $@

console/dist/index.html: $(CONSOLE_DEPS) $(CONSOLE_SOURCES)
	cd console && npm run build

run: setup triton console
	$(VENV)/bin/mlmesh up --demo

test: setup console
	$(PY) -m pytest -q

bench: setup
	$(PY) bench/registry.py

protos: setup
	$(PY) scripts/gen_protos.py

lock-check: setup
	$(PY) scripts/migration_lock.py --check

clean:
	rm -rf $(VENV) $(TRITON_VENV) .mlmesh console/node_modules console/dist
