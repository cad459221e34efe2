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
	$(PY) -m pip install -q -e '.[test,plan]'
	touch $@

.PHONY: install serve test bench bench-quick
install: $(VENV)/.installed

serve: $(VENV)/.installed
	$(VENV)/bin/gpu-rightsizer serve $(ARGS)

test: $(VENV)/.installed
	$(PY) -m pytest $(PYTEST_ARGS)

# Benchmarks (bench/): print figures and write bench/results/; never part of `make test`.
# Needs Go for the Go floor and (through build-control-plane.sh) the control plane.
bench: $(VENV)/.installed
	$(VENV)/bin/pip install -q -e '.[bench]'
	$(PY) -m bench.run_all $(ARGS)

bench-quick: $(VENV)/.installed
	$(VENV)/bin/pip install -q -e '.[bench]'
	$(PY) -m bench.run_all --quick $(ARGS)
