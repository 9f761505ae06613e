# Two commands do all the set-up on a fresh machine: `make quickstart` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install quickstart test lint benchmark

$(BIN)/.installed: setup.cfg pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "bird_jax needs Python >= 3.11; $(PYTHON) is " + sys.version.split()[0] + ": run make again with PYTHON=python3.11 (or newer).")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

quickstart: install  ## train the lightweight CNN on the embedded digits set (~1-2 min on 2 CPU cores)
	$(BIN)/python -m bird_jax.main --config=configs/quickstart.py --workdir=runs/quickstart

test: install  ## lint + the whole test suite (8 fake CPU devices) + the notebooks
	$(BIN)/ruff check bird_jax configs tests benchmarks notebooks
	$(BIN)/pytest -n 2 --durations=15 tests
	$(BIN)/pytest --nbmake notebooks/data_exploration.ipynb notebooks/results.ipynb \
		notebooks/distillation.ipynb

benchmark: install  ## train-step throughput of every model on this machine
	$(BIN)/python benchmarks/train_step_throughput.py
