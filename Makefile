# The README's two commands are `make demo` and `make test`; everything else is here for them.
# Each target checks before it works, so running one twice (or `make test` after `make demo`)
# does not redo finished set-up.

# Python's bytecode cache on, where the environment turns it off: without it every test worker
# and every `cnnlab` process a test starts compiles cnnlab and the tests again (seconds each)
unexport PYTHONDONTWRITEBYTECODE

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.cnnlab-installed
FASHION_DIR := /usr/share/datasets/fashion-mnist

.PHONY: setup data browser postgres test quick demo lint format bench bench-full bench-fast mutation reproduce notebooks clean

## setup: make .venv, install cnnlab (editable, with dev tools, ONNX and Optuna), make
## Fashion-MNIST, Chromium (the HTML pages' browser tests) and PostgreSQL (the sweep's shared
## storage test) available
setup: $(STAMP) data browser postgres

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,onnx,sweep]'
	touch $(STAMP)

## data: Fashion-MNIST from Debian's dataset-fashion-mnist where apt-get can install it
data:
	@if [ -f $(FASHION_DIR)/train-images-idx3-ubyte.gz ]; then \
	  echo "Fashion-MNIST: found in $(FASHION_DIR)"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "Fashion-MNIST: installing Debian's dataset-fashion-mnist"; \
	  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
	    || echo "Fashion-MNIST: apt-get failed; cnnlab will download it on first use"; \
	else \
	  echo "Fashion-MNIST: not installed; cnnlab will download it into ~/.cache/cnnlab on first use"; \
	fi

## browser: Debian's chromium where apt-get can install it (the report's browser tests skip,
## saying why, without it); Playwright drives it offline, so its own browser download is unused
browser:
	@if command -v chromium >/dev/null 2>&1; then \
	  echo "Chromium: found at $$(command -v chromium)"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "Chromium: installing Debian's chromium"; \
	  (apt-get install -y -qq chromium >/dev/null 2>&1 \
	    || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)) \
	    || echo "Chromium: apt-get failed; the browser tests will skip"; \
	else \
	  echo "Chromium: not installed; the browser tests will skip"; \
	fi

## postgres: Debian's postgresql server where apt-get can install it (the test of workers sharing
## one study through it skips, saying why, without it; the test starts its own throwaway server)
postgres:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; then \
	  echo "PostgreSQL: found"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "PostgreSQL: installing Debian's postgresql"; \
	  (apt-get install -y -qq postgresql >/dev/null 2>&1 \
	    || (apt-get update -qq && apt-get install -y -qq postgresql >/dev/null)) \
	    || echo "PostgreSQL: apt-get failed; the shared-storage sweep test will skip"; \
	else \
	  echo "PostgreSQL: not installed; the shared-storage sweep test will skip"; \
	fi

## test: set up, then run the whole test suite (about 2 minutes on 2 CPU cores): two pytest-xdist
## workers, each running torch on one thread (two threads each would fight over the two cores;
## the tests that start processes wait on them while the other worker computes)
TEST_WORKERS ?= 2
test: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n $(TEST_WORKERS)

## quick: the suite without the tests marked slow (torchrun jobs, killed and resumed runs, the
## receptive-field proofs on torchvision models): for an edit-test loop; `make test` runs all
quick: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n $(TEST_WORKERS) -m "not slow"

## demo: set up, then train the seed 001 recipe (LeNet on Fashion-MNIST, 10 epochs)
demo: setup
	$(VENV)/bin/cnnlab train --recipe lenet-fashion-mnist

## mutation: mutation testing with mutmut of the training core and every package around it
## (data, models, inspect, report, deploy, cli), the score per module, and docs/MUTANTS.md (the
## survivors) written again; not part of make test: hours on 2 CPU cores (docs/TESTING.md).
## MUTATE="cnnlab.report.*" runs that package's mutants alone and keeps the other results
MUTATE ?=
mutation: $(VENV)/.cnnlab-mutation
	$(if $(MUTATE),,rm -rf mutants)
	OMP_NUM_THREADS=1 PYTHONPATH=$(CURDIR)/tools/mutation $(VENV)/bin/mutmut run $(if $(MUTATE),'$(MUTATE)')
	$(PY) tools/mutation_report.py

$(VENV)/.cnnlab-mutation: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,onnx,mutation]'
	touch $@

## reproduce: rerun every seed experiment, the seed 000 ablation and the modern recipes on real
## data into runs/reproduce/ and write docs/RESULTS.md (about 2 hours on 2 CPU cores, and 2
## more for the fast CIFAR recipes' 22 minutes and airbench's three 33-minute runs; finished
## runs are kept, so a second call only writes the page). MNIST and CIFAR-10 come from
## ../shared/data where it exists, else from CNNLAB_DATA or a download.
SHARED_DATA := $(wildcard ../shared/data)
reproduce: setup
	CNNLAB_DATA=$${CNNLAB_DATA:-$(SHARED_DATA)} $(PY) tools/reproduce.py

## notebooks: run the five tutorial notebooks (docs/tutorials/) at full size, each in a fresh
## Jupyter kernel; the executed copies, with their pictures, go to runs/tutorials/<name>/ beside
## the runs they made (MNIST and CIFAR-10 as for reproduce)
notebooks: setup
	CNNLAB_DATA=$${CNNLAB_DATA:-$(SHARED_DATA)} $(PY) tools/notebooks.py

## lint: ruff check and format check
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

## bench: side-by-side speed table and time to accuracy, quick mode (a few minutes, +3 for
## Fashion-MNIST's recipe); bench-full (its modern recipes alone: 37 minutes here) writes results/
bench: setup
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) benchmarks/bench.py --quick

bench-full: setup
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) benchmarks/bench.py --write

## bench-fast: the fast recipes beside the modern ones, each to the same target (time, FLOPs,
## share of the matmul rate); ONLY=mnist,fashion about 7 minutes; every pair about an hour (55
## minutes on a 2-core AMD EPYC), nearly all of it the modern CIFAR recipes' 20 and 25 minutes
bench-fast: setup
	$(PY) benchmarks/fast.py $(if $(ONLY),--only $(ONLY))

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache mutants
