# Two commands do everything on a fresh machine (as root):
#   sudo make demo   set up, then trace and diagnose the bundled demo target
#   sudo make test   set up, then run the whole test suite
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test bench clean

setup:
	scripts/setup.sh --with-torch

demo: setup
	$(VENV)/bin/pyimpact demo

test:
	scripts/setup.sh --with-torch --with-test-deps
	$(PY) -m pytest -rs -q tests

bench: setup
	$(PY) scripts/bench.py

clean:
	rm -rf $(VENV) build *.egg-info
