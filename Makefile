# Two commands do all the set-up on a fresh machine:
#   make test   - install into .venv (and llama.cpp's vocabularies: make vocab), ruff, and the test suite (CI)
#   make demo   - install into .venv and run the whole pipeline on a tiny local model
# The edit-test loop (under 3 minutes): ruff, then the tests not marked slow
#   make check
# The serving tier (CI runs it too):
#   make test-serve - builds .venv-serve (vLLM) and llama.cpp (make serve-env), then runs real servers
#   make test-serve-families - the same engines on every model family's export (prompt ids)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# the main suite's tests run one math thread each: two workers keep both cores busy (CI has 2); each
# test file stays on one worker, so a module's fixtures are built once
PYTEST_WORKERS ?= -n 2 --dist loadfile

.PHONY: test demo install clean serve-env test-serve test-serve-families check vocab

install: $(VENV)/.installed vocab

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	touch $@

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -x $(PYTEST_WORKERS) --ignore=tests/serving

check: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -x $(PYTEST_WORKERS) -m "not slow" --ignore=tests/serving

# llama.cpp's sources from the llama-cpp-python sdist (a package-registry download, once per machine): the main
# suite rebuilds each model family's published tokenizer from its vocabularies (reasoning_sft/demo/families.py)
vocab: $(VENV)/.installed
	PYTHON=$(BIN)/python bash scripts/vocab.sh

serve-env:
	bash scripts/serve_env.sh

test-serve: install serve-env
	$(BIN)/python -m pytest -q -x tests/serving --ignore=tests/serving/test_family_engines.py

# every model family's export fed to vLLM and llama-server: one vLLM start per family, its own tier
test-serve-families: install serve-env
	$(BIN)/python -m pytest -q -x tests/serving/test_family_engines.py

demo: install
	$(BIN)/python demo.py

clean:
	rm -rf demo_out bench_out
