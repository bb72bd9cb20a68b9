"""One settings view per stage: the DVC params of a stage are derived from its view's fields, so
changing a setting a stage's view holds changes that stage's params (and no other stage's)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pytest
import yaml

from skillmaster.config import Config, load_config
from skillmaster.orchestration.plan import render_dvc_yaml, stage_plan
from skillmaster.paths import project_file
from skillmaster.stages import STAGE_MODULES, StageContext, contract_of
from skillmaster.stages.views import Execution, From, StageView, lookup


def test_every_stage_has_a_view_and_its_params_are_the_views_keys(repo_root):
    """What plan.py writes as a stage's DVC params is what its view derives, stage by stage."""
    cfg = load_config(repo_root / "params.yaml")
    for spec in stage_plan(cfg, repo_root):
        view = contract_of(spec.stage).view
        assert issubclass(view, StageView) and view is not StageView
        assert spec.params == list(view.params()), spec.name


def _param_values(cfg: Config, root: Path) -> dict[str, dict]:
    """Per DVC stage: its params (from the rendered dvc.yaml) and their values in ``cfg``, as DVC
    compares them."""
    doc = yaml.safe_load(render_dvc_yaml(cfg, root))["stages"]
    out = {}
    for name, entry in doc.items():
        keys = [k for k in entry.get("params", []) if isinstance(k, str)]
        out[name] = {k: _dump(lookup(cfg, k)) for k in keys}
    return out


def _dump(value):
    return value.model_dump(mode="json") if hasattr(value, "model_dump") else value


# (stage, view field, a new value for that field's setting)
CHANGES = [
    ("collect", "rollout", ("rollout.temperature", 0.0)),
    ("review", "review", ("review.temperature", 0.3)),
    ("review", "top_p", ("rollout.top_p", 0.9)),
    ("evaluate", "eval", ("eval.temperature", 0.0)),
    ("bank-init", "seed_bank", ("skills.seed_bank", None)),
    ("train", "train", ("train.lr", 3e-5)),
    ("counterfactual", "counterfactual", ("counterfactual.gamma", 0.5)),
    ("counterfactual", "sft_num_games", ("sft.num_games", 3)),
    ("sft", "weight_decay", ("train.weight_decay", 0.1)),
    ("sft-data", "history_length", ("rollout.history_length", 4)),
    ("model", "revision", ("model.revision", "main")),
    ("report", "iterations", ("loop.iterations", 3)),
]


def _holds(stage: str, key: str) -> bool:
    """Whether ``stage``'s view has a field whose DVC params cover ``key``."""
    return any(key == p or key.startswith(p + ".") for p in contract_of(stage).view.params())


@pytest.mark.parametrize(("stage", "field", "change"), CHANGES, ids=[f"{s}.{f}" for s, f, _ in CHANGES])
def test_changing_a_view_field_changes_that_stages_params_and_no_other(repo_root, stage, field, change):
    key, value = change
    view = contract_of(stage).view
    assert field in view.model_fields
    assert key == view.sources[field].key or key.startswith(view.sources[field].key + ".")
    base = load_config(repo_root / "params.yaml")
    changed = load_config(repo_root / "params.yaml", sets=[f"{key}={yaml.safe_dump(value).strip()}"])
    assert lookup(changed, key) == value and lookup(base, key) != value
    # the view of the stage sees the change
    before = view.resolve(base, repo_root)
    after = view.resolve(changed, repo_root)
    assert getattr(before, field) != getattr(after, field)
    old, new = _param_values(base, repo_root), _param_values(changed, repo_root)
    moved = {name for name in old.keys() & new.keys() if old[name] != new[name]}
    expected = {name for name in old.keys() & new.keys() if _holds(name.split("-iter_")[0], key)}
    assert stage in {name.split("-iter_")[0] for name in moved}
    assert moved == expected, (key, sorted(moved), sorted(expected))


def test_a_view_resolves_derived_values_once():
    """``skills.seed_bank`` is resolved to one absolute path under the project root (or stays absolute)."""
    from skillmaster.stages.bank import BankInitView

    root = Path("/project")
    rel = BankInitView.resolve(Config(skills={"seed_bank": "banks/seed.json"}), root)
    assert rel.seed_bank == root / "banks/seed.json"
    absolute = BankInitView.resolve(Config(skills={"seed_bank": "/elsewhere/seed.json"}), root)
    assert absolute.seed_bank == Path("/elsewhere/seed.json")
    assert BankInitView.resolve(Config(skills={"seed_bank": None}), root).seed_bank is None
    assert project_file("", root) is None


def test_execution_settings_are_read_but_are_no_params():
    class Probe(StageView):
        seed: Annotated[int, From("seed")]
        shards: Annotated[int, Execution("orchestration.shards")]

    assert Probe.params() == ("seed",)
    assert Probe.keys() == ("seed", "orchestration.shards")
    assert Probe.resolve(Config(seed=3), Path(".")).seed == 3
    with pytest.raises(ValueError, match="no execution setting"):
        Execution("rollout.temperature")
    with pytest.raises(TypeError, match="From/Computing/Execution"):

        class Bare(StageView):
            seed: int


def test_a_stage_context_resolves_its_view_once(tmp_path):
    from skillmaster.paths import Paths

    ctx = StageContext(Config(seed=7), 1, Paths(tmp_path), tmp_path, stage="collect")
    assert ctx.view is ctx.view and ctx.view.seed == 7
    assert type(ctx.view) is contract_of("collect").view
    with pytest.raises(RuntimeError, match="no settings view"):
        StageContext(Config(), 1, Paths(tmp_path), tmp_path).view  # noqa: B018


def test_every_registered_stage_is_covered():
    assert {contract_of(n).name for n in STAGE_MODULES} == set(STAGE_MODULES)
