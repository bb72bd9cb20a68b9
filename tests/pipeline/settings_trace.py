"""Which settings a piece of code reads: the test check behind every stage's view.

:func:`record_settings` watches a :class:`~skillmaster.config.Config` while code runs and collects
the dotted keys it reads (``rollout.temperature``). A section handed on whole (dumped to JSON for a
cluster worker, or copied with changes) counts as reading all of its keys, and a copy keeps being
watched under the same keys. ``test_flow_loop`` runs every stage with it: a stage resolves its view
(:mod:`skillmaster.stages.views`) inside the recorded block, so what it reads is its view's settings
plus whatever it still reads from ``ctx.cfg`` directly, and all of it must be in the view. The
framework's bookkeeping (opening the MLflow run, the headline split of metric names) happens when
the stage's context is made, outside the block.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from pydantic import BaseModel

from skillmaster.config import Config, Section, flatten


def declared(key: str, settings: tuple[str, ...] | list[str]) -> bool:
    """Whether ``key`` is covered by ``settings`` (itself, or a section above it)."""
    return any(key == s or key.startswith(s + ".") for s in settings)


@contextlib.contextmanager
def record_settings(cfg: Config) -> Iterator[set[str]]:
    """Collect the settings of ``cfg`` read inside the ``with`` block (leaf keys, dotted)."""
    prefix: dict[int, str] = {}
    keep: list[BaseModel] = []  # ids stay unique while the watched objects live
    touched: set[str] = set()

    def watch(obj: BaseModel, at: str) -> None:
        prefix[id(obj)] = at
        keep.append(obj)
        for name in type(obj).model_fields:
            value = object.__getattribute__(obj, name)
            if isinstance(value, BaseModel):
                watch(value, f"{at}{name}.")

    def everything_under(obj: BaseModel) -> None:
        at = prefix[id(obj)]
        touched.update(at + k for k in flatten(dump(obj)))

    watch(cfg, "")
    own = Section.__dict__.get("__getattribute__")
    get, dump, dump_json, copy = (
        Section.__getattribute__,
        BaseModel.model_dump,
        BaseModel.model_dump_json,
        BaseModel.model_copy,
    )

    def getattribute(self, name):
        value = get(self, name)
        at = prefix.get(id(self))
        if at is not None and name in type(self).model_fields and not isinstance(value, BaseModel):
            touched.add(at + name)
        return value

    def model_dump(self, *args, **kwargs):
        if id(self) in prefix:
            everything_under(self)
        return dump(self, *args, **kwargs)

    def model_dump_json(self, *args, **kwargs):
        if id(self) in prefix:
            everything_under(self)
        return dump_json(self, *args, **kwargs)

    def model_copy(self, *args, **kwargs):
        out = copy(self, *args, **kwargs)
        if id(self) in prefix:
            everything_under(self)  # a copy with changes stands for the section
            watch(out, prefix[id(self)])
        return out

    Section.__getattribute__ = getattribute
    BaseModel.model_dump, BaseModel.model_dump_json, BaseModel.model_copy = (
        model_dump,
        model_dump_json,
        model_copy,
    )
    try:
        yield touched
    finally:
        if own is None:
            del Section.__getattribute__
        else:
            Section.__getattribute__ = own
        BaseModel.model_dump, BaseModel.model_dump_json, BaseModel.model_copy = dump, dump_json, copy
