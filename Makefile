# Two commands for a fresh machine (see README): `make book` builds the companion, `make test` tests it.
PYTHON ?= python3
VENV ?= .venv
# The torch requirement installed into a fresh venv. Here it is the CPU wheel on disk; on a machine
# with a GPU set e.g. TORCH_SPEC="torch==2.13.0 --index-url <your CUDA wheel index>".
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: install book test

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e ".[book,test]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

book: install
	PATH="$(abspath $(BIN)):$$PATH" bash scripts/build_book.sh

# Unit tests; every notebook executed at the smoke profile (computing its tiny grids live); the book
# built from the committed paper store; then the tests that read the built book.
test: install
	$(BIN)/python -m pytest -q -rs -m "not slow"
	$(BIN)/milr reproduce --profile smoke
	PATH="$(abspath $(BIN)):$$PATH" bash scripts/build_book.sh
	MILR_REQUIRE_BOOK=1 $(BIN)/python -m pytest -q -rs -m slow
