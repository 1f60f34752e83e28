# Each target bootstraps .venv from scratch if it is missing.
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean-venv

$(STAMP): setup.py Makefile
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip wheel setuptools
	$(VPY) -m pip install -q -e '.[scipion,test]' 'numba-cuda[cu13]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/abinitrefine demo --out demo_out

test: $(STAMP)
	$(VPY) -m ruff check scipion_abinitrefine bench
	$(VPY) -m pytest -q scipion_abinitrefine/tests

lint: $(STAMP)
	$(VPY) -m ruff check scipion_abinitrefine bench

bench: $(STAMP)
	$(VPY) bench/accuracy.py

clean-venv:
	rm -rf $(VENV)
