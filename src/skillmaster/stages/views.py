"""One typed settings view per stage: the settings a stage reads, resolved once from the config.

A stage's view is a frozen model whose every field names the setting it comes from::

    class CollectView(StageView):
        seed: Annotated[int, From("seed")]
        rollout: Annotated[RolloutConfig, Computing("rollout")]
        num_workers: Annotated[int, Execution("rollout.num_workers")]

- :class:`From` ``key``: the setting ``key`` (a leaf, or a whole section standing for all its keys);
  it is a DVC param of the stage;
- :class:`Computing` ``name``: the section ``name`` whole, whose keys less
  :data:`EXECUTION_SETTINGS` are DVC params (the stage may read its
  execution settings too);
- :class:`Execution` ``key``: an execution setting (how the stage runs, never what it computes): read,
  but no DVC param.

A field may ``convert`` the value once, when the view is resolved (``skills.seed_bank`` becomes an
absolute path under the project root). The stage's DVC params are :meth:`StageView.params`, derived
from these fields alone (:attr:`StageContract.settings <skillmaster.stages.contract.StageContract>`),
so what DVC reruns a stage on is what its view holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from skillmaster.config import Config

EXECUTION_SETTINGS = (
    "rollout.num_workers",
    "rollout.max_batch_size",
    "rollout.prefix_reuse",
    "rollout.vllm",
    "counterfactual.probe_chunk",
    "model.num_threads",
    "train.checkpoint_every",
    "train.keep_states_every",
    "train.accelerate_config",
    "orchestration",
    "tracking",
)
"""Settings that decide how a stage runs, never what it computes: worker and thread counts, batch
chunking and prefix caching (replies depend on the prompt and seed alone, tested), probe chunks
(each episode samples from its own stream), engine memory,
checkpoint spacing, which older training states are kept, the task runner and shards (a shard plays the same episodes anywhere, tested),
MLflow. They are no DVC params, so changing them reruns nothing; a stage need not declare them."""


def section(name: str) -> tuple[str, ...]:
    """The keys of settings section ``name`` that decide what a stage computes (the section less
    its :data:`EXECUTION_SETTINGS`), for declaring "everything of this section"."""
    model = Config.model_fields[name].annotation
    keys = (f"{name}.{field}" for field in model.model_fields)
    return tuple(k for k in keys if not any(k == e or k.startswith(e + ".") for e in EXECUTION_SETTINGS))


@dataclass(frozen=True)
class From:
    """The setting ``key`` (dotted; a section stands for all its keys), a DVC param."""

    key: str
    convert: Callable[[Any, Path], Any] | None = None
    """Applied once at resolution to ``(value, project root)``."""

    def params(self) -> tuple[str, ...]:
        return (self.key,)


@dataclass(frozen=True)
class Computing(From):
    """The section ``key`` whole; its keys less the execution settings are DVC params."""

    def params(self) -> tuple[str, ...]:
        return section(self.key)


@dataclass(frozen=True)
class Execution(From):
    """An execution setting (:data:`EXECUTION_SETTINGS`): no DVC param."""

    def __post_init__(self) -> None:
        if not any(self.key == e or self.key.startswith(e + ".") for e in EXECUTION_SETTINGS):
            raise ValueError(f"{self.key} is no execution setting; declare it with From (a DVC param)")

    def params(self) -> tuple[str, ...]:
        return ()


def lookup(cfg: Config, key: str) -> Any:
    """The value of dotted ``key`` in ``cfg`` (a section is returned as its model)."""
    value: Any = cfg
    for part in key.split("."):
        value = getattr(value, part)
    return value


class StageView(BaseModel):
    """Base of the stages' views (see the module text)."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True, extra="forbid")

    sources: ClassVar[dict[str, From]] = {}
    """Field name -> where it comes from (filled for each subclass)."""

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        sources = {}
        for name, info in cls.model_fields.items():
            found = [m for m in info.metadata if isinstance(m, From)]
            if len(found) != 1:
                raise TypeError(f"{cls.__name__}.{name}: annotate it with one From/Computing/Execution")
            sources[name] = found[0]
        cls.sources = sources

    @classmethod
    def params(cls) -> tuple[str, ...]:
        """The view's DVC params: its settings' keys in field order (each once), execution settings left out."""
        return tuple(dict.fromkeys(k for source in cls.sources.values() for k in source.params()))

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """Every setting the view reads (its DVC params and its execution settings), dotted."""
        return tuple(dict.fromkeys(source.key for source in cls.sources.values()))

    @classmethod
    def resolve(cls, cfg: Config, root: Path):
        """The view of ``cfg`` for a project at ``root`` (each field read and converted once)."""
        values = {}
        for name, source in cls.sources.items():
            value = lookup(cfg, source.key)
            values[name] = source.convert(value, root) if source.convert else value
        return cls(**values)


class NoView(StageView):
    """A stage that reads no setting."""
