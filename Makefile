# edgeplane — the two set-up commands are `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test test-fast demo lint bench clean

venv: $(STAMP)

# Re-install when the project metadata changes; pip is quiet unless something fails.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

# What CI runs: the whole suite, slow tests included.
test: venv
	$(BIN)/python -m pytest -q

# Unit tests only (no real clusters, Docker or root).
test-fast: venv
	$(BIN)/python -m pytest -q -m "not slow"

demo: venv
	$(BIN)/python -m scenarios.demo

lint: venv
	$(BIN)/ruff check .

bench: venv
	$(BIN)/python -m bench.store

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
