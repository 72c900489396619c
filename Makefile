# The verbs a newcomer types. Everything installs itself into .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROTOS := $(shell find proto -name '*.proto')
# The client package (client/) holds the generated stubs, built by its own build step.
GEN_STAMP := client/src/licensing/.generated

.PHONY: run test test-unit test-integration test-e2e test-fuzz test-migrations lint typecheck buf-lint \
	breaking validate ci proto install dist bench demo clean

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

test-migrations: $(GEN_STAMP)  ## Every service's migrations: from empty, again, many processes at once
	$(PY) -m pytest -q tests/migrations $(PYTEST_ARGS)

test-fuzz: $(GEN_STAMP)  ## Every RPC against hostile requests; FUZZ_EXAMPLES=1000 for a longer run
	$(PY) -m pytest -q -m fuzz tests/fuzz $(PYTEST_ARGS)

lint: $(GEN_STAMP)  ## ruff, mypy (strict on libs/, services/, licensing_cli/ and bench/) and buf lint
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy libs services licensing_cli bench
	$(MAKE) buf-lint

BUF := npx --yes @bufbuild/buf@1.75.0

buf-lint:
	$(BUF) lint

# The released contract is a committed buf image (contract/README.md): a fresh clone has
# it, where a git tag may not have come along.
breaking:  ## No breaking change against the released contract (contract/v1.json)
	$(BUF) breaking --against contract/v1.json

validate:  ## Render, schema-check, rule-check and checkov every overlay; hadolint the Dockerfile
	deploy/validate.sh

ci:  ## What CI runs on a fresh clone: install, lint, validate, breaking, test
	bash .ci/run

proto: $(GEN_STAMP)

install: $(STAMP)

# Every dependency, direct and indirect, from the hashed lock (all extras: services, CLI,
# embedded PostgreSQL, codegen, tests and linters); then the project itself, editable.
# `pip check` fails when pyproject.toml asks for something the lock does not have.
$(STAMP): pyproject.toml requirements-dev.lock client/pyproject.toml client/setup.py client/build_stubs.py
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes --no-deps -r requirements-dev.lock
	# licensing-client (its build step generates the stubs from proto/), then the platform.
	$(PY) -m pip install -q --no-deps --no-build-isolation -e ./client
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	touch $@

# The lock files, from pyproject.toml: requirements-dev.lock (every extra: make install),
# requirements.lock (the services only: the runtime image) and requirements-build.lock
# (the image's build stage: codegen + setuptools). The smaller two start from the dev
# lock's pins, so the same package has the same version in all three.
LOCK := $(VENV)/bin/pip-compile -q --generate-hashes --allow-unsafe --strip-extras \
	--no-emit-index-url --no-emit-find-links --no-emit-trusted-host
.PHONY: lock
lock:
	test -x $(VENV)/bin/pip-compile || { test -d $(VENV) || $(PYTHON) -m venv $(VENV); \
		$(PY) -m pip install -q pip-tools==7.6.2; }
	$(LOCK) --all-extras -o requirements-dev.lock pyproject.toml
	cp requirements-dev.lock requirements.lock && $(LOCK) -o requirements.lock pyproject.toml
	cp requirements-dev.lock requirements-build.lock && \
		$(LOCK) --extra codegen -o requirements-build.lock pyproject.toml

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
