# v2v developer tasks. pip (not uv/poetry) so the torch builds that lie on some machines' disks are used.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: install test demo bench clean

$(VENV)/.v2v-installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints-dev.txt -e ".[dev]"
	touch $@

install: $(VENV)/.v2v-installed

test: install
	$(PY) -m pytest --durations=15 $(PYTEST_ARGS)

# The offline demo (issue 14): synthetic world -> dataset check -> a short vid2vid training run on the CPU.
demo: install
	$(VENV)/bin/v2v demo world --out demo_out/world --seed 0 --size 128x64 --frames 24 --sequences 3
	$(VENV)/bin/v2v dataset check demo_out/world
	$(VENV)/bin/v2v train --config examples/configs/tiny.yaml --data demo_out/world --run-dir demo_out/run --max-steps 40

bench: install
	$(PY) benchmarks/bench_model.py --out benchmarks/out/bench_model.json

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache demo_out
