# The two commands of the README; each prepares the environment first (seconds once ready).
PYTHON ?= python3
# The oldest supported torch, in its own virtual environment (numpy < 2, mmcv compiled against it).
COMPAT_VENV ?= .venv-compat
COMPAT_TORCH ?= torch==2.1.2

.PHONY: setup setup-compat demo test test-compat test-package test-slow lint

setup:
	$(PYTHON) tools/setup_env.py

demo: setup
	$(PYTHON) tools/demo.py

test: setup lint
	$(PYTHON) -m pytest

setup-compat:
	$(PYTHON) tools/setup_env.py --venv $(COMPAT_VENV) --torch '$(COMPAT_TORCH)'

# The same default suite on the oldest supported torch (first run: about 12 min of set-up).
test-compat: setup-compat
	$(COMPAT_VENV)/bin/python -m pytest

# The wheel installed into a fresh venv, then `mim train` / `mim test` with its configs and tools.
test-package: setup
	$(PYTHON) -m pytest -m slow tests/test_packaging.py

test-slow: setup
	$(PYTHON) -m pytest -m slow

lint:
	$(PYTHON) -m ruff check .
