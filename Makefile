# dprk-outage-monitor. `make run` and `make test` set up everything they need on Debian.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
CONFIG  ?= config/dprk.yaml
# Debian packages: the simulated world (nginx, knot, nftables, iproute2), promtool, peers for bench,
# the browser of the pages' tests (chromium, chromium-driver).
APT_PKGS := python3-venv nginx-light knot knot-dnsutils nftables iproute2 procps tcpdump fping \
            prometheus prometheus-alertmanager prometheus-blackbox-exporter systemd \
            chromium chromium-driver
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: deps venv run test unit integration lint bench clean-sim

deps:
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(APT_PKGS)
	# Debian starts these services when installing them; the tests run their own instances.
	-for s in nginx knot prometheus prometheus-alertmanager prometheus-blackbox-exporter; do \
	  $(SUDO) systemctl disable --now $$s >/dev/null 2>&1 || $(SUDO) service $$s stop >/dev/null 2>&1; \
	done; true

# `make run` installs the runtime only; `make test` adds the test tools and the simulator's.
$(VENV)/.runtime: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.test: pyproject.toml $(VENV)/.runtime
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.test

run: $(VENV)/.runtime
	$(BIN)/dprk-monitor run --config $(CONFIG)

lint: venv
	$(BIN)/ruff check monitor tests bench
	$(BIN)/ruff format --check monitor tests bench
	$(BIN)/mypy

# The whole suite: lint, unit tests, then the integration tests in network namespaces (root).
# The integration tests run three at a time (-n 3, pytest-xdist): each builds its own world and
# mostly waits on the daemon's timers, so the suite takes ~10 min instead of ~20 on two cores.
INTEGRATION_WORKERS ?= 3
test: deps venv lint
	$(SUDO) env REQUIRE_NETNS=$${REQUIRE_NETNS:-1} REQUIRE_TOOLS=$${REQUIRE_TOOLS:-1} PATH="$$PATH" $(BIN)/python -m pytest -ra tests/unit; \
	rc=$$?; if [ $$rc = 5 ]; then echo "pytest collected no unit tests: failing" >&2; exit 1; fi; [ $$rc = 0 ] || exit $$rc
	$(SUDO) env REQUIRE_NETNS=$${REQUIRE_NETNS:-1} REQUIRE_TOOLS=$${REQUIRE_TOOLS:-1} PATH="$$PATH" $(BIN)/python -m pytest -ra -n $(INTEGRATION_WORKERS) tests/integration; \
	rc=$$?; if [ $$rc = 5 ]; then echo "pytest collected no integration tests: failing" >&2; exit 1; fi; exit $$rc
	# schemathesis over the API of a daemon on loopback, with more examples than the unit run.
	ST_MAX_EXAMPLES=$${ST_MAX_EXAMPLES:-200} $(BIN)/python -m pytest -q tests/unit/test_openapi.py -k schemathesis

unit: venv
	$(BIN)/python -m pytest -ra tests/unit

integration: venv
	$(SUDO) env REQUIRE_NETNS=1 $(BIN)/python -m pytest -ra -n $(INTEGRATION_WORKERS) tests/integration

bench: deps venv
	$(SUDO) $(BIN)/python bench/run_all.py

clean-sim: venv
	$(SUDO) $(BIN)/python -m monitor.sim cleanup
