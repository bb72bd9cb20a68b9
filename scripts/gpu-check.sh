#!/usr/bin/env bash
# GPU check for a lent device (issue #37 item 6): a tiny randomly initialised Llama-shaped model
# (built from a LlamaConfig in code: no download, no weights file), bf16 training steps in-process
# and under a 1-process `accelerate launch`, peak memory per micro-batch token beside the memory
# plan's prediction, and an Accelerate save_state/load_state round trip. See src/skillmaster/gpu_check.py.
#
# Needs only python3 with torch, transformers, accelerate and peft (no vLLM, no DeepSpeed, no
# internet, no `pip install` of this project: it runs from a copy of the repository with
# PYTHONPATH=src). At most 10 minutes (about one on an H100).
#
#   scripts/gpu-check.sh                      # on cuda; gpu-check.json into $OUT/gpu-check or ./gpu-check
#   scripts/gpu-check.sh --out /tmp/gc        # any option of `python -m skillmaster.gpu_check`
#   DEVICE=cpu scripts/gpu-check.sh           # the CPU mode (the tiny CPU model; memory measured n/a)
#   PYTHON=/path/to/python scripts/gpu-check.sh
# Exit status: 0 when every check passed, 1 when one failed, 124 when it ran past 10 minutes.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

python="${PYTHON:-}"
if [[ -z "$python" ]]; then
    if [[ -x .venv/bin/python ]]; then python=.venv/bin/python; else python=python3; fi
fi

scratch="$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
# nothing read from or written to ~/.cache/huggingface (accelerate's default config lives there)
export HF_HOME="$scratch/hf" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$repo/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

args=("$@")
if [[ " $* " != *" --out "* && " $* " != *" --out="* ]]; then
    args+=(--out "${OUT:-$repo}/gpu-check")
fi
if [[ " $* " != *" --device "* && " $* " != *" --device="* ]]; then
    args+=(--device "${DEVICE:-cuda}")
fi

"$python" -c 'import torch, transformers, accelerate, peft' || {
    echo "gpu-check: $python lacks torch, transformers, accelerate or peft" >&2
    exit 1
}
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
rc=0
timeout --kill-after=15 600 "$python" -m skillmaster.gpu_check "${args[@]}" || rc=$?
[[ $rc -eq 124 ]] && echo "gpu-check: stopped after 10 minutes" >&2
exit "$rc"
