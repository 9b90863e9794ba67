# Two entry points (see README): `make demo` and `make test`. Each sets up .venv itself.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DB ?= $(CURDIR)/.demo.sqlite3

.PHONY: demo docs test lint pytest reliability mutants bench bench-quick compat clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,lint,deploy,bench,docs]"
	touch $(STAMP)

## The reference project on the embedded default: no Redis, methods run in the same process.
demo: $(STAMP)
	DJANGO_DB_PATH=$(DEMO_DB) $(BIN)/python -m django migrate --settings=workers.settings --verbosity 0
	@echo "JSON-RPC endpoint: ws://127.0.0.1:8000/ws/rpc/"
	DJANGO_DB_PATH=$(DEMO_DB) DJANGO_SETTINGS_MODULE=workers.settings \
		$(BIN)/daphne -b 127.0.0.1 -p 8000 workers.asgi:application

## Everything CI runs: lint, types, import contracts, the whole test suite.
test: $(STAMP) lint pytest

lint: $(STAMP)
	$(BIN)/ruff check channels_rpc workers tests benchmarks tools
	$(BIN)/ruff format --check channels_rpc workers tests benchmarks tools
	$(BIN)/mypy
	$(BIN)/lint-imports
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir .site

## The documentation site (mkdocs.yml, docs/) on http://127.0.0.1:8001, rebuilt as pages change.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --dev-addr 127.0.0.1:8001

# The browser tests need Debian's chromium, tests/deploy Debian's nginx (both installed here when
# we may: root) and the TypeScript tests the npm registry's typescript (in .cache/node); without
# them those tests skip (under CI they fail instead).
pytest: $(STAMP)
	tools/ensure-chromium && tools/ensure-nginx && tools/ensure-typescript
	$(BIN)/pytest

## The fault-injection suite, long tests included; prints the table of measured figures.
reliability: $(STAMP)
	rm -f reliability-results.jsonl
	RELIABILITY_RESULTS=reliability-results.jsonl $(BIN)/pytest tests/unit/test_properties.py tests/inprocess/test_vectors.py tests/integration -m "integration or not long" -q
	$(BIN)/python -m tests.integration.reliability.report reliability-results.jsonl

## Breaks core promises one edit at a time in a scratch copy of the working tree; each must fail
## a test (tools/mutants.py: --list, --only NAME).
mutants: $(STAMP)
	$(BIN)/python -m tools.mutants

## This package (daphne and uvicorn front-ends) against channels-rpc 1.0.1 (installed in .bench/),
## raw Channels and a Celery peer: two tables. benchmarks/scaling.py: what a call costs Redis.
bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

bench-quick: $(STAMP)
	$(BIN)/python -m benchmarks.run --quick

## Test suites written for channels-rpc 1.0.1 (tests/compat) on CPython 3.10, 3.11 and 3.12 (found
## on PATH or in pyenv), each in .venv-compat-3.X; a crash at exit fails too (the exit status).
COMPAT_PYTHONS ?= 3.10 3.11 3.12
compat:
	@status=0; for version in $(COMPAT_PYTHONS); do \
		python=; for candidate in $$(command -v python$$version) \
			$$(ls -d $$(pyenv root 2>/dev/null)/versions/$$version.*/bin/python$$version 2>/dev/null | sort -V); do \
			$$candidate -c "" 2>/dev/null && python=$$candidate; done; \
		if [ -z "$$python" ]; then echo "compat $$version: skipped (no python$$version)"; continue; fi; \
		venv=.venv-compat-$$version; log=$$venv/compat.log; \
		{ [ -x $$venv/bin/python ] || $$python -m venv $$venv; } && \
		$$venv/bin/python -m pip install --quiet -e ".[test]" > $$venv/install.log 2>&1 \
			|| { echo "compat $$version: install failed (see $$venv/install.log)"; status=1; continue; }; \
		$$venv/bin/python -m pytest tests/compat -p no:cacheprovider -q > $$log 2>&1; code=$$?; \
		summary=$$(grep -E "(passed|failed|error)" $$log | tail -n 1); \
		full=$$($$venv/bin/python -c 'import platform; print(platform.python_version())'); \
		if [ $$code -eq 0 ]; then echo "compat $$full: ok ($$summary)"; \
		else echo "compat $$full: FAILED, exit status $$code ($$summary; see $$log)"; status=1; fi; \
	done; exit $$status

clean:
	rm -rf $(VENV) .bench .mypy_cache .ruff_cache $(DEMO_DB) reliability-results.jsonl
