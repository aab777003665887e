# Ballast: every target installs what it needs, idempotently (a .venv and node_modules).
# Quick start: `make demo` (crash stress test on an embedded Anvil, with its report), `make test`.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP_PY := $(VENV)/.installed
STAMP_NODE := node_modules/.installed
STAMP_SOLC := $(VENV)/.solc-shim
STAMP_WEB := web/node_modules/.installed
STAMP_EXAMPLE := examples/frontend/node_modules/.installed
FORGE = $(shell $(PY) -m ballast.toolchain which forge)
ANVIL_DIR = $(dir $(shell $(PY) -m ballast.toolchain which anvil))

.PHONY: storm install demo test test-forge test-python test-deep bench clean

install: $(STAMP_PY) $(STAMP_NODE) $(STAMP_SOLC) $(STAMP_WEB) $(STAMP_EXAMPLE)

# The example front-end client (tests/integration/test_example_client.py): viem from its lock file,
# @ballast/abi linked from abi/.
$(STAMP_EXAMPLE): examples/frontend/package.json examples/frontend/package-lock.json
	cd examples/frontend && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(STAMP_WEB): web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# A browser for one test only: tests/integration/test_risk_page.py (run by test-python) drives the
# system Chromium through playwright-core (no browser download). Installs Debian's `chromium`
# package with apt-get, as root or through sudo, unless `chromium` is on PATH or BALLAST_CHROMIUM
# names another binary. Not needed by install or demo.
.PHONY: chromium
chromium:
	@if [ -n "$$BALLAST_CHROMIUM" ] || command -v chromium >/dev/null; then exit 0; fi; \
	echo "chromium: installing Debian's chromium package (apt-get) for tests/integration/test_risk_page.py"; \
	S=; if [ "$$(id -u)" != 0 ]; then command -v sudo >/dev/null || { echo "chromium: needs root or sudo for apt-get; or set BALLAST_CHROMIUM=/path/to/chromium" >&2; exit 1; }; S=sudo; fi; \
	$$S apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$S apt-get install -y -qq --no-install-recommends chromium

$(STAMP_NODE): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(STAMP_PY): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	@touch $@

$(STAMP_SOLC): $(STAMP_PY) $(STAMP_NODE) bin/solc
	$(PY) -m ballast.toolchain install-solc
	@touch $@

## The main job: the default crash scenario on an embedded Anvil, report in out/demo/.
demo: install
	$(PY) -m ballast demo

## Every test: solc shim, forge (unit, fuzz, invariant), Python unit and integration (Anvil).
test: install
	$(MAKE) --no-print-directory test-forge
	$(MAKE) --no-print-directory test-python

test-forge: install
	$(FORGE) build --sizes > /dev/null
	$(FORGE) test
	$(FORGE) snapshot --match-path 'tests/forge/Gas.t.sol' --check .gas-snapshot

test-python: install chromium
	$(PY) -m mypy
	$(PY) -m pytest -p no:pytest-brownie -q tests/unit tests/integration
	PATH="$(ANVIL_DIR):$$PATH" $(VENV)/bin/brownie test tests/brownie --network development

## Deeper invariant/fuzz profile (thousands of runs).
test-deep: install
	FOUNDRY_PROFILE=deep $(FORGE) test

## Liquidation storm at full size (issue 5): 5,000 accounts under water at once, on forge
## (gas bound per call, all cleared, tokens conserved) and in the stress lab (cleared within
## K blocks, checked block by block). Minutes, not part of `make test`.
storm: install
	STORM_ACCOUNTS=5000 FOUNDRY_GAS_LIMIT=max FOUNDRY_MEMORY_LIMIT=4294967296 $(FORGE) test --match-test test_crashStorm -vv
	$(PY) -m ballast stress --scenario btc_2021_12_04 --accounts 5000 --workers 2 --seed 7 --out out/storm5000

bench: install
	$(PY) -m benchmarks

clean:
	rm -rf build forge-out forge-cache out reports .pytest_cache .mypy_cache

## Issue 11: the vectorized simulator's validation panel against the Anvil lab (>= 30 cases, about
## 10 minutes: writes tests/data/panel_lab.json, prints the comparison), and the README's frontier
## (about 30 minutes on 2 cores, half of it the predictive keeper's GARCH fits; each sweep resumes
## where it stopped when run again): the crash
## corpus x 770 seeds x the three stress controllers (10,010 runs), the static caps 3x..50x and two
## dynamic variants (predictive keeper; regime_sens = 0) on the first 200 seeds of each source, then
## out/frontier/frontier.{html,png,json}.
.PHONY: panel sweep
panel: install
	$(PY) -m ballast.panel --full --lab
sweep: install
	$(PY) -m ballast sweep --scenarios corpus --seeds 770 --caps '' --no-report --out out/sweep
	$(PY) -m ballast sweep --scenarios corpus --seeds 200 --chunk 32 --no-report --out out/sweep_caps
	$(PY) -m ballast sweep --scenarios corpus --seeds 200 --caps '' --chunk 100 --keeper predictive --no-report --out out/sweep_pred
	$(PY) -m ballast sweep --scenarios corpus --seeds 200 --caps '' --chunk 100 --set regime_sens=0 --no-report --out out/sweep_regime0
	$(PY) -m ballast.frontier out/sweep/sweep.sqlite out/sweep_caps/sweep.sqlite out/sweep_pred/sweep.sqlite \
		out/sweep_regime0/sweep.sqlite --out out/frontier
