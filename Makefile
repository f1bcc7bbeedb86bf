# kube-harness. Quick start: `make run` (bring up the default cluster, run the scenario suite,
# write the report) and `make test` (the harness's own tests, end-to-end ones included).
# Both install what they need - Debian packages (as root), the venv, cached builds - idempotently.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
APT_PACKAGES := $(shell sed -e 's/\#.*//' harness/system-packages.txt)
# Extra pytest arguments, e.g. `make test PYTEST_ARGS="-k kind -x"`.
PYTEST_ARGS ?=
# actionlint checks .github/workflows in the tests; built from the Go module proxy (GitHub
# release downloads, which its PyPI wrapper needs, are not reachable everywhere), cached.
ACTIONLINT_VERSION := v1.7.12
export ACTIONLINT := $(HOME)/.cache/kube-harness/tools/actionlint-$(ACTIONLINT_VERSION)/actionlint

# pytest exits 5 when it collected nothing: for these targets that is a failure, said plainly.
define pytest
	$(BIN)/python -m pytest $(1) $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make: pytest collected no tests from $(subst ",',$(1))" >&2; exit 1; fi; \
	exit $$rc
endef

# kind's part of `make test`: what only kind shows (its provider, a multi-node cluster, a node
# failure, load workers spread over nodes), the nightly workflow's steps in a team's
# repository, and four scenarios (a node failure, a rollout, NetworkPolicies, service
# discovery), on a cluster of one control plane and two workers.
KIND_ARGS := --cluster-provider=kind --cluster-workers=2
KIND_SMOKE := tests/test_provider.py tests/test_kind.py tests/test_workflow.py \
	'tests/test_load.py::test_load_from_the_cluster_reaches_the_service_by_its_name[demo-master-and-2-worker-pods]' \
	scenarios/test_node_failure.py scenarios/test_zero_downtime_rollout.py scenarios/test_network_policy.py \
	scenarios/test_service_discovery.py

.PHONY: run unit unit-slow test test-all test-kind kind-prepare lint deps system-packages tools

run: deps
	$(call pytest,scenarios --junitxml=reports/latest-junit.xml)

# The unit tier first, and nothing else when it fails; its slow part; then what needs a
# cluster or builds, on local; then kind's part.
test: unit unit-slow lint tools kind-prepare
	$(call pytest,tests scenarios -m "not test_all and (e2e or builds)")
	$(call pytest,$(KIND_ARGS) -m e2e $(KIND_SMOKE))

# The unit tier: every test that needs no cluster, builds nothing and is not slow (`-m "not
# e2e and not builds and not slow"`; the plugin marks a test e2e when its fixtures reach the
# cluster). No network, Go or cache needed. Four workers on two cores: tests wait on
# processes more than on the CPU.
unit: deps
	$(call pytest,tests -m "not e2e and not builds and not slow" -n 4)

# What needs no cluster either but runs real processes for seconds (Locust runs, pytest, xdist
# and chaostoolkit runs of their own, headless Chromium).
unit-slow: deps
	$(call pytest,tests -m "slow and not e2e and not builds" -n 4)

# What CI's time leaves out (the examples' rollout scenarios, the scenario suite and its
# experiments with load from the cluster), then every test and scenario on kind, and the
# suite again with load from the cluster there.
test-all: test
	$(call pytest,tests -m test_all)
	$(call pytest,scenarios --load-placement=cluster --load-workers=2)
	$(call pytest,$(KIND_ARGS) tests scenarios -m "not test_all")
	$(call pytest,$(KIND_ARGS) scenarios --load-placement=cluster --load-workers=2)

# Every test and scenario on kind.
test-kind: lint tools kind-prepare
	$(call pytest,$(KIND_ARGS) tests scenarios -m "not test_all")

# Docker (with a runc wrapper where privileged containers fail), kind and its offline node
# image; says each change before making it, and changes nothing that is already in place.
kind-prepare: deps
	$(BIN)/harness kind prepare

lint: deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

deps: system-packages $(VENV)/.installed

tools: $(ACTIONLINT)

$(ACTIONLINT):
	PATH="$$PATH:/usr/local/go/bin" GOTOOLCHAIN=local GOBIN="$(@D)" \
	  GOMODCACHE="$(HOME)/.cache/kube-harness/go/mod" GOCACHE="$(HOME)/.cache/kube-harness/go/build" \
	  go install github.com/rhysd/actionlint/cmd/actionlint@$(ACTIONLINT_VERSION)

system-packages:
	@missing=$$(for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; \
	done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
	  echo "installing Debian packages:" $$missing; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else \
	  echo "missing Debian packages:" $$missing "- run: sudo apt-get install -y" $$missing >&2; \
	fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@
