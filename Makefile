# Set-up on a fresh machine: `make run` or `make test`; both create .venv and install nnopt into it.
PYTHON ?= python3
VENV ?= .venv
# torch==2.13.0 resolves to the CPU wheel on machines that carry it locally; elsewhere pass pip arguments,
# e.g. make TORCH_SPEC="torch==2.13.0 --index-url URL-OF-A-CPU-WHEEL-INDEX" test
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and pinned: a bare `torch` requirement would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# The main job: the whole optimization of a network for digits in a 3-minute budget (optimizer screen, architecture
# and hyperparameter search, retraining, compression, ONNX export, test). Re-running continues or shows the result.
run: install
	$(BIN)/nnopt automl --data digits --budget 3m --out runs/automl-digits

test: install
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python benchmarks/train_loop.py

clean:
	rm -rf $(VENV) runs build src/*.egg-info .pytest_cache
