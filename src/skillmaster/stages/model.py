"""Stage ``model``: build ``models/base`` from ``model.source`` (runs once; DVC caches it).

On a machine with a GPU the stage does not time CPU generation (fp32 against bf16, to pick the CPU
dtype): generation runs on the GPU there, and timing a 7B model on the CPU takes minutes. It saves
the weights in bf16 there (15 GB at 7B instead of 30 GB in fp32)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from skillmaster.config import Config, ModelConfig
from skillmaster.modeling import prepare_base
from skillmaster.paths import Paths
from skillmaster.stages import StageContext, register
from skillmaster.stages.contract import StageContract
from skillmaster.stages.views import From, StageView


def run_prepare(cfg: Config, out: Path | None = None, force: bool = False) -> dict:
    from skillmaster.runtime import project_root

    return prepare_base(cfg.model, out or Paths(project_root()).base_model, force=force)


class ModelView(StageView):
    source: Annotated[str, From("model.source")]
    gguf_file: Annotated[str | None, From("model.gguf_file")]
    revision: Annotated[str | None, From("model.revision")]

    def model(self) -> ModelConfig:
        """The settings :func:`~skillmaster.modeling.prepare_base` reads (where the model comes from),
        the rest at their defaults."""
        return ModelConfig(source=self.source, gguf_file=self.gguf_file, revision=self.revision)


CONTRACT = StageContract(
    name="model",
    view=ModelView,
    writes=lambda w: [w.paths.base_model],
)


@register(CONTRACT)
def model_stage(ctx: StageContext) -> dict:
    import torch

    gpu = torch.cuda.is_available()
    manifest = prepare_base(
        ctx.view.model(), ctx.paths.base_model, measure=not gpu, dtype="bfloat16" if gpu else "float32"
    )
    return {"parameters": manifest["parameters"], "cpu_dtype": manifest["cpu_dtype"]}
