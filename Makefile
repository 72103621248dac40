# The two commands of the README; each prepares the environment first (seconds once ready).
PYTHON ?= python3

.PHONY: setup demo test test-slow lint

setup:
	$(PYTHON) tools/setup_env.py

demo: setup
	$(PYTHON) tools/demo.py

test: setup lint
	$(PYTHON) -m pytest

test-slow: setup
	$(PYTHON) -m pytest -m slow

lint:
	$(PYTHON) -m ruff check .
