# The two commands of the README do all the set-up on a fresh Debian 12 machine (root):
#   make demo   installs what is missing, then runs the demo
#   make test   installs what is missing, then runs the whole suite (lint, types, contracts, tests)
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEB_PACKAGES := clang llvm libbpf-dev bpftool iproute2 iputils-ping iputils-arping curl tcpdump dnsutils \
                iperf3 sockperf containernetworking-plugins iptables nftables
STAMP_DEB := $(VENV)/.deb-stamp
STAMP_PY := $(VENV)/.py-stamp

.PHONY: all setup deb venv bpf demo test lint typecheck contracts unit bench docs clean

all: test

setup: deb venv bpf

# Debian packages: only when running as root on a Debian-like system and something is missing.
deb: $(STAMP_DEB)
$(STAMP_DEB):
	@mkdir -p $(VENV)
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi; \
	else echo "not root or no apt-get: skipping Debian packages (kernel datapath may be unavailable)"; fi
	@touch $@

venv: $(STAMP_PY)
$(STAMP_PY): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@$(BIN)/pip install -q --upgrade pip >/dev/null 2>&1 || true
	@$(BIN)/pip install -q -e '.[dev]'
	@touch $@

# eBPF objects are compiled from bpf/*.c at set-up (nothing binary is checked in).
bpf: deb
	@if command -v clang >/dev/null && [ -f bpf/Makefile ]; then $(MAKE) -s -C bpf; fi

demo: setup
	@$(BIN)/ciliate demo

lint: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: venv
	$(BIN)/mypy

contracts: venv
	$(BIN)/lint-imports

unit: setup
	$(BIN)/pytest -q -n 2 tests

test: setup lint typecheck contracts unit

bench: setup
	$(BIN)/python -m bench run --suite all

# docs/cli.md is generated from the parser; tests/unit/cli/test_cli_docs.py fails when it is stale.
docs: venv
	$(BIN)/python -m ciliate.cli.docs docs/cli.md

clean:
	rm -rf $(VENV) bpf/build .mypy_cache .ruff_cache .pytest_cache
