# Set-up and checks. `make demo` and `make test` work from a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
FHIR_VENV := .venv-fhir
FHIR_STAMP := $(FHIR_VENV)/.installed-sekmet-0.1.1
FHIR_PORT ?= 8080
NODE_DIR := tests/medplum
NODE_STAMP := $(NODE_DIR)/node_modules/.installed-lock
AXE_DIR := tests/browser
AXE_STAMP := $(AXE_DIR)/node_modules/.installed-lock

.PHONY: demo test lint unit fuzz venv fhir-server browser node clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The local FHIR server lives in its own environment: it pins its own fhir.resources and FastAPI.
$(FHIR_STAMP):
	$(PYTHON) -m venv $(FHIR_VENV)
	$(FHIR_VENV)/bin/pip install --quiet --upgrade pip
	$(FHIR_VENV)/bin/pip install --quiet 'sekmet-fhir==0.1.1'
	touch $(FHIR_STAMP)

venv: $(STAMP) $(FHIR_STAMP)

# A local FHIR server on loopback for trying the CLI by hand (data in .fhir-data/, Ctrl-C stops).
fhir-server: $(FHIR_STAMP)
	mkdir -p .fhir-data
	printf 'base_url: http://127.0.0.1:$(FHIR_PORT)/fhir\nhost: 127.0.0.1\nport: $(FHIR_PORT)\ndata_dir: .fhir-data/data\nsimulator: {enabled: false}\nlog_inbound: false\n' > .fhir-data/sekmet.yaml
	$(FHIR_VENV)/bin/sekmet serve -c .fhir-data/sekmet.yaml

# The FHIR server, the local SMART EHR and the app on loopback, with synthetic patients; Ctrl-C stops.
demo: $(STAMP) $(FHIR_STAMP)
	$(BIN)/python -m smart_app.sandbox

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

clean:
	rm -rf $(VENV) $(FHIR_VENV) .fhir-data .smart-sessions .pytest_cache .ruff_cache .hypothesis
