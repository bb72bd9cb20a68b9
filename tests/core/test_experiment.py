"""``skillmaster experiment``: the plan of rows, and a resumable run that carries each row's settings
in the run overlay (overrides.yaml) and never writes params.yaml."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from skillmaster.errors import ConfigError, DataError
from skillmaster.experiment import ROWS, Step, plan, run_plan, select_rows, set_flags

REPO = Path(__file__).resolve().parents[2]


def test_set_flags_later_overlays_win(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("env:\n  max_steps: 30\nmethod: x\n")
    b.write_text("method: grpo\nskills:\n  enabled: false\n")
    assert set_flags([a, b]) == ["-S", "env.max_steps=30", "-S", "method=grpo", "-S", "skills.enabled=false"]


def plan_rows(out, **kw):
    kw.setdefault("settings_of", lambda overlays: [])
    kw.setdefault("seed_banks", {r.name: "seed.json" for r in ROWS})
    return plan(ROWS, overlay=Path("configs/experiment-cpu.yaml"), out=out, iterations=2, **kw)


def test_plan_trains_each_row_then_evaluates_its_final_policy_with_and_without_skills(tmp_path):
    out = tmp_path / "exp"
    steps = plan_rows(out, settings_of=lambda overlays: [f"file={o}" for o in overlays])
    by = {(s.row, s.kind): s for s in steps}
    assert [s.kind for s in steps if s.row == "base"] == ["train", "eval-skills", "eval-no-skills"]
    assert by[("base", "train")].argv[-1] == "model"  # only the base model is prepared
    base = by[("base", "eval-skills")].argv
    assert "--checkpoint" not in base and base[base.index("--bank") + 1] == "seed.json"
    assert base[base.index("-S") + 1] == "sft.enabled=false"  # the base model, not the cold start
    for row in ("sft", "grpo", "skillmaster"):
        assert "sft.enabled=false" not in by[(row, "eval-skills")].argv, row
    assert by[("sft", "train")].argv[-1] == "sft"  # the cold start only
    # grpo and static-skills train their own cold start into models/sft: the shared one comes back
    # (from DVC's run cache) before the SFT row is evaluated, as an unnamed experiment
    assert [s.kind for s in steps if s.row == "sft"] == ["train", "restore", "eval-skills", "eval-no-skills"]
    restore = by[("sft", "restore")]
    assert restore.argv[:3] == ("dvc", "exp", "run") and "--name" not in restore.argv
    assert restore.argv[3:] == by[("sft", "train")].argv[5:] == ("sft",)
    assert restore.overrides == by[("sft", "train")].overrides == ("file=configs/experiment-cpu.yaml",)
    assert restore.done_marker == out / "sft" / "no-skills" / "metrics.json"
    assert (
        by[("sft", "eval-skills")].argv[by[("sft", "eval-skills")].argv.index("--checkpoint") + 1]
        == "models/sft"
    )
    grpo = by[("grpo", "train")].argv
    assert grpo == ("dvc", "exp", "run", "--name", "exp-grpo")  # no -S: the settings go to the run overlay
    shared_then_row = ("file=configs/experiment-cpu.yaml", "file=configs/baseline-grpo.yaml")
    assert all(s.overrides == shared_then_row for s in steps if s.row == "grpo")  # evaluations too
    assert not any("-o" in s.argv or "--overlay" in s.argv for s in steps)
    assert by[("grpo", "eval-skills")].argv[-2:] == ("--bank", "seed.json")  # never edited
    sm = by[("skillmaster", "eval-skills")].argv
    assert sm[sm.index("--checkpoint") + 1] == "models/policy/iter_002"
    assert sm[sm.index("--bank") + 1] == "data/banks/iter_002.json"
    assert "--no-skills" in by[("skillmaster", "eval-no-skills")].argv
    assert "--chunk" not in sm  # the evaluation's own default
    for argv in (s.argv for s in plan_rows(out, chunk=70) if s.kind.startswith("eval")):
        assert argv[argv.index("--chunk") + 1] == "70"
    assert (
        by[("skillmaster", "eval-no-skills")].done_marker
        == out / "skillmaster" / "no-skills" / "metrics.json"
    )
    kinds = [s.kind for s in steps if s.row == "no-cf"]
    assert kinds == ["train", "apply", "eval-skills", "eval-no-skills"]  # outputs back before evaluating
    for row in ROWS:
        if row.overlay:
            assert (REPO / row.overlay).exists(), row


def test_rows_without_reviews_train_on_as_many_samples_as_rows_with_them(tmp_path):
    steps = plan_rows(tmp_path, max_samples=32, review_samples=8)
    train = {s.row: s.overrides for s in steps if s.kind == "train"}
    for row in ("grpo", "static-skills"):  # 32 action samples + 8 reviews elsewhere: 40 actions here
        assert train[row][-1] == "train.max_samples=40", row
    for row in ("base", "sft", "no-cf", "merged-adv", "skillmaster"):
        assert not any(a.startswith("train.max_samples") for a in train[row]), row
    # all action samples (max_samples null) or no reviews to make up for: nothing added
    for kw in ({"max_samples": None, "review_samples": 8}, {"max_samples": 32, "review_samples": 0}):
        grpo = next(s.overrides for s in plan_rows(tmp_path, **kw) if s.row == "grpo" and s.kind == "train")
        assert not any(a.startswith("train.max_samples") for a in grpo)


def test_each_row_shows_the_seed_bank_its_settings_name_and_none_when_there_is_none(tmp_path):
    banks = {r.name: "seed.json" for r in ROWS} | {"grpo": "other.json", "base": None}
    steps = plan_rows(tmp_path, seed_banks=banks)
    skills = {s.row: s.argv for s in steps if s.kind == "eval-skills"}
    assert skills["grpo"][-2:] == ("--bank", "other.json")
    assert skills["base"][-1] == "--no-skills" and "--bank" not in skills["base"]  # never `--bank None`
    assert skills["skillmaster"][-2:] == ("--bank", "data/banks/iter_002.json")  # its own last bank
    assert not any("None" in s.argv for s in steps)


def test_a_pass_over_one_condition_puts_each_rows_outputs_back_until_that_pass_is_done(tmp_path):
    out = tmp_path / "exp"
    steps = plan_rows(out, conditions=["skills"])
    assert [s.kind for s in steps if s.row == "grpo"] == ["train", "apply", "eval-skills"]
    apply = next(s for s in steps if (s.row, s.kind) == ("grpo", "apply"))
    assert apply.done_marker == out / "grpo" / "skills" / "metrics.json"
    later = plan_rows(out, conditions=["no-skills"])
    # the second pass applies again: another row's outputs may be in the workspace by then
    apply = next(s for s in later if (s.row, s.kind) == ("grpo", "apply"))
    assert apply.done_marker == out / "grpo" / "no-skills" / "metrics.json"
    assert not any(s.kind == "eval-skills" for s in later)


def test_an_unknown_condition_is_one_clear_error():
    from skillmaster.cli import app

    result = CliRunner().invoke(app, ["experiment", "--dry-run", "-c", "skill"])
    assert result.exit_code != 0
    message = str(result.exception) + result.output
    assert "unknown evaluation condition(s) skill; choose from skills, no-skills" in " ".join(message.split())


def test_unknown_rows_are_one_clear_error():
    assert [r.name for r in select_rows(["skillmaster", "grpo"])] == ["skillmaster", "grpo"]
    with pytest.raises(ConfigError, match=r"unknown experiment row.*choose from base"):
        select_rows(["skilmaster"])


def py(code: str) -> tuple[str, ...]:
    return (sys.executable, "-c", code)


def test_run_carries_each_rows_settings_in_the_overlay_resumes_and_fails_in_one_sentence(tmp_path):
    params, out = tmp_path / "params.yaml", tmp_path / "exp"
    params.write_text("seed: 0  # the user's comment\n")
    before = params.read_bytes()
    overlay = tmp_path / "overrides.yaml"
    overlay.write_text("eval:\n  limit: 2\n")  # the last flow run's
    seen = tmp_path / "seen.txt"
    copy_overlay = f"import shutil; shutil.copy({str(overlay)!r}, {str(seen)!r})"
    marker = out / "a" / "skills" / "metrics.json"
    steps = [
        Step("a", "train", py(copy_overlay), out / "a" / "train.json", overrides=("method=a", "seed=3")),
        Step(
            "a",
            "eval-skills",
            py(f"import os; os.makedirs({str(marker.parent)!r}); open({str(marker)!r}, 'w').write('{{}}')"),
            marker,
            overrides=("method=a", "seed=3"),
        ),
        Step("b", "train", py(copy_overlay), out / "b" / "train.json", overrides=("method=b",)),
    ]
    lines: list[str] = []
    run_plan(steps, params=params, out=out, echo=lines.append)
    assert params.read_bytes() == before  # never written
    assert yaml.safe_load(seen.read_text()) == {"method": "b"}  # row b's settings, not a's
    assert yaml.safe_load((out / "a" / "overrides.yaml").read_text()) == {"method": "a", "seed": 3}
    assert yaml.safe_load((out / "b" / "overrides.yaml").read_text()) == {"method": "b"}
    assert json.loads((out / "a" / "train.json").read_text())["overrides"] == ["method=a", "seed=3"]
    assert "eval-skills" in (out / "a" / "times.json").read_text()
    assert overlay.read_text() == "eval:\n  limit: 2\n"  # the overlay from before, put back

    lines.clear()
    failing = Step("c", "train", py("raise SystemExit(3)"), out / "c" / "train.json", overrides=("method=c",))
    with pytest.raises(DataError, match=r"row 'c' \(train\) failed with exit code 3; rerun"):
        run_plan([*steps, failing], params=params, out=out, echo=lines.append)
    assert sum("done, skipped" in line for line in lines) == 3  # finished steps are not run again
    assert params.read_bytes() == before
    assert overlay.read_text() == "eval:\n  limit: 2\n"
    overlay.unlink()  # without an overlay before, none is left after
    run_plan(
        [Step("d", "train", py("0"), out / "d" / "train.json", overrides=("seed=1",))], params=params, out=out
    )
    assert not overlay.exists() and params.read_bytes() == before


def test_a_bad_row_setting_is_one_clear_error_before_anything_runs(tmp_path):
    params, out = tmp_path / "params.yaml", tmp_path / "exp"
    params.write_text("seed: 0\n")
    ran = tmp_path / "ran"
    step = Step("a", "train", py(f"open({str(ran)!r}, 'w')"), out / "a" / "train.json", overrides=("seed=x",))
    with pytest.raises(ConfigError, match="seed"):
        run_plan([step], params=params, out=out)
    assert not ran.exists() and params.read_text() == "seed: 0\n"


def test_dry_run_prints_every_command(tmp_path):
    from skillmaster.cli import app

    overlay = tmp_path / "exp.yaml"
    overlay.write_text("env:\n  max_steps: 30\n")
    result = CliRunner().invoke(
        app,
        [
            "experiment",
            "--dry-run",
            "-o",
            str(overlay),
            "--out",
            str(tmp_path / "x"),
            "-r",
            "grpo",
            "-r",
            "skillmaster",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "# grpo: run overlay overrides.yaml: env.max_steps=30 method=grpo" in result.stdout
    assert "\ndvc exp run --name exp-grpo\n" in result.stdout and " -S env" not in result.stdout
    assert result.stdout.count("(todo)") == 8  # per training row: experiment, apply, two evaluations


def test_commands_come_from_this_environment_even_when_it_is_not_on_path():
    from skillmaster.experiment import _resolved

    argv = _resolved(["dvc", "exp", "run"])
    assert argv[1:] == ["exp", "run"] and argv[0] == str(Path(sys.executable).parent / "dvc")
    assert _resolved(["python3", "-c", "0"])[0] == "python3"


def test_pipeline_outputs_brings_back_an_experiments_outputs_but_not_its_code(tmp_path, monkeypatch):
    """A real git + DVC repo: experiment ``e1`` ran on older code; after the code changed,
    ``skillmaster pipeline outputs e1`` puts e1's output and dvc.lock back and keeps today's code
    (``dvc exp apply e1`` would put e1's code back too)."""
    import subprocess

    from skillmaster.cli import app
    from skillmaster.orchestration.dvc import checkout_outputs

    monkeypatch.setenv("DVC_SITE_CACHE_DIR", str(tmp_path / "dvc-site"))
    root = tmp_path / "proj"
    root.mkdir()
    dvc = str(Path(sys.executable).parent / "dvc")

    def sh(*argv):
        subprocess.run(argv, cwd=root, check=True, capture_output=True)

    sh("git", "init", "-q")
    sh(dvc, "init", "-q")
    (root / "params.yaml").write_text("x: 0\n")
    (root / "code.py").write_text("print('old code')\n")
    (root / "dvc.yaml").write_text(
        "stages:\n  make:\n    cmd: cat code.py > out.txt && echo x=${x} >> out.txt"
        " && mkdir -p metrics && echo '{\"x\":${x}}' > metrics/m.json\n"
        "    deps: [code.py]\n    params: [x]\n    outs: [out.txt]\n"
        "    metrics:\n    - metrics/m.json:\n        cache: false\n"
    )
    sh("git", "add", "-A")
    sh("git", "commit", "-qm", "base")
    sh(dvc, "exp", "run", "-q", "--name", "e1", "-S", "x=1")
    (root / "params.yaml").write_text("x: 0\n")  # `dvc exp run -S` left x: 1 there
    (root / "code.py").write_text("print('new code')\n")
    sh("git", "commit", "-qam", "new code")
    sh(dvc, "repro", "-q")  # the workspace now holds today's output
    assert (root / "out.txt").read_text() == "print('new code')\nx=0\n"
    (root / "metrics" / "stale.json").write_text("{}")  # another run's file

    monkeypatch.chdir(root)
    out = CliRunner().invoke(app, ["pipeline", "outputs", "e1"])
    assert out.exit_code == 0, out.output
    assert (root / "out.txt").read_text() == "print('old code')\nx=1\n"  # e1's output
    assert json.loads((root / "metrics" / "m.json").read_text()) == {"x": 1}  # e1's metrics (cache: false)
    assert not (root / "metrics" / "stale.json").exists()
    assert (root / "code.py").read_text() == "print('new code')\n"  # today's code
    assert (root / "params.yaml").read_text() == "x: 0\n"
    with pytest.raises(ConfigError, match="no DVC experiment named 'nope'"):
        checkout_outputs("nope", root)


def test_while_a_row_runs_dvc_yaml_lists_its_settings_and_after_it_is_as_before(repo_root, tmp_path):
    """The run overlay's keys are DVC params of the stages that read them (as in a flow run), so the
    row's DVC experiment records and reruns on them; afterwards dvc.yaml is as it was."""
    import shutil

    from skillmaster.config import load_config
    from skillmaster.orchestration.overrides import sync_dvc_yaml

    params, out = tmp_path / "params.yaml", tmp_path / "exp"
    shutil.copy(repo_root / "params.yaml", params)
    bank = load_config(params).skills.seed_bank
    (tmp_path / bank).parent.mkdir(parents=True)
    shutil.copy(repo_root / bank, tmp_path / bank)
    sync_dvc_yaml(params, tmp_path)
    dvc_yaml = tmp_path / "dvc.yaml"
    plain, before = dvc_yaml.read_text(), params.read_bytes()
    seen = tmp_path / "seen.yaml"
    step = Step(
        "a",
        "train",
        py(f"import shutil; shutil.copy({str(dvc_yaml)!r}, {str(seen)!r})"),
        out / "a" / "train.json",
        overrides=("rollout.temperature=0.7",),
    )
    run_plan([step], params=params, out=out, echo=lambda line: None)
    stages = yaml.safe_load(seen.read_text())["stages"]
    assert {"overrides.yaml": ["rollout.temperature"]} in stages["collect-iter_001"]["params"]
    assert dvc_yaml.read_text() == plain and params.read_bytes() == before
    assert not (tmp_path / "overrides.yaml").exists()
