# v2v developer tasks. pip (not uv/poetry) so the torch builds that lie on some machines' disks are used.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: install test typecheck demo bench clean detectron2

$(VENV)/.v2v-installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints-dev.txt -e ".[dev]"
	touch $@

install: $(VENV)/.v2v-installed

# detectron2 (with its DensePose project) from source, for `extract seg/pose --backend detectron2` and `extract
# densepose` (issue 21). It is not on PyPI; it builds against the installed torch (no build isolation) with a C++
# compiler, the Python headers and ninja (1.5-2.5 minutes on 2 cores; CPU ops only when torch sees no CUDA).
# setuptools<81 stays installed: detectron2's model zoo imports pkg_resources. Built once: skipped while the stamp is
# there and the packages import. DETECTRON2_SRC: a local detectron2 source archive (.tar.gz; CI: the vendored one).
DETECTRON2_SRC ?= ../shared/vendor/detectron2-02b5c4e.tar.gz
DETECTRON2_STAMP = $(VENV)/.detectron2-$(notdir $(DETECTRON2_SRC))

detectron2: install
	@if [ -f "$(DETECTRON2_STAMP)" ] && $(PY) -W ignore -c "import detectron2._C, densepose, pkg_resources" 2>/dev/null; then \
	  echo "detectron2 from $(DETECTRON2_SRC) is installed in $(VENV)"; \
	else \
	  test -f "$(DETECTRON2_SRC)" || { echo "make detectron2: no source archive at $(DETECTRON2_SRC); set DETECTRON2_SRC" >&2; exit 1; }; \
	  set -e; t0=$$(date +%s); \
	  $(PY) -m pip install -q -c constraints-dev.txt 'setuptools<81' ninja av; \
	  PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m pip install -q -c constraints-dev.txt --no-build-isolation "$(DETECTRON2_SRC)"; \
	  tmp=$$(mktemp -d); tar xzf "$(DETECTRON2_SRC)" -C "$$tmp"; \
	  $(PY) -m pip install -q --no-build-isolation --no-deps --no-warn-conflicts "$$tmp"/*/projects/DensePose; rm -rf "$$tmp"; \
	  $(PY) -W ignore -c "import detectron2._C, densepose, pkg_resources"; \
	  touch "$(DETECTRON2_STAMP)"; echo "detectron2 built into $(VENV) in $$(( $$(date +%s) - t0 )) s"; \
	fi

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
