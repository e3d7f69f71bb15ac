# The two commands of the README (`make demo`, `make test`) set themselves up:
# they create .venv with the first Python >= 3.11 found, install the project
# into it, and re-install only when pyproject.toml changes.

PYTHON ?= $(shell for p in python3 python3.13 python3.12 python3.11; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	&& { echo $$p; break; }; done)
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

# The gpt4free releases the compatibility tests run against: the newest, pinned by the
# `gpt4free` extra (in `.[dev]`, so `make test` has it), and 0.4.5.4, the release the
# original provider shipped in, in a venv of its own for `make compat`.
G4F_NEWEST   = $(shell sed -n 's/^ *"g4f==\([^"]*\)".*/\1/p' pyproject.toml)
G4F_OLDEST   = 0.4.5.4
COMPAT_VENV  = .venv-compat
COMPAT_STAMP = $(COMPAT_VENV)/.installed
COMPAT_TESTS = tests/chatgptt/test_gpt4free.py tests/chatgptt/test_providers.py \
	tests/test_readme.py::test_the_provider_inside_gpt4free

.PHONY: demo test compat lint bench check clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: Python 3.11 or newer is required (set PYTHON=...)" >&2; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

$(COMPAT_STAMP): pyproject.toml Makefile
	@test -n "$(PYTHON)" || { echo "error: Python 3.11 or newer is required (set PYTHON=...)" >&2; exit 1; }
	@test -x $(COMPAT_VENV)/bin/python || $(PYTHON) -m venv $(COMPAT_VENV)
	$(COMPAT_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]' 'g4f==$(G4F_OLDEST)'
	@touch $(COMPAT_STAMP)

demo: $(STAMP)
	$(BIN)/chatgptt chat --emulator "Hello, how are you?"

# CHATGPTT_GPT4FREE_VERSION: the gpt4free tests fail, not skip, without that release.
test: $(STAMP)
	CHATGPTT_GPT4FREE_VERSION=$(G4F_NEWEST) $(BIN)/python -m pytest

compat: $(COMPAT_STAMP)
	CHATGPTT_GPT4FREE_VERSION=$(G4F_OLDEST) $(COMPAT_VENV)/bin/python -m pytest $(COMPAT_TESTS)

lint: $(STAMP)
	$(BIN)/ruff check chatgptt stages tests benchmarks
	$(BIN)/ruff format --check chatgptt stages tests benchmarks
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

check: lint test compat

clean:
	rm -rf $(VENV) $(COMPAT_VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis benchmarks/.work
