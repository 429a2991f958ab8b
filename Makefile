# Everything installs from nothing: only python3 (>= 3.10) must exist on the machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install test lint demo bench soak schema clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check reconciler tests $(wildcard bench)
	$(BIN)/reconciler schema --check

test: lint
	$(BIN)/python -m pytest -q

demo: install
	@$(BIN)/python -m reconciler.demo

bench: install
	$(BIN)/python -m bench

# The long reliability runs (about 20 minutes): fault, crash, interrupt, concurrency and bad-input soaks.
# Their short versions run in `make test`.
soak: install
	$(BIN)/python -m pytest -q -m soak tests/soak

schema: install
	$(BIN)/reconciler schema

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
