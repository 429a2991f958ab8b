# Everything installs from nothing: only python3 (>= 3.10) must exist on the machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install test test-real lint demo bench soak schema clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check reconciler tests $(wildcard bench)
	$(BIN)/mypy  # [tool.mypy] in pyproject.toml: the package, and the pure core under --strict's flags
	$(BIN)/reconciler schema --check
	$(BIN)/check-jsonschema --builtin-schema vendor.github-actions action.yml
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows examples/github-actions/workflows/*.yml

test: lint
	$(BIN)/python -m pytest -q

# The fidelity contract (tests/contract/contract.py) against the workspace in DATABRICKS_HOST:
# opt-in, slow (real endpoint updates), and it cleans up after itself. CAPTURES=DIR saves what it saw.
test-real: install
	@if [ -z "$$DATABRICKS_HOST" ]; then \
		echo "test-real: skipped: DATABRICKS_HOST is not set (set it, and DATABRICKS_TOKEN or a profile, to check this release against your workspace)"; \
	else \
		RECONCILER_CAPTURES="$(CAPTURES)" $(BIN)/python -m pytest -q -m real tests/contract; \
	fi

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
