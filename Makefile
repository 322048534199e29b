# Python 3.10 is required (TFX 1.16 declares Python < 3.11). It is found under pyenv,
# never assumed to be `python3`.
PYTHON310 ?= $(shell ls -d $$(pyenv root 2>/dev/null)/versions/3.10.*/bin/python 2>/dev/null | tail -1)
VENV ?= .venv
PY := $(VENV)/bin/python
# Editable by default, so edits take effect without reinstalling; CI installs a built
# wheel instead (INSTALL=.), so the tests exercise the package as users get it.
INSTALL ?= -e .

.PHONY: setup demo test test-fast serve recommend bench faults clean

$(VENV)/.installed: requirements.txt constraints.txt pyproject.toml
	@test -n "$(PYTHON310)" || { echo "error: Python 3.10 not found under pyenv (set PYTHON310=/path/to/python3.10)"; exit 1; }
	$(PYTHON310) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements.txt
	@# setuptools' build chatter goes to a log; shown only if the install fails
	$(PY) -m pip install --no-deps $(INSTALL) > $(VENV)/install-project.log 2>&1 || \
	  { cat $(VENV)/install-project.log; exit 1; }
	touch $@

setup: $(VENV)/.installed

# Pipeline -> pushed model -> summary with metrics and recommendations.
demo: setup
	$(VENV)/bin/recsys run --config configs/demo.yaml

serve: setup
	$(VENV)/bin/recsys serve --model-base serving_models

# Uses `make serve` if it is running, else serves serving_models in-process for the call.
recommend: setup
	$(VENV)/bin/recsys recommend --user $(or $(USER_ID),u0) --data-dir runs/demo/data/synthetic

# Benchmarks (BENCHMARKS.md has the latest figures): ScaNN vs brute force, the training
# input, pipeline scaling, serving latency. The training-input and serving benchmarks read
# what `make demo` leaves (runs/demo, serving_models). BENCH_ARGS=--quick: small sizes.
bench: setup
	$(PY) bench/scann_index.py $(BENCH_ARGS)
	$(PY) bench/training_input.py $(BENCH_ARGS)
	$(PY) bench/pipeline_scaling.py $(BENCH_ARGS)
	$(PY) bench/serving.py --model-base serving_models --data-dir runs/demo/data/synthetic $(BENCH_ARGS)

# Fault injection (README, "Reliability"): hot swaps, hostile requests, bad input files,
# killed runs; about 10 minutes on 2 cores, nothing needed from `make demo`.
faults: setup
	$(PY) bench/faults.py

test: setup
	$(VENV)/bin/pytest -q tests

# Everything but the end-to-end pipeline runs and the full leaderboard.
test-fast: setup
	$(VENV)/bin/pytest -q -m "not e2e and not slow" tests

clean:
	rm -rf runs serving_models
