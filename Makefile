# Two commands on a fresh machine: `make run` and `make test`.
# Both create .venv on first use and reinstall when pyproject.toml or constraints.txt change.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

# Offline by default: no account, no network. Set WANDB_MODE=online to sync.
export WANDB_MODE ?= offline
export PYTHONUNBUFFERED := 1

.PHONY: run test bench venv clean-venv

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch alone first: the pinned CPU build, never the multi-GB CUDA one.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m lora_lab.run +sweep=stacking $(ARGS)

# One pytest-xdist worker per core, each test file on one worker (module fixtures shared), each
# worker on a core of its own (tests/conftest.py). TEST_JOBS=0: in this process, one test after another.
TEST_JOBS ?= $(shell nproc 2>/dev/null || echo 2)

test: $(STAMP)
	$(PY) -m pytest -n $(TEST_JOBS) --dist loadfile $(PYTEST_ARGS)

# bench/bench_compose_large.py (a 0.94B model and 256 adapters: ~10 GB of memory) runs on its own.
bench: $(STAMP)
	$(PY) bench/bench_eval.py
	$(PY) bench/bench_scale.py
	$(PY) bench/bench_seat.py
	$(PY) bench/bench_together.py
	$(PY) bench/bench_threads.py
	$(PY) bench/bench_unmerged.py

clean-venv:
	rm -rf $(VENV)
