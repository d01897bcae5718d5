# Set-up and checks. `make demo` and `make test` work from a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
FHIR_VENV := .venv-fhir
FHIR_STAMP := $(FHIR_VENV)/.installed-sekmet-0.1.1
TOOLS_VENV := .venv-tools
TOOLS_STAMP := $(TOOLS_VENV)/.installed-lock
FHIR_PORT ?= 8080
NODE_DIR := tests/medplum
NODE_STAMP := $(NODE_DIR)/node_modules/.installed-lock
AXE_DIR := tests/browser
AXE_STAMP := $(AXE_DIR)/node_modules/.installed-lock

.PHONY: demo test lint unit fuzz bench venv fhir-server browser node lock audit clean

# Each environment installs from its lock file (requirements/*.lock, `make lock`), every file
# checked against its hash; then the app itself without dependencies, and `pip check` catches a
# dependency added to pyproject.toml but not yet locked.
$(STAMP): requirements/app.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r requirements/app.lock
	$(BIN)/pip install --quiet --no-deps -e .
	@$(BIN)/pip check >/dev/null || { $(BIN)/pip check; \
	  echo 'requirements/app.lock lacks a dependency of pyproject.toml: run make lock'; exit 1; }
	touch $(STAMP)

# The local FHIR server lives in its own environment: it pins its own fhir.resources and FastAPI.
$(FHIR_STAMP): requirements/fhir-server.lock
	$(PYTHON) -m venv $(FHIR_VENV)
	$(FHIR_VENV)/bin/pip install --quiet --require-hashes -r requirements/fhir-server.lock
	touch $(FHIR_STAMP)

venv: $(STAMP) $(FHIR_STAMP)

# pip-tools and pip-audit for `make lock` and `make audit`, in their own environment.
$(TOOLS_STAMP): requirements/tools.lock
	$(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/pip install --quiet --require-hashes -r requirements/tools.lock
	touch $(TOOLS_STAMP)

# Regenerates the lock files with hashes for this Python (3.11) on Linux: app.lock from
# pyproject.toml (with the dev extra), fhir-server.lock and tools.lock from requirements/*.in.
# Current pins are kept where they still fit; `make lock UPGRADE=1` takes the newest releases.
PIP_COMPILE = CUSTOM_COMPILE_COMMAND='make lock' $(TOOLS_VENV)/bin/pip-compile --quiet \
	--generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links \
	$(if $(UPGRADE),--upgrade)
lock: $(TOOLS_STAMP)
	$(PIP_COMPILE) --extra dev -o requirements/app.lock pyproject.toml
	$(PIP_COMPILE) -o requirements/fhir-server.lock requirements/fhir-server.in
	$(PIP_COMPILE) -o requirements/tools.lock requirements/tools.in

# Outdated and vulnerable packages of the Python environments and the npm test packages (.ci/audit);
# says plainly what it could not check, such as an unreachable advisory database, and does not fail
# for it nor for an outdated package.
audit: $(STAMP) $(FHIR_STAMP) $(TOOLS_STAMP)
	$(PYTHON) .ci/audit

# A local FHIR server on loopback for trying the CLI by hand (data in .fhir-data/, Ctrl-C stops).
fhir-server: $(FHIR_STAMP)
	mkdir -p .fhir-data
	printf 'base_url: http://127.0.0.1:$(FHIR_PORT)/fhir\nhost: 127.0.0.1\nport: $(FHIR_PORT)\ndata_dir: .fhir-data/data\nsimulator: {enabled: false}\nlog_inbound: false\n' > .fhir-data/sekmet.yaml
	$(FHIR_VENV)/bin/sekmet serve -c .fhir-data/sekmet.yaml

# The FHIR server, the local SMART EHR and the app on loopback, with synthetic patients; Ctrl-C stops.
demo: $(STAMP) $(FHIR_STAMP)
	SEKMET_BIN=$(CURDIR)/$(FHIR_VENV)/bin/sekmet $(BIN)/python -m smart_app.sandbox

# Debian's Chromium and ChromeDriver for the browser tests, installed only when missing.
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; \
	fi

# Debian's Node and npm when missing; then the pinned Medplum packages of the second test FHIR
# server (tests/medplum) and axe-core for the browser tests (tests/browser), each when its
# package-lock.json is newer than the last install, or never installed.
node:
	@if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq nodejs npm >/dev/null; \
	fi
	@if [ ! -f $(NODE_STAMP) ] || [ $(NODE_DIR)/package-lock.json -nt $(NODE_STAMP) ]; then \
	  npm ci --no-audit --no-fund --prefix $(NODE_DIR) && touch $(NODE_STAMP); \
	fi
	@if [ ! -f $(AXE_STAMP) ] || [ $(AXE_DIR)/package-lock.json -nt $(AXE_STAMP) ]; then \
	  npm ci --no-audit --no-fund --prefix $(AXE_DIR) && touch $(AXE_STAMP); \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

unit: $(STAMP) $(FHIR_STAMP) browser node
	$(BIN)/pytest

test: lint unit

# The mutation test with 20,000 cases instead of make test's 2,000 (a few minutes).
fuzz: $(STAMP)
	MUTATION_CASES=20000 $(BIN)/pytest -p no:randomly tests/fhir/test_mutation.py

# Measured speed (docs/performance.md): starts the FHIR server and the app, prints each figure
# with how it was measured and its goal, writes .bench/latest.json (several minutes).
bench: $(STAMP) $(FHIR_STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(FHIR_VENV) $(TOOLS_VENV) .fhir-data .smart-sessions .smart-sessions-writes .pytest_cache .ruff_cache .hypothesis
