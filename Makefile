# Everything bootstraps from a bare machine with Python 3.11: `make run`, `make test`.
SHELL := /bin/bash
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-steps test-unit test-integration lint fmt typecheck bench stack-up stack-down migrate clean lock

install: $(STAMP)

$(STAMP): pyproject.toml requirements-dev.lock
	@echo ">> creating $(VENV) with $(PY) and installing the locked dependencies (uv)"
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade uv
	@$(BIN)/uv pip install -q --python $(BIN)/python -r requirements-dev.lock
	@$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	@touch $@

# Re-resolve the pins after editing pyproject.toml: runtime (images) and dev (make, CI).
lock:
	$(BIN)/uv pip compile -q pyproject.toml -o requirements.lock --python-version 3.11
	$(BIN)/uv pip compile -q pyproject.toml --extra dev -o requirements-dev.lock --python-version 3.11

run: install
	$(BIN)/pdm run

# `make test` times its steps (install included) and prints the wall time at its end, passed
# or failed, keeping their exit status: the README's promise is checked on every run.
test:
	@start=$$(date +%s); $(MAKE) --no-print-directory test-steps; status=$$?; \
	took=$$(( $$(date +%s) - start )); \
	echo ">> make test $$( ((status)) && echo FAILED || echo passed ) in $$((took / 60)) min $$((took % 60)) s"; \
	exit $$status

test-steps: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy libs services tools
	$(BIN)/python -m pytest -ra --durations=20

test-unit: install
	$(BIN)/python -m pytest -ra -m "not integration"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

fmt: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: install
	$(BIN)/mypy libs services tools

bench: install
	$(BIN)/python bench/ingest.py

stack-up: install
	$(BIN)/pdm stack up

stack-down: install
	$(BIN)/pdm stack down

migrate: install
	$(BIN)/pdm migrate

clean:
	-$(BIN)/pdm stack down
	rm -rf .pdm
