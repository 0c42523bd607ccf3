# twopath — make help lists the targets.
VENV ?= .venv
PY := $(VENV)/bin/python
OUT ?= reports
SEED ?= 0
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export OMP_WAIT_POLICY ?= PASSIVE
export NUMBA_DISABLE_JIT ?= 1

.PHONY: help install demo demo-full test test-all lint bench clean

help:  ## show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt "torch==2.13.0"
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	touch $@

install: $(VENV)/.installed  ## create .venv and install twopath with its dev tools (CPU torch 2.13.0)

DEMO_SENTENCES ?= 20
DEMO_APPLICANTS ?= 100
# the loan edit table (every localization fine-tuned at one budget: about 13-19 CPU s); --no-edit drops it
DEMO_LOAN_EDIT ?= --edit

demo: install  ## the two seed examples, with small dataset sections (loan with its edit table), in $(OUT)/ (minutes; see README)
	$(VENV)/bin/twopath reproduce sentiment --out $(OUT) --seed $(SEED) --dataset-size $(DEMO_SENTENCES)
	$(VENV)/bin/twopath reproduce loan --out $(OUT) --seed $(SEED) --dataset-size $(DEMO_APPLICANTS) $(DEMO_LOAN_EDIT)
	@echo "open $(OUT)/sentiment/report.html and $(OUT)/loan/report.html (everything: make demo-full)"

demo-full: install  ## every task at its full dataset size, with the edit tables (the MiniLM word edit too): sentiment, loan, hmda, the decoder, agreement
	$(VENV)/bin/twopath reproduce all --out $(OUT) --seed $(SEED) --edit
	$(VENV)/bin/twopath reproduce sentiment-gpt2 --out $(OUT) --seed $(SEED)
	$(VENV)/bin/twopath reproduce agreement --out $(OUT) --seed $(SEED)

test: install  ## run the default test suite (slow tests excluded)
	@$(PY) -m pytest; rc=$$?; if [ $$rc -eq 5 ]; then echo "error: no tests were collected"; exit 1; fi; exit $$rc

test-all: install  ## run every test, slow ones included
	@$(PY) -m pytest -m ""; rc=$$?; if [ $$rc -eq 5 ]; then echo "error: no tests were collected"; exit 1; fi; exit $$rc

lint: install  ## ruff and mypy
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy

bench: install  ## print the speed benchmarks (ratios to one forward pass)
	$(PY) benchmarks/attribution.py
	$(PY) benchmarks/mechanistic.py
	$(PY) benchmarks/lens.py
	$(PY) benchmarks/pipeline.py
	$(PY) benchmarks/evaluate.py
	$(PY) benchmarks/editing.py
	$(PY) benchmarks/length.py

clean:  ## remove the virtual environment and generated reports
	rm -rf $(VENV) $(OUT) .pytest_cache .ruff_cache .mypy_cache
