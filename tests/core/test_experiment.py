"""``skillmaster experiment``: the plan of rows, and a resumable run that restores params.yaml."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
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
    kw.setdefault("sets_of", lambda overlays: [])
    return plan(
        ROWS, overlay=Path("configs/experiment-cpu.yaml"), out=out, iterations=2, seed_bank="seed.json", **kw
    )


def test_plan_trains_each_row_then_evaluates_its_final_policy_with_and_without_skills(tmp_path):
    out = tmp_path / "exp"
    steps = plan_rows(out, sets_of=lambda overlays: [str(o) for o in overlays])
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
    assert restore.argv[3:] == by[("sft", "train")].argv[5:]
    assert restore.done_marker == out / "sft" / "no-skills" / "metrics.json"
    assert (
        by[("sft", "eval-skills")].argv[by[("sft", "eval-skills")].argv.index("--checkpoint") + 1]
        == "models/sft"
    )
    grpo = by[("grpo", "train")].argv
    assert grpo[:5] == ("dvc", "exp", "run", "--name", "exp-grpo")
    assert grpo[5:] == ("configs/experiment-cpu.yaml", "configs/baseline-grpo.yaml")  # shared, then the row's
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
    train = {s.row: s.argv for s in steps if s.kind == "train"}
    for row in ("grpo", "static-skills"):  # 32 action samples + 8 reviews elsewhere: 40 actions here
        assert train[row][-2:] == ("-S", "train.max_samples=40"), row
    for row in ("base", "sft", "no-cf", "merged-adv", "skillmaster"):
        assert not any(a.startswith("train.max_samples") for a in train[row]), row
    # all action samples (max_samples null) or no reviews to make up for: nothing added
    for kw in ({"max_samples": None, "review_samples": 8}, {"max_samples": 32, "review_samples": 0}):
        grpo = next(s.argv for s in plan_rows(tmp_path, **kw) if s.row == "grpo" and s.kind == "train")
        assert not any(a.startswith("train.max_samples") for a in grpo)


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


def test_run_restores_params_between_rows_resumes_and_fails_in_one_sentence(tmp_path):
    params, out = tmp_path / "params.yaml", tmp_path / "exp"
    params.write_text("seed: 0\n")
    marker = out / "a" / "skills" / "metrics.json"
    steps = [
        Step("a", "train", py(f"open({str(params)!r}, 'a').write('method: a\\n')"), out / "a" / "train.json"),
        Step(
            "a",
            "eval-skills",
            py(f"import os; os.makedirs({str(marker.parent)!r}); open({str(marker)!r}, 'w').write('{{}}')"),
            marker,
        ),
        Step(
            "b", "train", py(f"assert open({str(params)!r}).read() == 'seed: 0\\n'"), out / "b" / "train.json"
        ),
    ]
    lines: list[str] = []
    run_plan(steps, params=params, out=out, echo=lines.append)
    assert params.read_text() == "seed: 0\n"  # restored after row a's experiment wrote into it
    assert (out / "a" / "train.json").exists() and (out / "b" / "train.json").exists()
    assert "eval-skills" in (out / "a" / "times.json").read_text()

    lines.clear()
    failing = Step("c", "train", py("raise SystemExit(3)"), out / "c" / "train.json")
    with pytest.raises(DataError, match=r"row 'c' \(train\) failed with exit code 3; rerun"):
        run_plan([*steps, failing], params=params, out=out, echo=lines.append)
    assert sum("done, skipped" in line for line in lines) == 3  # finished steps are not run again
    assert params.read_text() == "seed: 0\n"


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
    assert "dvc exp run --name exp-grpo -S env.max_steps=30 -S method=grpo" in result.stdout
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
    from skillmaster.experiment import checkout_outputs

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
