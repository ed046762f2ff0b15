# Two entry points for a fresh machine:  `make demo`  and  `make test`.
# Both create ./.venv on first use. torch is installed first from TORCH_SPEC so that
# pip never resolves a CUDA build (on these machines torch==2.13.0 is a local CPU wheel).
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup optional demo test lint format bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[all,dev]"
	touch $(STAMP)

setup: $(STAMP)

# What the optional-component tests need: TorchRec export (torchrec itself with --no-deps: its
# own requirements ask for the CUDA fbgemm-gpu) and gradtracer 0.9.0, installed renamed into
# $(VENV)/legacy-0.9.0 for the same-suite baseline (GRADTRACER_LEGACY_DIR points there).
optional: $(STAMP)
	$(PY) -m pip install -q -e ".[torchrec]"
	$(PY) -m pip install -q --no-deps torchrec==1.8.0
	$(PY) -c "from gradtracer.fault_suite.legacy import install_legacy; install_legacy('$(VENV)/legacy-0.9.0')"

demo: $(STAMP)
	$(VENV)/bin/gradtracer demo

test: $(STAMP)
	$(PY) -m ruff check src tests bench
	$(PY) -m ruff format --check src tests bench
	$(PY) -m mypy
	$(PY) -m pytest -n 2 --dist loadfile -q

lint: $(STAMP)
	$(PY) -m ruff check src tests bench
	$(PY) -m ruff format --check src tests bench
	$(PY) -m mypy

format: $(STAMP)
	$(PY) -m ruff format src tests bench

bench: $(STAMP)
	for f in bench/bench_*.py; do $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
