# Two commands on a fresh machine: `make quickstart` (the main job) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch first, pinned: 2.13.0 is the CPU wheel on the project's machines; an unpinned torch
# pulls a multi-GB CUDA build. On a GPU box, override: make install TORCH=torch==2.13.0
TORCH  ?= torch==2.13.0
CORES  ?= 2
STAMP  := $(VENV)/.installed
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1

.PHONY: install quickstart test lint dry-run report bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

quickstart: install
	$(OFFLINE) $(BIN)/snakemake --cores $(CORES) --configfile presets/quickstart.yaml

test: install
	$(OFFLINE) $(BIN)/python -m pytest -q

lint: install
	$(BIN)/snakemake --lint
	$(BIN)/snakemake --lint --configfile presets/quickstart.yaml

dry-run: install
	$(OFFLINE) $(BIN)/snakemake -n --quiet rules

report: install
	$(OFFLINE) $(BIN)/snakemake --cores 1 --configfile presets/quickstart.yaml -- report

# CPU benchmarks; the GPU ones (bench_train_gpu.py, bench_embed.py --gpu) run their --tiny mode here.
bench: install
	for script in benchmarks/bench_losses.py benchmarks/bench_prepare.py benchmarks/bench_report.py benchmarks/bench_embed.py; do \
	  $(OFFLINE) $(BIN)/python $$script || exit 1; done
	$(OFFLINE) $(BIN)/python benchmarks/bench_train_gpu.py --tiny

clean:
	rm -rf .snakemake results/quickstart paper_figures/quickstart
