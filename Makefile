# nupoint.gworkspace — developer and CI entry points.
#
#   make demo        the collection end to end on the lab: 500 users, provision, an MSL restore, recovery
#   make test        everything CI runs: lint, sanity, ansible-lint, unit, lab, integration, molecule
#   make test-fast   lint + unit tests only (no lab, no sanity)
#   make lab-up      start the local lab (emulated Google, Dovecot, chrony, MSL hosts over SSH)
#   make lab-down    stop every lab process
#
# Works on a fresh Debian 12 machine as root with only python3: it creates .venv, installs the
# pinned tool chain and the Debian packages the lab needs, and makes the collection importable
# as ansible_collections.nupoint.gworkspace.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
BUILD := $(CURDIR)/.build
# Runtime view: a symlink, so edits are live for ansible-playbook and pytest.
COLLECTIONS_ROOT := $(BUILD)/collections
COLLECTION_LINK := $(COLLECTIONS_ROOT)/ansible_collections/nupoint/gworkspace
# ansible-test needs a real tree at .../ansible_collections/<ns>/<name>; it gets a copy of the tracked files.
SANITY_TREE := $(BUILD)/sanity/ansible_collections/nupoint/gworkspace
# ansible-test integration likewise runs tests/integration/targets on a copy.
TARGETS_TREE := $(BUILD)/integration-targets/ansible_collections/nupoint/gworkspace
# make docs: antsibull-docs writes module and role pages into $(DOCS)/src, the guides are copied beside them.
DOCS := $(BUILD)/docs
APT_PACKAGES := dovecot-imapd chrony openssh-server openssh-client rsync curl git chromium
PYTEST_ARGS ?=
# pytest-xdist workers for the lab tests: each has a lab of its own (tests/lab/pytest_plugin.py). The tests wait on
# SSH, TLS, Dovecot and ansible-playbook's start-up about half the time, so two workers use both cores of a 2-core
# machine. TEST_WORKERS=0 runs them in this process, one at a time (the order the files are written in).
TEST_WORKERS ?= 2

export PATH := $(BIN):$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS_ROOT)
export ANSIBLE_COLLECTIONS_SCAN_SYS_PATH := false
export PYTHONPATH := $(COLLECTIONS_ROOT):$(CURDIR)
export ANSIBLE_PYTHON_INTERPRETER := $(BIN)/python
export ANSIBLE_NOCOLOR := 1
export NO_COLOR := 1
export PY_COLORS := 0

.PHONY: help deps venv apt collection test test-fast lint ruff mypy vermin sanity ansible-lint unit \
	integration molecule lab-up lab-down lab-status build clean docs changelog-lint integration-targets

help:
	@sed -n '2,9p' Makefile | sed 's/^# \{0,1\}//'

deps: apt venv collection

# --- installation -----------------------------------------------------------------------------

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

# Debian packages the lab runs (real Dovecot, chrony, sshd). policy-rc.d keeps the packages'
# own services from starting: the lab runs private instances on loopback ports.
apt:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  restore_policy=0; \
	  if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; restore_policy=1; fi; \
	  apt-get update -q; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	  if [ $$restore_policy = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi; \
	fi

collection:
	mkdir -p $(dir $(COLLECTION_LINK))
	ln -sfn $(CURDIR) $(COLLECTION_LINK)

# --- quality gates ----------------------------------------------------------------------------

lint: ruff mypy vermin

ruff: venv
	ruff check .
	ruff format --check .

# Code that runs on MSL (Python 2.7 or 3.6, standard library only) is checked with vermin; the list of files and
# the proof that the check fails on a newer construct are in the test.
vermin: venv collection
	pytest tests/unit/test_msl_python_compat.py -q

mypy: venv collection
	mypy

# ansible-test downloads a get-pip script we cannot reach offline; give it a stand-in that
# bootstraps pip with ensurepip instead (see hacking/get_pip_offline.py).
sanity: venv
	pip_version=$$($(BIN)/python -c "import re, ansible_test._internal.python_requirements as m, inspect; print(re.search(r\"pip='([^']+)'\", inspect.getsource(m.get_venv_packages)).group(1))"); \
	  mkdir -p $$HOME/.ansible/test/cache; \
	  cp hacking/get_pip_offline.py $$HOME/.ansible/test/cache/get_pip_$${pip_version//./_}.py
	rm -rf $(SANITY_TREE) && mkdir -p $(SANITY_TREE)
	git ls-files -z --cached --others --exclude-standard 2>/dev/null | rsync -a --from0 --files-from=- ./ $(SANITY_TREE)/
	# ansible-test lists targets with git; inside this repo the copy would be an ignored path.
	cd $(SANITY_TREE) && git init -q && git add -A
	cd $(SANITY_TREE) && ansible-test sanity --python 3.11 --color no

# Fragments are valid, and changelogs/changelog.yaml with them (CHANGELOG.md is rendered at release time:
# `antsibull-changelog release`, then commit CHANGELOG.md, changelogs/ and the consumed fragments' removal).
changelog-lint: venv
	antsibull-changelog lint

ansible-lint: venv collection
	ansible-lint --profile production

# --- tests ------------------------------------------------------------------------------------

unit: venv collection
	pytest tests/unit $(PYTEST_ARGS)

# tests/integration/targets/<module>/tasks/main.yml, the ecosystem's form (check mode, real run, both again), run by
# ansible-test on this machine (its Python, no venv: nothing to download) against emulated MSL host directories and
# an SNTP responder the targets make themselves with the lab's tools.
integration-targets: venv
	rm -rf $(TARGETS_TREE) && mkdir -p $(TARGETS_TREE)
	git ls-files -z --cached --others --exclude-standard 2>/dev/null | rsync -a --from0 --files-from=- ./ $(TARGETS_TREE)/
	cd $(TARGETS_TREE) && git init -q && git add -A
	cd $(TARGETS_TREE) && env -u PYTHONPATH -u ANSIBLE_COLLECTIONS_PATH \
	  ansible-test integration --python 3.11 --color no $(TARGETS)

# Lab self-tests and integration tests, a file per worker at a time (--dist loadfile: a file's module fixtures, such
# as the bad-input corpus run, are set up once); each worker starts and stops its own lab.
# --durations: the slowest tests in every CI log, to keep the suite's time in view (goal: well under 30 minutes).
integration: deps
	ulimit -n 20000; pytest tests/lab tests/integration -n $(TEST_WORKERS) --dist loadfile --durations=25 $(PYTEST_ARGS)

# The molecule scenarios (extensions/molecule/*), one pytest test each through pytest-ansible's molecule_scenario
# fixture (tests/molecule): one report, failing when any scenario fails. One scenario: PYTEST_ARGS="-k time_sync".
molecule: deps
	ulimit -n 20000; pytest tests/molecule -v -n $(TEST_WORKERS) --dist load $(PYTEST_ARGS)

test-fast: lint unit

# Every step of CI in turn, then how long each took (the suite's goal: well under 30 minutes on 2 cores).
TEST_STEPS := lint changelog-lint sanity ansible-lint unit integration-targets integration molecule
test: deps
	@rm -f $(BUILD)/test-times.txt; \
	for step in $(TEST_STEPS); do \
	  started=$$(date +%s); \
	  $(MAKE) --no-print-directory $$step || { echo "make $$step failed"; cat $(BUILD)/test-times.txt 2>/dev/null; exit 1; }; \
	  printf 'make %-20s %5d s\n' $$step $$(( $$(date +%s) - started )) >> $(BUILD)/test-times.txt; \
	done; \
	echo "--- time per step"; cat $(BUILD)/test-times.txt

# --- demo -------------------------------------------------------------------------------------

# Its own lab, apart from the tests' (.lab, port base 18400): override with DEMO_LAB_DIR / DEMO_LAB_PORT_BASE.
DEMO_LAB_DIR ?= $(BUILD)/demo-lab
DEMO_LAB_PORT_BASE ?= 19400

.PHONY: demo
demo: deps
	NUPOINT_LAB_DIR=$(DEMO_LAB_DIR) NUPOINT_LAB_PORT_BASE=$(DEMO_LAB_PORT_BASE) hacking/demo.sh

# --- lab --------------------------------------------------------------------------------------

lab-up: deps
	ulimit -n 20000; python -m tests.lab up

lab-down: venv
	python -m tests.lab down

lab-status: venv
	python -m tests.lab status

# --- packaging --------------------------------------------------------------------------------

build: venv
	mkdir -p $(BUILD)/dist
	ansible-galaxy collection build --force --output-path $(BUILD)/dist .

# --- documentation ----------------------------------------------------------------------------

# The site: module pages (DOCUMENTATION) and role pages (meta/argument_specs.yml) from antsibull-docs, the guides
# (docs/*.md, roles/*/README.md) through myst-parser; Sphinx config in docs/docsite/conf.py. Offline, and any
# warning fails the build (-W). Open $(DOCS)/html/index.html.
docs: venv collection
	rm -rf $(DOCS) && mkdir -p -m 0755 $(DOCS)/src
	antsibull-docs collection --use-current --fail-on-error --cleanup everything --dest-dir $(DOCS)/src nupoint.gworkspace
	mkdir -p $(DOCS)/src/docs && cp docs/*.md $(DOCS)/src/docs/
	for readme in roles/*/README.md; do mkdir -p $(DOCS)/src/$$(dirname $$readme) && cp $$readme $(DOCS)/src/$$readme; done
	cp docs/docsite/index.rst $(DOCS)/src/index.rst
	sphinx-build -b html -W --keep-going -q -w $(DOCS)/warnings.txt -c docs/docsite $(DOCS)/src $(DOCS)/html
	@echo "docs: $(DOCS)/html/index.html"

clean:
	-python -m tests.lab down 2>/dev/null
	rm -rf $(BUILD) .lab .lab-gw* .mypy_cache .ruff_cache .pytest_cache
