# Two commands do everything on a fresh machine (as root):
#   sudo make demo   set up, then trace and diagnose the bundled demo target
#   sudo make test   set up (with torch, CPU build, and the test packages), then run the whole test suite
# Setup also installs /usr/local/bin/pyimpact (`sudo pyimpact ...`); `sudo make uninstall` removes it.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test bench man uninstall clean

setup:
	scripts/setup.sh

demo: setup
	$(VENV)/bin/pyimpact demo

test:
	scripts/setup.sh --with-torch --with-test-deps
	$(PY) -m pytest -rs -q tests

bench:
	scripts/setup.sh --with-torch
	$(PY) scripts/bench.py

man: setup
	$(PY) scripts/make_man.py

uninstall:
	scripts/entrypoint.sh uninstall /usr/local

clean: uninstall
	rm -rf $(VENV) build *.egg-info
