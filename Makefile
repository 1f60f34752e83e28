# Each target bootstraps .venv from scratch if it is missing.
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean-venv gui-deps wheel-check

$(STAMP): setup.py Makefile
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip wheel setuptools
	$(VPY) -m pip install -q -e '.[scipion,test]' 'numba-cuda[cu13]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/abinitrefine demo --out demo_out

# the GUI tests need xvfb-run: installed here when we are root with apt-get; otherwise they are skipped and
# pytest's summary says why (CI sets ABINITREFINE_REQUIRE_GUI=1, which turns that skip into a failure)
gui-deps:
	@command -v xvfb-run >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  { apt-get update -qq && apt-get install -y -qq xvfb >/dev/null; }; } || \
	  echo "make test: xvfb-run is missing and could not be installed (needs root + apt-get): GUI tests will be skipped"

# one pytest worker per CPU this process may use (pytest-xdist; nproc, as the engine's threads count them:
# xdist's "auto" counts physical cores, 1 on a VM whose 2 vCPUs are one core's threads, and "logical" the
# host's, beyond a container's CPU set), a test file's tests on one worker (they share its module fixtures):
# a single process kept 2 cores ~40% idle (the jobs' Python between the kernels)
test: $(STAMP) gui-deps
	$(VPY) -m ruff check scipion_abinitrefine bench
	$(VPY) -m pytest -q -n $$(nproc 2>/dev/null || echo auto) --dist loadfile scipion_abinitrefine/tests

lint: $(STAMP)
	$(VPY) -m ruff check scipion_abinitrefine bench

bench: $(STAMP)
	$(VPY) bench/accuracy.py

# the package as a user installs it: wheel + sdist, a fresh venv outside the tree, the installed copy run
wheel-check: $(STAMP)
	bash .ci/wheel_check.sh

clean-venv:
	rm -rf $(VENV)
