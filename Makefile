# netprobe — developer and operator entry points.
# `make install` builds .venv; every other target uses it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
NP     := $(BIN)/netprobe

.PHONY: install junit-xsd node-tools lock deps-check test test-fast lint demo demo-local lab-up lab-down bench bench-check bench-icmp bench-history bench-scale bench-config clean

install: $(BIN)/netprobe

# Pinned: constraints.txt fixes every dependency (and theirs) to versions the
# suite passed with; pyproject.toml keeps ranges for people who use the library.
$(BIN)/netprobe: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --constraint constraints.txt -e '.[test]'
	@touch $@

# Re-pin constraints.txt to the newest versions pyproject.toml allows.
lock: install
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --extra test --python-version 3.11 --upgrade \
	  --custom-compile-command "make lock" -q -o constraints.txt

# The scheduled-style check: a throw-away venv with the newest versions the
# ranges allow (no constraints), and the suite without the lab on it. When this
# fails and `make test` passes, a new release broke us: cap the range or fix.
deps-check:
	rm -rf .venv-latest
	$(PYTHON) -m venv .venv-latest
	.venv-latest/bin/pip install --quiet -e '.[test]'
	.venv-latest/bin/pip freeze --exclude-editable > .venv-latest/versions.txt
	.venv-latest/bin/pytest -q -p no:cacheprovider -m "not lab"

# Jenkins xUnit's own junit-10.xsd (MIT), as pytest's source distribution on PyPI
# ships it for its own tests: the JUnit schema test validates against it when
# present (CI fetches it; offline, that test skips and ours still runs).
JUNIT_XSD := .cache/junit-10.xsd
junit-xsd: $(JUNIT_XSD)
$(JUNIT_XSD): constraints.txt | install
	rm -rf .cache/sdist && mkdir -p .cache/sdist
	$(BIN)/pip download --quiet --no-deps --no-binary :all: -d .cache/sdist \
	  "$$(grep -i '^pytest==' constraints.txt)"
	tar -xzf .cache/sdist/pytest-*.tar.gz -C .cache/sdist --no-same-owner --wildcards '*/testing/example_scripts/junit-10.xsd'
	mv .cache/sdist/pytest-*/testing/example_scripts/junit-10.xsd $@
	rm -rf .cache/sdist

# The whole suite. Tests that need root or the namespace lab skip themselves
# (with the reason) when run unprivileged; CI runs as root and runs them all.
# ajv-cli (npm), pinned by .ci/node/package-lock.json: the editor-schema test's
# JavaScript validator.
AJV := .ci/node/node_modules/.bin/ajv
node-tools: $(AJV)
$(AJV): .ci/node/package-lock.json
	npm ci --prefix .ci/node --silent --no-audit --no-fund

# Best effort for the two outside checkers: offline or without npm, their tests
# skip with the reason.
test: install
	@$(MAKE) -s junit-xsd >/dev/null 2>&1 || echo "(Jenkins xUnit's junit-10.xsd not fetched: that schema test skips)"
	@$(MAKE) -s node-tools >/dev/null 2>&1 || echo "(ajv-cli not installed, needs npm: that schema test skips)"
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

bench: bench-check bench-icmp bench-history bench-scale bench-config

# The whole `netprobe check` process against fping, nmap and dnsperf in a namespace
# lab (root; apt-get install -y fping nmap dnsperf time), with the time of each stage
# at 1,000, 10,000 and 50,000 endpoints.
bench-check: install
	$(BIN)/python bench/check_sweep.py --n 1000 --n 10000 --stages 1000 --stages 10000 --stages 50000

bench-icmp: install
	$(BIN)/python bench/icmp_sweep.py --n 1000 --n 10000

bench-history: install
	$(BIN)/python bench/history_bench.py --runs 100000

bench-scale: install
	$(BIN)/python bench/check_scale.py --n 10000

bench-config: install
	$(BIN)/python bench/config_hostile.py

clean:
	rm -rf $(VENV) .venv-latest .cache .pytest_cache .ruff_cache .hypothesis build *.egg-info
