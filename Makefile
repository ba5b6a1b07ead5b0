# v2v developer tasks. pip (not uv/poetry) so the torch builds that lie on some machines' disks are used.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: install test typecheck demo bench clean

$(VENV)/.v2v-installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints-dev.txt -e ".[dev]"
	touch $@

install: $(VENV)/.v2v-installed

test: install
	$(PY) -m pytest --durations=15 $(PYTEST_ARGS)

typecheck: install
	$(PY) -m mypy --ignore-missing-imports v2vcli plugins/v2v_plugins

# The offline demo (issue 14): synthetic world, vid2vid and the per-frame ablation trained for 10 minutes each on
# the CPU (a GPU when present), synthesis, evaluation, demo_out/report.html.
demo: install
	$(VENV)/bin/v2v demo --out demo_out

bench: install
	$(PY) benchmarks/bench_model.py --out benchmarks/out/bench_model.json

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache demo_out
