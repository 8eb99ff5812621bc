# Two commands for a fresh machine (see README): `make book` builds the companion, `make test` tests it.
PYTHON ?= python3
VENV ?= .venv
# The torch installed into a fresh venv before the package: the CPU build, never PyPI's multi-GB CUDA
# build on Linux. scripts/torch_spec.py picks it: `torch==$(TORCH_VERSION) --index-url $(TORCH_CPU_INDEX)`
# where PyTorch's CPU index answers, else plain `torch==$(TORCH_VERSION)` (an offline machine whose pip
# finds the CPU wheel locally, as CI's does). On a Linux GPU machine, TORCH_SPEC=torch==2.13.0 takes
# PyPI's CUDA build.
TORCH_VERSION ?= 2.13.0
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_SPEC ?= $(shell $(PYTHON) scripts/torch_spec.py $(TORCH_VERSION) $(TORCH_CPU_INDEX))
BIN := $(VENV)/bin

.PHONY: install book test

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || { echo "pip install $(TORCH_SPEC)"; $(BIN)/python -m pip install -q $(TORCH_SPEC); }
	$(BIN)/python -m pip install -q -e ".[book,test]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

# MathJax comes from npm (scripts/install_mathjax.sh); the executed notebooks and the landing page go to
# git-ignored build folders, so `git status` stays clean.
book: install
	PATH="$(abspath $(BIN)):$$PATH" bash scripts/build_book.sh

# Unit tests (their twenty slowest listed, to keep the tier under 3 minutes); every notebook executed at
# the smoke profile (computing its tiny grids live); the book built from the committed paper store; then
# the tests that read the built book.
test: install
	$(BIN)/python -m pytest -q -rs --durations=20 -m "not slow and not integration"
	$(BIN)/python -m pytest -q -rs -m integration
	$(BIN)/milr reproduce --profile smoke
	PATH="$(abspath $(BIN)):$$PATH" bash scripts/build_book.sh
	MILR_REQUIRE_BOOK=1 $(BIN)/python -m pytest -q -rs -m slow
