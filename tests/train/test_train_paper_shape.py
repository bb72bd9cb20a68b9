"""Proof without a GPU (issue #37, item 5): the paper overlay's training shape on the tiny local model
under a 2-process CPU launcher.

Full fine-tuning, KL against the frozen reference, mini-batches smaller than the samples (2 optimizer
steps per iteration), 2 iterations, each continuing from the previous one's training state:

- DDP over gloo (configs/accelerate/cpu-2proc.yaml): both ranks hold the same weights after every
  step, and the reference's log-probs are the same on both;
- FSDP2 over gloo (configs/accelerate/cpu-2proc-fsdp.yaml, the sharding of the paper overlay's
  configs/accelerate/fsdp.yaml): the reference is prepared and sharded too, rank 1's share of its
  weights is not zero (rank 0 alone reads the checkpoint), its log-probs equal rank 0's; a run
  killed after the first step of iteration 2 and resumed ends with the same weights and AdamW
  moments as the uninterrupted run;
- ``dvc repro`` of a temporary project runs the real ``train`` stage under the FSDP launcher for 2
  iterations: DVC's cache grows per iteration by the serving weights alone (bf16 safetensors),
  while the full training state stays under ``.skillmaster/`` (the newest one).

The measured figures are printed (``pytest -s``): bytes per iteration and the resume tolerance.
DeepSpeed is not installed here: tests/train/test_train_launchers.py covers what the trainer hands
to its Accelerate plugin.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

pytestmark = [pytest.mark.model, pytest.mark.slow]

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "paper_shape_driver.py"
ACCELERATE = Path(sys.executable).parent / "accelerate"
RESUME_RTOL, RESUME_ATOL = 1e-6, 1e-9
"""Tolerance of the resumed run against the uninterrupted one (weights and AdamW moments, fp32):
both run the same micro-batches in the same order from the same state, so the difference is 0 on
this machine; the tolerance leaves room for a reordered reduction only."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env(repo_root: Path) -> dict[str, str]:
    return os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo_root / "src")}


def launch(repo_root: Path, launcher: str, model: Path, work: Path, record: Path, iteration: int, kill=0):
    cmd = [str(ACCELERATE), "launch", "--config_file", str(repo_root / "configs/accelerate" / launcher)]
    cmd += ["--main_process_port", str(free_port()), str(DRIVER), "--model-dir", str(model)]
    cmd += ["--work", str(work), "--record", str(record), "--iteration", str(iteration)]
    cmd += ["--kill-after", str(kill)]
    proc = subprocess.run(
        cmd, cwd=repo_root, env=env(repo_root), capture_output=True, text=True, timeout=1200
    )
    return proc


def ok(proc) -> None:
    assert proc.returncode == 0, proc.stderr[-4000:]


def ranks(record: Path, iteration: int) -> tuple[dict, dict]:
    r0, r1 = (json.loads((record / f"rank{r}_iter_{iteration:03d}.json").read_text()) for r in (0, 1))
    return r0, r1


def check_ranks(r0: dict, r1: dict, kind: str) -> None:
    assert (r0["world"], r1["world"]) == (2, 2) and kind in r0["kind"] == r1["kind"]
    assert [s["step"] for s in r0["steps"]] == [1, 2]  # several optimizer steps per iteration
    assert [s["sha256"] for s in r0["steps"]] == [s["sha256"] for s in r1["steps"]]  # equal after every step
    a, b = r0["reference"], r1["reference"]
    assert a["logprob_sum"] == b["logprob_sum"]  # each rank's own reference forward
    assert a["prepass_ref_sum"] == pytest.approx(a["logprob_sum"], rel=1e-5)  # what the KL used
    assert b["own_weights_abs_sum"] > 0 and b["own_weights_numel"] > 0  # rank 1's reference is not zeros
    assert r0["metrics"]["train/kl"] > 0  # the KL term is on and the policy moved off the reference


@pytest.fixture(scope="module")
def model(base_model_dir):
    return base_model_dir


def test_ddp_two_iterations_keep_the_ranks_equal(tmp_path, model, repo_root):
    work, record = tmp_path / "work", tmp_path / "record"
    record.mkdir()
    for it in (1, 2):
        ok(launch(repo_root, "cpu-2proc.yaml", model, work, record, it))
        r0, r1 = ranks(record, it)
        check_ranks(r0, r1, "MULTI_CPU")
        assert r0["reference"]["own_weights_numel"] == r1["reference"]["own_weights_numel"]  # whole copies
    assert r0["metrics"]["train/global_step"] == 4.0  # iteration 2 continued iteration 1's count
    assert (work / "train-state" / "iter_002" / "optimizer.bin").is_file()


def test_fsdp_shards_the_reference_and_a_killed_run_resumes_exactly(tmp_path, model, repo_root):
    straight, resumed, record = tmp_path / "straight", tmp_path / "resumed", tmp_path / "record"
    (record / "straight").mkdir(parents=True)
    (record / "resumed").mkdir()
    ok(launch(repo_root, "cpu-2proc-fsdp.yaml", model, straight, record / "straight", 1))
    r0, r1 = ranks(record / "straight", 1)
    check_ranks(r0, r1, "FSDP")
    # sharded: each rank holds part of the reference (the head is a tensor of its own after prepare)
    assert r0["reference"]["own_weights_numel"] < 134_515_008
    shutil.copytree(straight, resumed)  # iteration 1 as both runs continue from it

    ok(launch(repo_root, "cpu-2proc-fsdp.yaml", model, straight, record / "straight", 2))
    check_ranks(*ranks(record / "straight", 2), "FSDP")

    killed = launch(repo_root, "cpu-2proc-fsdp.yaml", model, resumed, record / "resumed", 2, kill=1)
    assert killed.returncode != 0
    steps = resumed / "resume" / "train_iter_002"
    assert (steps / "step_000001" / "COMPLETE").is_file() and (steps / "prepass.pt").is_file()
    assert not (resumed / "policy" / "iter_002").exists()
    ok(launch(repo_root, "cpu-2proc-fsdp.yaml", model, resumed, record / "resumed", 2))
    r0, _ = ranks(record / "resumed", 2)
    assert [s["step"] for s in r0["steps"]] == [2]  # resumed after step 1
    assert not steps.exists() and (resumed / "policy" / "iter_002" / "COMPLETE").is_file()

    a = torch.load(record / "straight" / "final_iter_002.pt", weights_only=True)
    b = torch.load(record / "resumed" / "final_iter_002.pt", weights_only=True)
    assert set(a["sums"]) == set(b["sums"]) and all(
        set(v) == {"weight", "exp_avg", "exp_avg_sq"} for v in a["sums"].values()
    )
    worst = 0.0
    for name, tensors in a["tensors"].items():
        for kind, value in tensors.items():
            torch.testing.assert_close(b["tensors"][name][kind], value, rtol=RESUME_RTOL, atol=RESUME_ATOL)
            worst = max(worst, float((b["tensors"][name][kind] - value).abs().max()))
    for name, sums in a["sums"].items():
        for kind, value in sums.items():
            assert b["sums"][name][kind] == pytest.approx(value, rel=RESUME_RTOL, abs=RESUME_ATOL), (
                name,
                kind,
            )
    print(
        f"\nresume check (FSDP2, 2 CPU ranks): {len(a['sums'])} tensors' weights and AdamW moments "
        f"within rtol {RESUME_RTOL:g} / atol {RESUME_ATOL:g}; largest difference in the full tensors {worst:g}"
    )
    straight_state = json.loads((straight / "policy" / "iter_002" / "trainer_state.json").read_text())
    resumed_state = json.loads((resumed / "policy" / "iter_002" / "trainer_state.json").read_text())
    for mine, theirs in zip(resumed_state["history"], straight_state["history"], strict=True):
        assert mine["loss"] == pytest.approx(theirs["loss"], rel=1e-6)


# --------------------------------------------------------------------------- dvc repro of a project
DVC_BOOKKEEPING = 64 * 1024
"""Bytes DVC adds to its cache per stage run besides the outputs' contents (a ``.dir`` listing, a
run-cache entry); measured ~3.5 KB."""


def tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def run_tool(cmd: list[str], cwd: Path, timeout: float = 1800) -> str:
    from skillmaster.orchestration.project import tool_env

    proc = subprocess.run(
        cmd,
        cwd=cwd,
        env=tool_env() | {"OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"{cmd}:\n{proc.stdout[-3000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


def test_dvc_repro_of_the_train_stage_versions_serving_weights_only(
    tmp_path, model, repo_root, tokenizer, tables
):
    """The real ``train`` stage of a temporary git + DVC project, under the FSDP CPU launcher, for 2
    iterations: per iteration DVC's cache grows by the serving weights (bf16), no more."""
    from paper_shape_driver import PAPER_SHAPE

    from skillmaster.config import deep_merge, read_yaml
    from skillmaster.paths import Paths
    from skillmaster.tables import EDITS, REVIEWS, STEPS, TRAJECTORIES

    root = tmp_path / "project"
    root.mkdir()
    run_tool(["git", "init", "-q"], root)
    run_tool(["dvc", "init", "-q"], root)
    launcher = "configs/accelerate/cpu-2proc-fsdp.yaml"
    (root / launcher).parent.mkdir(parents=True)
    shutil.copy(repo_root / launcher, root / launcher)
    params = deep_merge(
        read_yaml(repo_root / "params.yaml"),
        {
            "model": {"dtype": "float32", "device": "cpu", "num_threads": 1},
            "train": PAPER_SHAPE | {"accelerate_config": launcher, "progress_reward": 0.0},
            "sft": {"enabled": False},
            "loop": {"iterations": 2},
            "tracking": {"enabled": False},
        },
    )
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    paths = Paths(root)
    shutil.copytree(model, paths.base_model)
    for it in (1, 2):
        STEPS.write(tables.steps, paths.steps(it))
        TRAJECTORIES.write(tables.trajectories, paths.trajectories(it))
        REVIEWS.write(tables.reviews, paths.reviews(it))
        EDITS.write(tables.edits, paths.edits(it))
    stages = {}
    for it in (1, 2):
        port = free_port()
        data = f"data/iter_{it:03d}"
        deps = [f"{data}/collect", f"{data}/review", f"{data}/counterfactual", "models/base", launcher]
        deps += [f"models/policy/iter_{it - 1:03d}"] if it > 1 else []
        stages[f"train-iter_{it:03d}"] = {
            "cmd": f"accelerate launch --config_file {launcher} --main_process_port {port} "
            f"-m skillmaster.cli stage train --iteration {it}",
            "deps": deps,
            "params": ["train"],
            "outs": [f"models/policy/iter_{it:03d}"],
            "metrics": [{f"metrics/iter_{it:03d}/train.json": {"cache": False}}],
        }
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    (root / ".gitignore").write_text("/models/base\n/.skillmaster\n/mlruns\n")
    run_tool(["git", "add", "-A"], root)
    run_tool(["git", "commit", "-q", "-m", "scratch project"], root)
    assert paths.steps(1).is_relative_to(root / "data" / "iter_001")

    cache = root / ".dvc" / "cache"
    grown = []
    for it in (1, 2):
        before = tree_bytes(cache)
        run_tool(["dvc", "repro", "-q", f"train-iter_{it:03d}"], root)
        serving = tree_bytes(paths.policy(it))
        grown.append((tree_bytes(cache) - before, serving))
        state = root / ".skillmaster" / "train-state" / f"iter_{it:03d}"
        print(
            f"\niteration {it}: DVC cache +{grown[-1][0]:,} B; serving weights {serving:,} B "
            f"({sorted(p.name for p in paths.policy(it).iterdir())}); training state outside DVC "
            f"{tree_bytes(state):,} B"
        )
        # the cache holds the serving weights, nothing more (and DVC's own bookkeeping: the folder's
        # .dir listing and the run-cache entry, a few KiB)
        assert serving <= grown[-1][0] <= serving + DVC_BOOKKEEPING
        weights = list(paths.policy(it).glob("model*.safetensors"))
        from safetensors import safe_open

        with safe_open(str(weights[0]), "pt") as f:
            assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"BF16"}  # noqa: SIM118
        assert json.loads((paths.policy(it) / "config.json").read_text())["dtype"] == "bfloat16"
        assert not (paths.policy(it) / "optimizer.pt").exists()
    states = sorted(p.name for p in (root / ".skillmaster" / "train-state").iterdir())
    assert states == ["iter_002"]  # train.keep_states: 1
    assert not (root / ".skillmaster" / "resume" / "train_iter_002").exists()
    metrics = json.loads(paths.metrics(2, "train").read_text())
    assert metrics["global_step"] == 4.0  # iteration 2 continued iteration 1's training state


def test_sft_runs_under_the_launcher_the_plan_gives_it(tmp_path, model, repo_root, tokenizer):
    """``train.accelerate_config`` launches the cold start too (the paper overlay's 7B SFT cannot fit
    one process): the plan's command for ``sft``, run as dvc.yaml would, trains full weights on 2
    FSDP ranks and the main process alone writes ``models/sft`` and the metrics."""
    import shlex

    from train_tables import GOOD, chat

    from skillmaster.config import deep_merge, load_config, read_yaml
    from skillmaster.orchestration.plan import stage_spec
    from skillmaster.paths import Paths
    from skillmaster.tables import SFT_SAMPLES

    root = tmp_path / "project"
    launcher = "configs/accelerate/cpu-2proc-fsdp.yaml"
    (root / launcher).parent.mkdir(parents=True)
    shutil.copy(repo_root / launcher, root / launcher)
    params = deep_merge(
        read_yaml(repo_root / "params.yaml"),
        {
            "model": {"dtype": "float32", "device": "cpu", "num_threads": 1},
            "train": {
                "lora": {"enabled": False},
                "accelerate_config": launcher,
                "micro_batch_tokens": 256,
                "mixed_precision": "no",
            },
            "sft": {"enabled": True, "epochs": 1, "batch_size": 2, "lr": 1e-5, "warmup_ratio": 0.0},
            "tracking": {"enabled": False},
        },
    )
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    spec = stage_spec("sft", 0, load_config(root / "params.yaml"), root)
    assert spec.launcher == launcher
    paths = Paths(root)
    shutil.copytree(model, paths.base_model)
    rows = [
        {
            "task_id": f"t{i}",
            "family": "pick",
            "kind": "action",
            "step": 0,
            "prompt": chat(tokenizer, f"Task {i}"),
        }
        | {"prefix_chars": 0, "response": GOOD}
        for i in range(4)
    ]
    SFT_SAMPLES.write(SFT_SAMPLES.from_rows(rows), paths.sft_data)
    cmd = shlex.split(spec.cmd)
    cmd[:2] = [str(ACCELERATE), "launch", "--main_process_port", str(free_port())]
    proc = subprocess.run(cmd, cwd=root, env=env(repo_root), capture_output=True, text=True, timeout=1200)
    ok(proc)
    assert (paths.sft_model / "COMPLETE").is_file() and (paths.sft_model / "config.json").is_file()
    state = json.loads((paths.sft_model / "trainer_state.json").read_text())
    assert state["loss"] == "sft" and state["step"] == 2 and state["layout"]["distributed_type"] == "FSDP"
    metrics = json.loads(paths.metrics(0, "sft").read_text())
    assert metrics["samples"] == 4 and metrics["steps"] == 2.0
    assert not paths.stage_state("sft").exists()
