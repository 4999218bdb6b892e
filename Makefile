# netprobe — developer and operator entry points.
# `make install` builds .venv; every other target uses it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
NP     := $(BIN)/netprobe

.PHONY: install test test-fast lint demo demo-local lab-up lab-down bench bench-icmp bench-history clean

install: $(BIN)/netprobe

$(BIN)/netprobe: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

# The whole suite. Tests that need root or the namespace lab skip themselves
# (with the reason) when run unprivileged; CI runs as root and runs them all.
test: install
	$(BIN)/pytest -q

# Without the namespace lab: quick feedback while editing.
test-fast: install
	$(BIN)/pytest -q -m "not lab"

lint: install
	$(BIN)/ruff check netprobe tests bench

# The main job end to end, on the built-in namespace lab (root): healthy,
# primary line cut (failover), controller frozen (failover fails), torn down.
demo: install
	$(NP) demo lab

# The same pipeline on loopback only: no root, no namespaces.
demo-local: install
	$(NP) demo local

lab-up: install
	$(NP) lab up

lab-down: install
	$(NP) lab down

bench: bench-icmp bench-history

bench-icmp: install
	$(BIN)/python bench/icmp_sweep.py --n 1000 --n 10000

bench-history: install
	$(BIN)/python bench/history_bench.py --runs 100000

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis build *.egg-info
