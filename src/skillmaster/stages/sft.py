"""Stage ``sft``: the cold start (METHOD.md §8) trains on ``sft-data``'s samples with the RL trainer's
code path (loss on response tokens only); the merged checkpoint becomes iteration 1's starting
policy.

A module of its own, apart from ``sft-data`` (:mod:`skillmaster.stages.sft_data`): a stage's code
dependencies in ``dvc.yaml`` are its module's imports, and training imports no environment,
prompt or generation engine, so editing those does not retrain the cold start.
"""

from __future__ import annotations

from skillmaster.stages import StageContext, register
from skillmaster.stages.contract import StageContract
from skillmaster.tables import SFT_SAMPLES

CONTRACT = StageContract(
    name="sft",
    settings=(
        "seed",
        "sft",
        "model",
        # the train.* keys SFT reads (TrainSettings.for_sft): the RL lr or loss leave SFT alone
        "train.lora",
        "train.weight_decay",
        "train.micro_batch_tokens",
        "train.grad_clip",
        "train.gradient_checkpointing",
        "train.mixed_precision",
        "train.checkpoint_every",
        "train.serving_dtype",
    ),
    reads=lambda w: [w.paths.base_model, w.paths.sft_data],
    writes=lambda w: [w.paths.sft_model],
    metrics=lambda w: [w.paths.metrics(0, "sft")],
)


@register(CONTRACT)
def sft_stage(ctx: StageContext) -> dict:
    """LoRA (or full) SFT on the replayed samples with the RL trainer's loop; ``models/sft`` is the
    merged model, so the RL iterations' adapters and KL reference sit on the SFT policy. Under
    ``train.accelerate_config`` every rank trains; the main process merges and writes the rest."""
    import shutil

    from accelerate import PartialState

    from skillmaster.io import read_json, write_json
    from skillmaster.modeling import MANIFEST, export_merged, load_tokenizer
    from skillmaster.train.samples import build_sft_samples
    from skillmaster.train.settings import TrainSettings
    from skillmaster.train.trainer import train_on_samples

    cfg, paths = ctx.cfg, ctx.paths
    frame = SFT_SAMPLES.read(paths.sft_data)
    samples = build_sft_samples(frame, load_tokenizer(paths.base_model))
    lora = cfg.train.lora.enabled
    scratch = paths.stage_state("sft") / "adapter"
    metrics = train_on_samples(
        samples,
        TrainSettings.for_sft(cfg, seed=cfg.seed),
        model_cfg=cfg.model,
        base_model_dir=paths.base_model,
        init_policy=None,
        out_dir=scratch if lora else paths.sft_model,
        state_dir=paths.stage_state("sft") / "steps",
        tracker=ctx.tracker,
        metric_prefix="sft",
    )
    state = PartialState()
    if state.is_main_process:
        if lora:
            export_merged(paths.base_model, scratch, paths.sft_model)
        base_manifest = paths.base_model / MANIFEST
        if base_manifest.is_file():  # keep the measured CPU dtype for the merged model
            write_json(
                paths.sft_model / MANIFEST, read_json(base_manifest) | {"sft_from": str(paths.sft_data)}
            )
        shutil.rmtree(paths.stage_state("sft"), ignore_errors=True)
    state.wait_for_everyone()
    out = {k.removeprefix("sft/"): v for k, v in metrics.items()} | {
        "samples": len(samples),
        "action_samples": int((frame["kind"] == "action").sum()),
        "review_samples": int((frame["kind"] == "review").sum()),
    }
    if state.is_main_process:
        write_json(paths.metrics(0, "sft"), out)
    return out
