"""Stage ``sft``: the cold start (METHOD.md §8) trains on ``sft-data``'s samples with the RL trainer's
code path (loss on response tokens only); the merged checkpoint becomes iteration 1's starting
policy.

A module of its own, apart from ``sft-data`` (:mod:`skillmaster.stages.sft_data`): a stage's code
dependencies in ``dvc.yaml`` are its module's imports, and training imports no environment,
prompt or generation engine, so editing those does not retrain the cold start.
"""

from __future__ import annotations

from typing import Annotated

from skillmaster.config import LoraConfig, ModelConfig, SftConfig
from skillmaster.stages import StageContext, register
from skillmaster.stages.contract import StageContract
from skillmaster.stages.views import From, StageView
from skillmaster.tables import SFT_SAMPLES


class SftView(StageView):
    seed: Annotated[int, From("seed")]
    sft: Annotated[SftConfig, From("sft")]
    model: Annotated[ModelConfig, From("model")]
    # the train.* keys SFT reads (TrainSettings.from_sft): the RL lr or loss leave SFT alone
    lora: Annotated[LoraConfig, From("train.lora")]
    weight_decay: Annotated[float, From("train.weight_decay")]
    micro_batch_tokens: Annotated[int, From("train.micro_batch_tokens")]
    grad_clip: Annotated[float, From("train.grad_clip")]
    gradient_checkpointing: Annotated[bool, From("train.gradient_checkpointing")]
    mixed_precision: Annotated[str, From("train.mixed_precision")]
    checkpoint_every: Annotated[int, From("train.checkpoint_every")]
    serving_dtype: Annotated[str, From("train.serving_dtype")]


CONTRACT = StageContract(
    name="sft",
    view=SftView,
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

    view, paths = ctx.view, ctx.paths
    frame = SFT_SAMPLES.read(paths.sft_data)
    samples = build_sft_samples(frame, load_tokenizer(paths.base_model))
    lora = view.lora.enabled
    scratch = paths.stage_state("sft") / "adapter"
    metrics = train_on_samples(
        samples,
        TrainSettings.from_sft(view.sft, view, seed=view.seed),
        model_cfg=view.model,
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
