# Two commands for a new machine: `make demo` (quick-start training) and `make test` (the test suite).
# Both create .venv when missing and install what they need; torch goes first so pip takes the CPU wheel on disk.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tunesmith-installed
TORCH := torch==2.13.0
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test install lint bench browser compat
# The board's browser tests drive Debian's chromium (never a downloaded browser): installed when missing, if apt can.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo -n)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check $(TORCH)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e ".[all]" $(TORCH)
	touch $(STAMP)

install: $(STAMP) browser

browser:
	@command -v chromium >/dev/null 2>&1 || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium) \
		|| echo "chromium could not be installed: the board's browser tests will be skipped"

demo: $(STAMP)
	$(BIN)/tunesmith train examples/quickstart.yaml resume_from_checkpoint=auto

test: $(STAMP) browser
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/python -m benchmarks

lint: $(STAMP)
	$(BIN)/ruff check tunesmith tests benchmarks
	$(BIN)/ruff format --check tunesmith tests benchmarks

# The peers' real example configs (compat/corpus), 2 training steps each, through the tunesmith CLI: writes docs/COMPAT.md.
# `make compat COMPAT_ARGS="--plan-only --in-process"` only plans them (seconds).
compat: $(STAMP)
	$(BIN)/python -m compat.run --jobs 2 --docs docs/COMPAT.md $(COMPAT_ARGS)
