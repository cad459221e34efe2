# The two commands of the README:  `make serve`  and  `make test`.
# Both create the virtualenv on first use, so a fresh machine needs only python3 (and,
# for the end-to-end tests, Go: they build a real Kubernetes control plane once into
# ~/.cache/gpu-rightsizer).
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=
PYTEST_ARGS ?=

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,plan,docs]'
	touch $@

.PHONY: install serve test lint docs bench bench-quick
install: $(VENV)/.installed

serve: $(VENV)/.installed
	$(VENV)/bin/gpu-rightsizer serve $(ARGS)

test: lint docs
	$(PY) -m pytest $(PYTEST_ARGS)

# Static checks (part of `make test`): lint, format, types (strict on core and
# admission), the layer contract of pyproject.toml.
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# The documentation site (docs/, mkdocs.yml) into .site/; any warning fails it.
docs: $(VENV)/.installed
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

# Benchmarks (bench/): print figures and write bench/results/; never part of `make test`.
# Needs Go for the Go floor and (through build-control-plane.sh) the control plane.
bench: $(VENV)/.installed
	$(VENV)/bin/pip install -q -e '.[bench]'
	$(PY) -m bench.run_all $(ARGS)

bench-quick: $(VENV)/.installed
	$(VENV)/bin/pip install -q -e '.[bench]'
	$(PY) -m bench.run_all --quick $(ARGS)
