# Two commands set everything up on a fresh machine:
#   make demo   creates .venv, installs the project, runs the demo (sample footage -> data/outputs)
#   make lint   ruff and mypy on the package (configured in pyproject.toml)
#   make test   creates .venv, installs the project and the Debian packages the tests use, runs
#               `make lint`, then every test (what CI runs: a lint failure fails CI)
#   make dev    the Dagster UI and daemon (`dg dev`, http://127.0.0.1:3000) on the instance the CLI
#               uses by default, .dagster_home/, whose dagster.yaml is the project's instance file
# torch is installed first, as its CPU build unless an NVIDIA GPU is visible (PyPI's Linux wheels
# bundle CUDA, several GB), so the project's torch range is already satisfied.

PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
HAS_GPU := $(shell nvidia-smi -L >/dev/null 2>&1 && echo yes)
TORCH_INDEX := $(if $(HAS_GPU),,--extra-index-url https://download.pytorch.org/whl/cpu)
# Debian packages the tests start or call: ffmpeg (bad-input corpus, decoding parity), PostgreSQL
# and Redis (the deployment tests start their own servers on loopback ports), chromium (headless
# screenshot of a video's partition page, test_unattended.py)
DEBIAN_PACKAGES ?= ffmpeg postgresql redis-server chromium
BIN := $(VENV)/bin

.PHONY: demo dev lint test install system-packages clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --retries 0 $(TORCH_INDEX) "torch==$(TORCH_VERSION)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

system-packages:
	@missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else echo "install the Debian packages:$$missing (sudo apt-get install$$missing)"; exit 1; fi; \
	fi

demo: install
	$(BIN)/curation-assets demo

# DAGSTER_HOME must be absolute; the instance file already lies there, so nothing is copied
dev: install
	DAGSTER_HOME=$(CURDIR)/.dagster_home $(BIN)/dg dev

lint: install
	$(BIN)/ruff check curation_assets
	$(BIN)/mypy

test: install system-packages lint
	$(BIN)/python -m pytest -m "slow or not slow" --durations=25

clean:
	rm -rf $(VENV)
