# The verbs a newcomer types. Everything installs itself into .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROTOS := $(shell find proto -name '*.proto')
# The client package (client/) holds the generated stubs, built by its own build step.
GEN_STAMP := client/src/licensing/.generated

.PHONY: run test test-unit test-integration test-e2e test-fuzz lint typecheck buf-lint proto install dist bench demo clean

run: $(GEN_STAMP)  ## Run the whole platform locally (embedded PostgreSQL unless DATABASE_URL is set)
	$(PY) -m services

test: $(GEN_STAMP)  ## Run every test (embedded PostgreSQL unless TEST_DATABASE_URL is set)
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-unit: $(GEN_STAMP)
	$(PY) -m pytest -q tests/unit $(PYTEST_ARGS)

test-integration: $(GEN_STAMP)
	$(PY) -m pytest -q tests/integration $(PYTEST_ARGS)

test-e2e: $(GEN_STAMP)
	$(PY) -m pytest -q tests/e2e $(PYTEST_ARGS)

test-fuzz: $(GEN_STAMP)  ## Every RPC against hostile requests; FUZZ_EXAMPLES=1000 for a longer run
	$(PY) -m pytest -q -m fuzz tests/fuzz $(PYTEST_ARGS)

lint: $(GEN_STAMP)  ## ruff, mypy (strict on libs/, services/, licensing_cli/ and bench/) and buf lint
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy libs services licensing_cli bench
	$(MAKE) buf-lint

buf-lint:
	npx --yes @bufbuild/buf@1.75.0 lint

proto: $(GEN_STAMP)

install: $(STAMP)

$(STAMP): pyproject.toml client/pyproject.toml client/setup.py client/build_stubs.py
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q setuptools==84.2.1 grpcio-tools==1.85.1 mypy-protobuf==5.1.0
	# licensing-client first (its build step generates the stubs), then the platform.
	$(PY) -m pip install -q --no-build-isolation -e ./client
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# Generated code is built from proto/, never edited: again when a .proto changes.
$(GEN_STAMP): $(STAMP) $(PROTOS)
	$(PY) client/build_stubs.py

dist: $(STAMP)  ## Build the licensing-client wheel into dist/ (stubs generated from proto/)
	rm -rf client/build
	$(PY) -m pip wheel -q --no-deps --no-build-isolation ./client -w dist

bench: $(GEN_STAMP)
	$(PY) -m bench $(BENCH_ARGS)

demo: $(GEN_STAMP)
	$(PY) -m licensing_cli.demo

clean:
	rm -rf gen .venv .local dist client/build $(GEN_STAMP) \
		$(patsubst %,client/src/licensing/%,billing credits pool provisioning)
