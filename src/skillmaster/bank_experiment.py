"""``skillmaster bank-experiment``: do counterfactually gated edits help a fixed policy more than
ungated ones?

One command, resumable, logged to one MLflow run. With a frozen policy (the cold start: the sft
stage's model, trained once into the work folder, or ``--policy``) it

1. plays N training episodes of the chosen families (the ``collect`` stage) and reviews each
   against the seed bank without committing anything (the ``review`` stage);
2. scores a seeded subset of the valid edits (status added/updated) under the placebo-controlled
   utility with the sign-test gate (the ``counterfactual`` stage with ``control: placebo``,
   ``commit: test``, K probes at a probe temperature from fixed per-family probe pools), with
   placebo-vs-placebo contrasts that measure the false-commit rate;
3. builds four banks from the same candidates (:func:`build_banks`): **seed**; **gated** (seed +
   the edits the test committed); **ungated** (seed + every valid edit); **random** (seed + a
   seeded random subset of the valid edits as large as gated's);
4. evaluates every bank with the frozen policy on the split's games of those families, M episodes
   per game, the same episode ids (hence sampling seeds) in every arm (the evaluate stage's
   :func:`~skillmaster.stages.evaluate.evaluate`); two arms with identical banks share one
   evaluation;
5. reports success per bank with Wilson intervals, the pre-registered primary contrast gated vs
   ungated (exact paired permutation test of the per-game success-count differences,
   :mod:`skillmaster.bank_report`), the other contrasts Holm-corrected, the measured false-commit
   rate beside alpha, and every scored edit with its evidence, probe deltas and p.

Every phase runs the project's own stage functions (:func:`~skillmaster.stages.run_stage`) with the
work folder as their project root (``models/``, ``data/`` and ``metrics/`` under it), one
generation engine for the whole command. A phase's completion marker (``phases/<phase>.json``)
is written after its outputs, so a rerun of the same command skips finished phases (an
evaluation resumes at its first unfinished chunk); the design (arguments and settings) is stored
in ``design.json`` and a different one is refused. Big files stay in the work folder
(``.skillmaster/bank-experiment``); the results folder gets the small ones (report, banks,
per-episode outcomes).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from skillmaster.config import Config, deep_merge, flatten, validate_config
from skillmaster.errors import ConfigError, DataError
from skillmaster.paths import project_file

ARMS = ("seed", "gated", "ungated", "random")
"""The banks, in evaluation order (the seed arm first: its evaluation measures the rates)."""
DEFAULT_FAMILIES = ("pick", "look", "heat", "cool")
ITERATION = 1
PLANNED_POWER = "planned-power.json"
"""The power planned from ``--rates`` (in the work folder), reported by every later run."""
PARTIAL_DIR = ".partial"
"""An arm's kept evaluation chunks (:func:`~skillmaster.stages.evaluate.partial_state`), until it is done."""
"""The stages' iteration number: play, review and scoring are iteration 1 of the work folder."""

EPISODE_SECONDS = 28.9
"""Wall seconds per episode used for the cost estimate: the cold-start policy's evaluation with
skills on valid_seen on this project's 2-core CPU machine (vLLM, 140 episodes at once, 30-step
limit), 4047 s for 140 episodes (results/cpu-experiment/sft/times.json)."""
COLD_START_SECONDS = 5944.0
"""Wall seconds of the cold start (sft-data and sft stages, 48 games, 1 epoch) on the same machine
(results/cpu-experiment/sft/train.json)."""


# --------------------------------------------------------------------------- options and design
@dataclass(frozen=True)
class Options:
    """The command's arguments (what :func:`design_of` stores, less the operational ones)."""

    families: tuple[str, ...] = ()
    """ALFWorld task families (folder prefixes), resolved by :func:`resolve_families`."""
    train_episodes: int = 32
    score: int = 8
    probes: int = 16
    probe_temperature: float = 0.4
    probe_pool: int | None = None
    """Games per family in the fixed probe pools (None: 2K)."""
    placebos: int = 4
    alpha: float = 0.1
    episodes_per_game: int = 4
    eval_games: int | None = None
    """At most this many evaluation games, stratified over families (None: all)."""
    arms: tuple[str, ...] = ARMS
    split: str = "valid_seen"
    chunk: int = 140
    """Evaluation episodes played at a time (a stop keeps the finished chunks)."""
    policy: Path | None = None


def resolve_families(spec: str | Sequence[str]) -> tuple[str, ...]:
    """``pick,look`` (the paper's labels, any case) or family names → ALFWorld family names, in the
    order given; an unknown name is a :class:`ConfigError`."""
    from skillmaster.plots import family_labels

    labels = family_labels("alfworld")
    by_label = {name.lower(): family for family, name in labels.items()}
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if not names:
        raise ConfigError("--families names no task family; e.g. --families pick,look,heat,cool")
    out = []
    for name in names:
        family = name if name in labels else by_label.get(name.lower())
        if family is None:
            choices = ", ".join(f"{v.lower()} ({k})" for k, v in labels.items())
            raise ConfigError(f"--families: unknown task family {name!r}; choose from {choices}")
        if family not in out:
            out.append(family)
    return tuple(out)


def resolve_arms(spec: str | Sequence[str]) -> tuple[str, ...]:
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    bad = [n for n in names if n not in ARMS]
    if bad:
        raise ConfigError(f"--arms: unknown arm(s) {', '.join(bad)}; choose from {', '.join(ARMS)}")
    if "gated" not in names or "ungated" not in names:
        raise ConfigError("--arms must include gated and ungated, the arms of the primary contrast")
    return tuple(a for a in ARMS if a in names)


def check_options(o: Options) -> None:
    """One sentence for the first bad argument."""
    for name in ("train_episodes", "score", "probes", "episodes_per_game", "chunk"):
        if getattr(o, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1 (got {getattr(o, name)})")
    if o.placebos < 0:
        raise ConfigError(f"--placebos must be at least 0 (got {o.placebos})")
    if o.eval_games is not None and o.eval_games < 1:
        raise ConfigError(f"--eval-games must be at least 1 (got {o.eval_games})")
    if not 0.0 < o.alpha < 1.0:
        raise ConfigError(f"--alpha must lie strictly between 0 and 1 (got {o.alpha})")
    if 2.0**-o.probes >= o.alpha:
        raise ConfigError(
            f"--probes {o.probes} can never commit at --alpha {o.alpha:g}: the smallest sign-test p, "
            f"2^-{o.probes}, is not below alpha; raise --probes"
        )
    if o.probe_temperature < 0:
        raise ConfigError(f"--probe-temperature must not be negative (got {o.probe_temperature})")
    if o.probe_pool is not None and o.probe_pool <= o.probes:
        raise ConfigError(
            f"--probe-pool ({o.probe_pool}) must exceed --probes ({o.probes}): each edit draws its probes "
            "from its family's pool less the reviewed game"
        )
    if o.policy is not None:
        p = Path(o.policy)
        if not ((p / "config.json").is_file() and (p / "COMPLETE").is_file()):
            raise ConfigError(
                f"--policy {p}: not a complete merged model folder (it needs config.json and a COMPLETE "
                "marker, as the sft stage writes models/sft)"
            )


PROGRESS = "progress.json"
"""The finished phases' records, in the results folder (:meth:`BankExperiment.write_progress`)."""

OPERATIONAL = ("rollout.vllm", "rollout.num_workers", "model.num_threads", "counterfactual.probe_chunk")
"""Settings that change how fast the experiment runs, not what it measures (left out of the design)."""
SETTINGS_SECTIONS = {"seed", "model", "env", "rollout", "skills", "review", "counterfactual", "sft", "train", "eval"}  # fmt: skip


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def design_of(o: Options, cfg: Config, root: Path) -> dict[str, Any]:
    """What the experiment measures: the arguments but the arms (less ``chunk``'s speed, which stays: a chunk
    kept for a resume must be the same chunk) and the settings, with the seed bank's digest."""
    settings = {
        k: v
        for k, v in flatten(cfg.model_dump(mode="json", include=SETTINGS_SECTIONS)).items()
        if not k.startswith(OPERATIONAL)
    }
    seed_path = project_file(cfg.skills.seed_bank, root)
    if seed_path is not None and not seed_path.is_file():
        raise DataError(f"skills.seed_bank {seed_path}: no such bank file")
    # the arms are left out: every bank is built from the same candidates, so an arm that waited
    # (the random one, on a short budget) can be added to a finished run without replaying it
    design = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(o).items() if k != "arms"}
    design["policy"] = str(Path(o.policy).resolve()) if o.policy is not None else "cold start (sft stage)"
    design["probe_pool"] = o.probe_pool or 2 * o.probes
    design["seed_bank_sha256"] = _sha256(seed_path) if seed_path else None
    design["settings"] = settings
    return design


def design_hash(design: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(design, sort_keys=True).encode()).hexdigest()[:12]


def design_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The arguments (and settings keys) whose values differ between two designs."""
    out = [k for k in sorted(set(old) | set(new)) if k != "settings" and old.get(k) != new.get(k)]
    a, b = old.get("settings", {}), new.get("settings", {})
    out += [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return out


def setting_default(key: str) -> Any:
    """The code's default of dotted setting ``key`` (as ``model_dump(mode="json")`` gives it)."""
    from pydantic import BaseModel

    model: Any = Config
    *sections, leaf = key.split(".")
    for name in sections:
        model = model.model_fields[name].annotation
    field = model.model_fields[leaf]
    value = field.get_default(call_default_factory=True)
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


def _added_since(key: str, old: dict[str, Any], new: dict[str, Any]) -> bool:
    """A key the stored design lacks, at its default: an argument or setting added to the code after
    the run started, which keeps the old behaviour; it does not make another design. Set away from
    its default it does."""
    from dataclasses import fields

    if key in new and key not in old:
        default = {f.name: f.default for f in fields(Options)}.get(key)
        return new[key] == (list(default) if isinstance(default, tuple) else default)
    settings = new.get("settings", {})
    if key in settings and key not in old.get("settings", {}) and key not in old:
        try:
            return settings[key] == setting_default(key)
        except (KeyError, AttributeError):
            return False
    return False


def design_in_force(folder: Path, design: dict[str, Any]) -> dict[str, Any]:
    """The design a run in ``folder`` goes on with: the stored one when ``design`` differs from it
    only by settings or arguments the code gained since (so the run keeps its hash, and its kept
    evaluation chunks, whatever the code adds); else ``design`` (:func:`check_design` refuses an
    incompatible one)."""
    from skillmaster.io import read_json

    stored = folder / "design.json"
    if not stored.is_file():
        return design
    old = read_json(stored, "bank-experiment design")
    if all(_added_since(k, old, design) for k in design_differences(old, design)):
        return old
    return design


def check_design(folder: Path, design: dict[str, Any], what: str) -> None:
    """Refuse a folder that holds another design (one sentence); record the design in a new one."""
    from skillmaster.io import read_json, write_json

    stored = folder / "design.json"
    if stored.is_file():
        old = read_json(stored, "bank-experiment design")
        if old != design:
            diff = [k for k in design_differences(old, design) if not _added_since(k, old, design)]
            if not diff:  # only settings or arguments the code gained after the run started
                return
            shown = ", ".join(diff[:4]) + (f" and {len(diff) - 4} more" if len(diff) > 4 else "")
            raise ConfigError(
                f"{what} {folder} holds a bank experiment with another design ({shown} differ); rerun "
                f"with its arguments and settings to resume it, or pass another {what}"
            )
        return
    write_json(stored, design)


# --------------------------------------------------------------------------- settings per phase
def phase_configs(cfg: Config, o: Options, root: Path) -> dict[str, Config]:
    """The settings each phase's stages run with: params.yaml (+ overlays and --set), then the
    experiment's overrides. ``common``: the cold start, review and scoring (all families, so the
    probe pools leave out the cold start's very games); ``play``: N training episodes of the chosen
    families, one per game (group size 1, no training); ``eval``: the chosen families."""
    seed = project_file(cfg.skills.seed_bank, root)
    absolute_seed = str(seed) if seed is not None else cfg.skills.seed_bank
    common = {
        "skills": {"enabled": True, "seed_bank": absolute_seed},
        "review": {"enabled": True},
        "sft": {"enabled": True},
        "counterfactual": {
            "enabled": True,
            "control": "placebo",
            "paired": True,
            "commit": "test",
            "alpha": o.alpha,
            "probes_per_edit": o.probes,
            "probe_temperature": o.probe_temperature,
            "probe_pool": o.probe_pool or 2 * o.probes,
            "max_edits": o.score,
            "placebo_edits": o.placebos,
        },
        "loop": {"iterations": max(ITERATION, cfg.loop.iterations)},
    }
    families = {"env": {"families": list(o.families)}}
    play = {"rollout": {"num_tasks": o.train_episodes, "group_size": 1}, "train": {"enabled": False}}
    play["orchestration"] = {"shards": 1}
    base = cfg.model_dump(mode="json")
    source = "bank-experiment settings"
    return {
        "common": validate_config(deep_merge(base, common), source),
        "play": validate_config(deep_merge(deep_merge(base, common), {**families, **play}), source),
        "eval": validate_config(deep_merge(deep_merge(base, common), families), source),
    }


def eval_games(cfg_eval: Config, o: Options, root: Path) -> list[tuple[str, str]]:
    """``(task_id, family)`` of the evaluation games, in the evaluate stage's order."""
    from skillmaster.paths import Paths
    from skillmaster.stages import StageContext
    from skillmaster.stages.evaluate import eval_tasks

    ctx = StageContext(cfg=cfg_eval, iteration=0, paths=Paths(root), root=root)
    return [(t.task_id, t.family) for t in eval_tasks(ctx, [o.split], o.eval_games)[o.split]]


# --------------------------------------------------------------------------- banks
def apply_in_order(bank, items: Sequence[tuple[str, Any]], touched: set[str], limit: int | None = None):
    """Commit ``items`` (``(key, Edit)``) to ``bank`` one after the other, as the commit module
    does: a second update of a skill already changed (``touched``) is a conflict, a duplicate of a
    skill committed before is a duplicate (:func:`~skillmaster.skills.commit.commit_edits` with
    policy ``all`` per edit). Stops once ``limit`` edits are committed. Returns (bank, decisions)."""
    from skillmaster.skills.commit import ScoredEdit, commit_edits

    decisions, committed = [], 0
    for key, edit in items:
        if limit is not None and committed >= limit:
            break
        if edit.kind == "update" and edit.skill_id in touched:
            decisions.append({"key": key, "committed": False, "reason": "conflict", "skill_id": ""})
            continue
        new, (d,) = commit_edits(bank, [ScoredEdit(key, edit, 0.0)], "all")
        if d.committed:
            bank, committed = new, committed + 1
            touched.add(d.skill_id)
        decisions.append({"key": key, "committed": d.committed, "reason": d.reason, "skill_id": d.skill_id})
    return bank, decisions


def build_banks(seed, gated, edits: list[dict[str, Any]], rng_seed: int) -> dict[str, tuple[Any, list[dict]]]:
    """The four banks from the same candidates ``edits`` (the edits table's rows: every valid edit,
    ``committed`` where the gate committed it to ``gated``):

    - ``seed``: the seed bank;
    - ``gated``: the counterfactual stage's bank (seed + the edits the sign test committed);
    - ``ungated``: the gated bank + every other valid edit in trajectory-id order, so the gated
      edits come first and gated ⊆ ungated (conflicts and duplicates resolved as the commit module
      does, :func:`apply_in_order`);
    - ``random``: seed + valid edits in a seeded random order until as many are committed as the
      gate committed (or the edits run out).

    Returns ``{arm: (bank, decisions)}``."""
    from skillmaster.skills.bank import Edit

    rows = sorted(edits, key=lambda r: r["traj_id"])
    items = [(r["traj_id"], Edit.model_validate_json(r["edit"])) for r in rows]
    gated_rows = [r for r in rows if r["committed"]]
    touched = {r["committed_id"] for r in gated_rows}
    gated_decisions = [
        {
            "key": r["traj_id"],
            "committed": r["committed"],
            "reason": r["commit_reason"],
            "skill_id": r["committed_id"],
        }
        for r in rows
    ]
    rest = [(k, e) for (k, e), r in zip(items, rows, strict=True) if not r["committed"]]
    ungated, ungated_decisions = apply_in_order(gated, rest, set(touched))
    ungated_decisions = [d for d in gated_decisions if d["committed"]] + ungated_decisions
    shuffled = random.Random(rng_seed).sample(items, len(items))
    rand, random_decisions = apply_in_order(seed, shuffled, set(), limit=len(gated_rows))
    return {
        "seed": (seed, []),
        "gated": (gated, gated_decisions),
        "ungated": (ungated, ungated_decisions),
        "random": (rand, random_decisions),
    }


# --------------------------------------------------------------------------- the run
def _arm_phase(arm: str) -> str:
    return f"eval-{arm}"


def phases_of(o: Options) -> list[str]:
    cold = ["sft-data", "cold-start"] if o.policy is None else ["cold-start"]
    return ["seed-bank", *cold, "play", "review", "score", "banks", *(_arm_phase(a) for a in o.arms)]


class BankExperiment:
    """One experiment in a work folder: phases, markers, the shared engine and the report."""

    def __init__(
        self,
        o: Options,
        cfg: Config,
        *,
        root: Path,
        work: Path,
        out: Path,
        base_model: Path | None = None,
        echo: Callable[[str], None] = print,
    ):
        from skillmaster.paths import Paths

        check_options(o)
        self.o, self.cfg, self.root, self.echo = o, cfg, root, echo
        self.work, self.out = work.resolve(), out
        self.paths = Paths(self.work)
        self.base_model = (base_model or root / "models" / "base").resolve()
        self.design = design_in_force(self.work, design_of(o, cfg, root))
        self.hash = design_hash(self.design)
        self.configs = phase_configs(cfg, o, root)
        self.games = eval_games(self.configs["eval"], o, root)  # a missing split fails before any work
        self.ran: list[str] = []
        """Phases this process ran (not skipped)."""

    # ------------------------------------------------------------------ markers
    def marker(self, phase: str) -> Path:
        return self.work / "phases" / f"{phase}.json"

    def done(self, phase: str) -> bool:
        return self.marker(phase).is_file()

    def finish(self, phase: str, record: dict[str, Any]) -> None:
        """Write the phase's completion marker (after its outputs); a finished evaluation's kept
        chunks are removed only then."""
        from skillmaster.io import write_json

        write_json(self.marker(phase), record)
        if phase.startswith("eval-"):
            shutil.rmtree(self.work / "eval" / phase.removeprefix("eval-") / PARTIAL_DIR, ignore_errors=True)
        self.write_progress()

    def write_progress(self) -> None:
        """``<out>/progress.json``: the finished phases' records so far, beside the results (which
        are kept in git; the work folder is not), so a long run's progress survives the machine."""
        from skillmaster.io import read_json, write_json

        done = {p: read_json(self.marker(p)) for p in phases_of(self.o) if self.done(p)}
        write_json(self.out / PROGRESS, {"design": self.hash, "phases": done, "pending": [p for p in phases_of(self.o) if p not in done]})  # fmt: skip

    # ------------------------------------------------------------------ planning
    def summary(self) -> str:
        o = self.o
        fams = ", ".join(_label(f) for f in o.families)
        return (
            f"{o.train_episodes} training episodes of {fams} reviewed against the seed bank; up to {o.score} "
            f"valid edits scored with K = {o.probes} probes at temperature {o.probe_temperature:g} against same-size "
            f"placebos (sign test, alpha {o.alpha:g}), {o.placebos} placebo-vs-placebo contrast(s); arms "
            f"{', '.join(o.arms)} evaluated on {len(self.games)} {o.split} games x {o.episodes_per_game} "
            f"episodes with the same seeds"
        )

    def cost(self, seconds_per_episode: float) -> dict[str, Any]:
        o = self.o
        episodes = {
            "play": o.train_episodes,
            "probes": 2 * o.probes * (o.score + o.placebos),
            "evaluation": len(self.games) * o.episodes_per_game * len(o.arms),
        }
        cold = 0.0 if o.policy is not None else COLD_START_SECONDS
        hours = (sum(episodes.values()) * seconds_per_episode + cold) / 3600
        return {
            "episodes": episodes,
            "reviews": o.train_episodes,
            "cold_start_hours": cold / 3600,
            "seconds_per_episode": seconds_per_episode,
            "wall_hours": hours,
            "cores": os.cpu_count() or 1,
            "cpu_hours": hours * (os.cpu_count() or 1),
        }

    def plan_lines(self, rates_source: Path | None, effect: float, seconds_per_episode: float) -> tuple[list[str], dict]:  # fmt: skip
        from skillmaster.bank_report import format_gate, format_power, gate_plan, power_plan
        from skillmaster.io import read_json

        o = self.o
        by_family: dict[str, int] = {}
        for _, f in self.games:
            by_family[f] = by_family.get(f, 0) + 1
        games = ", ".join(f"{_label(f)} {n}" for f, n in by_family.items())
        policy = (
            str(o.policy) if o.policy is not None else "the cold start (sft-data + sft stages, trained once)"
        )
        lines = [
            f"design {self.hash}: policy {policy}",
            f"play: {o.train_episodes} training episodes ({', '.join(_label(f) for f in o.families)}), each "
            "reviewed against the seed bank (review stage, nothing committed)",
            f"score: up to {o.score} valid edits (a seeded subset), K = {o.probes} probes at temperature {o.probe_temperature:g} "
            f"from fixed pools of {o.probe_pool or 2 * o.probes} games per family, control placebo, sign test "
            f"at alpha {o.alpha:g}; {o.placebos} placebo-vs-placebo contrast(s)",
            f"arms: {', '.join(o.arms)}; evaluation: {len(self.games)} {o.split} games ({games}) x "
            f"{o.episodes_per_game} episodes = {len(self.games) * o.episodes_per_game} per arm, same seeds",
            "primary contrast: gated vs ungated, exact paired permutation test of per-game success counts, "
            "two-sided alpha 0.05; gated vs seed, ungated vs seed, gated vs random Holm-corrected",
        ]
        plan: dict[str, Any] = {"gate": gate_plan(o.probes, o.alpha)}
        lines.append(format_gate(plan["gate"]))
        stored = self.work / PLANNED_POWER
        if rates_source is not None:
            rates, source = self.rates_from(rates_source)
            plan["power"] = {**power_plan(rates, o.episodes_per_game, effect_points=effect), "source": source}
            lines.append(format_power(plan["power"], source))
        elif stored.is_file():  # planned by an earlier start of this experiment
            plan["power"] = read_json(stored, "planned power")
            lines.append(format_power(plan["power"], plan["power"].get("source", "planned earlier")))
        else:
            lines.append("power: no per-game rates given (--rates FILE or evaluation folder); measured once the seed arm is evaluated")  # fmt: skip
        plan["cost"] = c = self.cost(seconds_per_episode)
        eps = c["episodes"]
        lines.append(
            f"cost: {eps['play']} play + {eps['probes']} probe + {eps['evaluation']} evaluation episodes, "
            f"{c['reviews']} reviews"
            + (f", cold start {c['cold_start_hours']:.1f} h" if c["cold_start_hours"] else "")
            + f" -> about {c['wall_hours']:.1f} h wall ({c['cpu_hours']:.1f} CPU-hours on {c['cores']} cores) at "
            f"{seconds_per_episode:g} s per episode; identical banks share one evaluation"
        )
        return lines, plan

    def rates_from(self, source: Path) -> tuple[list[float], str]:
        """Per-game rates of the design's games from ``source``: a JSON file (``{task_id: rate}`` or
        ``{"games": {task_id: {"rate": r, ...}}}``) or an evaluation folder (``episodes.parquet``,
        family-pooled rates, :func:`~skillmaster.bank_report.game_rates`)."""
        from skillmaster.bank_report import rates_for

        known = load_rates(source)
        rates, filled = rates_for(self.games, known)
        note = f"rates of {source}" + (f", {filled} of {len(rates)} games filled with their family's mean" if filled else "")  # fmt: skip
        return rates, note

    # ------------------------------------------------------------------ running
    def run(
        self,
        *,
        plan_only: bool = False,
        until: str | None = None,
        rates: Path | None = None,
        effect: float = 8.0,
        seconds_per_episode: float = EPISODE_SECONDS,
    ) -> dict[str, Any]:
        from skillmaster.bars import LoggedBar
        from skillmaster.stages.resources import Resources

        lines, plan = self.plan_lines(rates, effect, seconds_per_episode)
        for line in lines:
            self.echo(line)
        if plan_only:
            return {"design": self.design, "design_hash": self.hash, "plan": plan, "lines": lines}
        phases = phases_of(self.o)
        if until is not None and until not in phases:
            raise ConfigError(
                f"--until {until!r} is not a phase of this design; choose from {', '.join(phases)}"
            )
        self.work.mkdir(parents=True, exist_ok=True)
        check_design(self.work, self.design, "--work")
        if rates is not None:  # kept, so that a resumed run reports the planned power too
            from skillmaster.io import write_json

            write_json(self.work / PLANNED_POWER, plan["power"])
        if (self.out / "design.json").is_file():  # results of another design are not overwritten
            check_design(self.out, self.design, "--out")
        tracker = self.open_tracker()
        res = Resources()
        try:
            with LoggedBar(total=len(phases), desc="bank experiment", unit="phase") as bar:
                for phase in phases:
                    if self.done(phase):
                        self.echo(f"[{phase}] done, skipped")
                    else:
                        self.echo(f"[{phase}] running")
                        start = time.monotonic()
                        record = self.run_phase(phase, res) or {}
                        record["seconds"] = round(time.monotonic() - start, 1)
                        self.finish(phase, record)
                        self.ran.append(phase)
                        self.echo(f"[{phase}] finished in {record['seconds'] / 60:.1f} min")
                    bar.update(1)
                    if phase == _arm_phase("seed") and phase in self.ran:
                        measured = self.measured_power(effect)
                        if measured:
                            self.echo(measured["line"])
                    if phase == until:
                        self.echo(f"stopped after {phase} (--until); rerun without --until to go on")
                        tracker.close("FINISHED")
                        return {"design_hash": self.hash, "ran": self.ran, "stopped_after": phase}
            report = self.report(plan, effect)
            self.log(tracker, report)
        except BaseException:
            tracker.close("FAILED")
            raise
        finally:
            res.close()
        tracker.close("FINISHED")
        self.echo(f"report: {self.out / 'report.md'}")
        return {"design_hash": self.hash, "ran": self.ran, "report": report}

    def open_tracker(self):
        """The experiment's MLflow run (found again by its id on a rerun), or a null tracker."""
        from skillmaster.io import read_json, write_json
        from skillmaster.tracking import open_tracker

        if not self.cfg.tracking.enabled:
            from skillmaster.tracking import NullTracker

            return NullTracker()
        stored = self.work / "mlflow.json"
        run_id = read_json(stored).get("run_id") if stored.is_file() else None
        cfg = self.cfg.model_copy(
            update={
                "tracking": self.cfg.tracking.model_copy(
                    update={"run_name": f"bank-experiment-{self.hash[:6]}"}
                )
            }
        )
        tracker = open_tracker(cfg, self.root, run_id=run_id)
        if run_id is None:
            write_json(stored, {"run_id": tracker.run_id})
        tracker.set_tags({"skillmaster.method": "bank-experiment", "bank_experiment.design": self.hash})
        tracker.log_params({"bank_experiment": {k: v for k, v in self.design.items() if k != "settings"}})
        return tracker

    def stage(self, name: str, cfg: Config, iteration: int, res) -> dict[str, Any]:
        from skillmaster.stages import run_stage
        from skillmaster.tracking import NullTracker

        res.suites.clear()  # suites are cached by step limit; the phases differ in env.families
        return run_stage(name, cfg, iteration, root=self.work, tracker=NullTracker(), resources=res)

    def link(self, link: Path, target: Path) -> None:
        if link.is_symlink() and Path(os.readlink(link)) == target:
            return
        if link.is_symlink():
            link.unlink()
        elif link.exists():
            raise DataError(f"{link} exists and is not a link; remove it or pick another --work folder")
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, link, target_is_directory=True)

    def run_phase(self, phase: str, res) -> dict[str, Any]:
        common = self.configs["common"]
        if phase == "seed-bank":
            from skillmaster.modeling import ensure_model_dir

            ensure_model_dir(self.base_model)
            self.link(self.paths.base_model, self.base_model)
            return self.stage("bank-init", common, 0, res)
        if phase == "sft-data":
            return self.stage("sft-data", common, 0, res)
        if phase == "cold-start":
            if self.o.policy is not None:
                self.link(self.paths.sft_model, Path(self.o.policy).resolve())
                return {"policy": str(Path(self.o.policy).resolve())}
            return _numbers(self.stage("sft", common, 0, res))
        if phase == "play":
            return _numbers(self.stage("collect", self.configs["play"], ITERATION, res))
        if phase == "review":
            metrics = self.stage("review", common, ITERATION, res)
            self.echo(f"[review] {metrics.get('reviews_added', 0)} added, {metrics.get('reviews_updated', 0)} updated of {self.o.train_episodes} reviews")  # fmt: skip
            return _numbers(metrics)
        if phase == "score":
            metrics = self.stage("counterfactual", common, ITERATION, res)
            self.echo(
                f"[score] {metrics.get('edits_scored', 0)} scored, {metrics.get('edits_committed', 0)} committed; "
                f"false-commit rate {metrics.get('false_commit_rate', 0.0):.2f} on {metrics.get('placebo_scored', 0)} placebos"
            )  # fmt: skip
            return _numbers(metrics)
        if phase == "banks":
            return self.make_banks()
        if phase.startswith("eval-"):
            return self.evaluate_arm(phase.removeprefix("eval-"), res)
        raise ConfigError(f"unknown phase {phase!r}")

    def make_banks(self) -> dict[str, Any]:
        from skillmaster.io import write_json
        from skillmaster.seeding import derive_seed
        from skillmaster.skills.diff import bank_size
        from skillmaster.skills.store import load_bank, save_bank
        from skillmaster.tables import EDITS

        edits = EDITS.read(self.paths.edits(ITERATION)).to_dicts()
        seed, gated = load_bank(self.paths.bank(0)), load_bank(self.paths.bank(ITERATION))
        banks = build_banks(seed, gated, edits, derive_seed(self.cfg.seed, "bank-experiment", "random"))
        record = {}
        for arm in ARMS:
            bank, decisions = banks[arm]
            save_bank(bank, self.work / "banks" / f"{arm}.json")
            record[arm] = {
                "edits": [d["key"] for d in decisions if d["committed"]],
                "size": bank_size(bank).total,
                "decisions": decisions,
            }
        write_json(self.work / "banks" / "banks.json", record)
        return {arm: {"edits": len(r["edits"]), "size": r["size"]} for arm, r in record.items()}

    def bank_text(self, arm: str) -> str:
        return (self.work / "banks" / f"{arm}.json").read_text()

    def evaluate_arm(self, arm: str, res) -> dict[str, Any]:
        """Play the arm's bank on every game M times (chunks kept for a resume), or reuse the
        evaluation of an earlier arm with the very same bank."""
        from skillmaster.io import write_json
        from skillmaster.paths import Paths
        from skillmaster.skills.store import load_bank
        from skillmaster.stages import StageContext
        from skillmaster.stages.common import load_policy
        from skillmaster.stages.evaluate import evaluate, partial_state
        from skillmaster.tables import TRAJECTORIES
        from skillmaster.tracking import NullTracker

        folder = self.work / "eval" / arm
        text = self.bank_text(arm)
        for other in self.o.arms[: self.o.arms.index(arm)]:
            if self.done(_arm_phase(other)) and self.bank_text(other) == text:
                folder.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(self.work / "eval" / other / "episodes.parquet", folder / "episodes.parquet")
                self.echo(f"[eval-{arm}] the {arm} bank is the {other} bank: its evaluation is reused")
                return {"reused_from": other}
        cfg = self.configs["eval"]
        res.suites.clear()
        ctx = StageContext(cfg, 0, Paths(self.work), self.work, _tracker=NullTracker(), resources=res)
        policy = load_policy(ctx, 0)
        request = {
            "arm": arm,
            "bank": hashlib.sha256(text.encode()).hexdigest(),
            "games": self.o.eval_games,
            "repeats": self.o.episodes_per_game,
            "chunk": self.o.chunk,
            "design": self.hash,
        }
        state = partial_state(folder, request)
        episodes, metrics = evaluate(
            ctx,
            policy,
            load_bank(self.work / "banks" / f"{arm}.json"),
            [self.o.split],
            ["eval_skills"],
            self.o.eval_games,
            chunk=self.o.chunk,
            state=state,
            repeats=self.o.episodes_per_game,
        )
        TRAJECTORIES.write(episodes, folder / "episodes.parquet")
        write_json(folder / "metrics.json", metrics)
        m = metrics[self.o.split]["eval_skills"]
        self.echo(f"[eval-{arm}] {m['successes']}/{m['episodes']} = {m['success_rate']:.1%}")
        return {"successes": m["successes"], "episodes": m["episodes"]}

    # ------------------------------------------------------------------ report
    def arm_episodes(self) -> dict[str, Any]:
        from skillmaster.tables import TRAJECTORIES

        return {arm: TRAJECTORIES.read(self.work / "eval" / arm / "episodes.parquet") for arm in self.o.arms}

    def measured_power(self, effect: float) -> dict[str, Any] | None:
        """Power of the primary contrast from the seed arm's own per-game rates (family-pooled)."""
        from skillmaster.bank_report import format_power, game_rates, power_plan, rates_for
        from skillmaster.tables import TRAJECTORIES

        path = self.work / "eval" / "seed" / "episodes.parquet"
        if "seed" not in self.o.arms or not path.is_file():
            return None
        rates, _ = rates_for(self.games, game_rates(TRAJECTORIES.read(path)))
        plan = power_plan(rates, self.o.episodes_per_game, effect_points=effect)
        return {**plan, "line": format_power(plan, "measured on the seed arm, family-pooled rates")}

    def report(self, plan: dict[str, Any], effect: float) -> dict[str, Any]:
        """The report (JSON and Markdown), the banks and the per-episode outcomes, into ``out``."""
        import polars as pl

        from skillmaster.bank_report import arm_summary, contrasts, format_markdown
        from skillmaster.evaluations import wilson_interval
        from skillmaster.io import atomic_write_text, read_json, write_json
        from skillmaster.tables import EDITS, PLACEBOS, REVIEWS

        episodes = self.arm_episodes()
        banks = read_json(self.work / "banks" / "banks.json", "bank-experiment banks")
        arms = {}
        for arm, eps in episodes.items():
            record = read_json(self.marker(_arm_phase(arm)))
            arms[arm] = {
                **arm_summary(eps),
                "edits": len(banks[arm]["edits"]),
                "bank_size": banks[arm]["size"],
                "reused_from": record.get("reused_from"),
            }
        reviews = REVIEWS.read(self.paths.reviews(ITERATION))
        edits = EDITS.read(self.paths.edits(ITERATION))
        placebos = PLACEBOS.read(self.paths.placebos(ITERATION))
        commits = int(placebos["would_commit"].sum()) if placebos.height else 0
        gate = {
            "reviews": reviews.height,
            "valid_edits": edits.height,
            "scored": int(edits["scored"].sum()) if edits.height else 0,
            "committed": int(edits["committed"].sum()) if edits.height else 0,
            "probes": self.o.probes,
            "alpha": self.o.alpha,
            "placebos": placebos.height,
            "placebo_commits": commits,
            "false_commit_rate": commits / placebos.height if placebos.height else 0.0,
            "false_commit_ci": list(wilson_interval(commits, placebos.height)),
            "placebo_p_values": placebos["p_value"].to_list() if placebos.height else [],
        }
        arguments = dict(reviews.select("traj_id", "arguments").iter_rows())
        scored = []
        for r in edits.filter(pl.col("scored")).sort("traj_id").iter_rows(named=True):
            edit, args = json.loads(r["edit"]), json.loads(arguments.get(r["traj_id"]) or "{}")
            scored.append(
                {
                    "traj_id": r["traj_id"],
                    "task_id": r["task_id"],
                    "family": r["family"],
                    "status": r["status"],
                    "kind": edit.get("kind", ""),
                    "category": edit.get("category", ""),
                    "skill_id": edit.get("skill_id", "") or r["committed_id"],
                    "title": edit.get("title", ""),
                    "principle": edit.get("principle", ""),
                    "when_to_apply": edit.get("when_to_apply", ""),
                    "evidence": args.get("evidence") or args.get("reason") or "",
                    "probe_task_ids": r["probe_task_ids"],
                    "deltas": [a - b for a, b in zip(r["scores_after"], r["scores_before"], strict=True)],
                    "utility": r["utility"],
                    "p_value": r["p_value"],
                    "committed": r["committed"],
                    "commit_reason": r["commit_reason"],
                    "committed_id": r["committed_id"],
                }
            )
        power_lines, power = [], {}
        if "power" in plan:
            power["planned"] = plan["power"]
            power_lines.append(_format_power(plan["power"], "planned: " + plan["power"].get("source", "")))
        measured = self.measured_power(effect)
        if measured:
            power["measured"] = {k: v for k, v in measured.items() if k != "line"}
            power_lines.append(measured["line"])
        phases = {p: read_json(self.marker(p)).get("seconds") for p in phases_of(self.o) if self.done(p)}
        report = {
            "question": "do counterfactually gated edits help a fixed policy more than ungated ones?",
            "design_hash": self.hash,
            "summary": self.summary(),
            "design": self.design,
            "arms": arms,
            "contrasts": contrasts(episodes),
            "gate": gate,
            "edits": scored,
            "banks": {arm: {"edits": b["edits"], "size": b["size"]} for arm, b in banks.items()},
            "power": {**power, "lines": power_lines} if power_lines else {},
            "cost": plan.get("cost"),
            "phase_seconds": phases,
        }
        out = self.out
        out.mkdir(parents=True, exist_ok=True)
        check_design(out, self.design, "--out")
        write_json(out / "report.json", report)
        atomic_write_text(out / "report.md", format_markdown(report))
        for arm in self.o.arms:
            (out / "banks").mkdir(exist_ok=True)
            atomic_write_text(out / "banks" / f"{arm}.json", self.bank_text(arm))
        slim = pl.concat(
            [
                eps.select("traj_id", "task_id", "family", "won", "length").with_columns(
                    pl.lit(arm).alias("arm")
                )
                for arm, eps in episodes.items()
            ]
        ).select("arm", "traj_id", "task_id", "family", "won", "length")
        atomic_write_text(out / "episodes.csv", slim.write_csv())
        return report

    def log(self, tracker, report: dict[str, Any]) -> None:
        """The report's numbers as ``bank_experiment/...`` metrics, and the results folder as artifacts."""
        from skillmaster.tracking import metric_names

        c = report["contrasts"]
        numbers = {
            "arm": {
                arm: {
                    k: a[k] for k in ("success_rate", "ci_low", "ci_high", "successes", "episodes", "edits")
                }
                for arm, a in report["arms"].items()
            },
            "primary": {
                k: c["primary"][k] for k in ("difference_points", "p_value", "sign_test_p", "mcnemar_p")
            },
            "contrast": {
                s["name"].replace(" ", "_"): {k: s[k] for k in ("difference_points", "p_value", "p_holm")}
                for s in c["secondary"]
            },
            "gate": {k: v for k, v in report["gate"].items() if isinstance(v, int | float)},
            "power": {
                kind: {k: v for k, v in p.items() if isinstance(v, int | float)}
                for kind, p in report.get("power", {}).items()
                if kind != "lines"
            },
            "phase_seconds": {k: v for k, v in report["phase_seconds"].items() if v is not None},
        }
        tracker.log_metrics(metric_names("bank_experiment", numbers))
        tracker.log_artifact(self.out, "bank-experiment")


def _format_power(plan: dict[str, Any], source: str) -> str:
    from skillmaster.bank_report import format_power

    return format_power(plan, source)


def _numbers(metrics: dict[str, Any]) -> dict[str, Any]:
    """A stage's scalar metrics (what a phase marker keeps)."""
    return {k: v for k, v in metrics.items() if isinstance(v, int | float | str | bool)}


def _label(family: str) -> str:
    from skillmaster.plots import label

    return label(family)


def load_rates(source: Path) -> dict[str, Any]:
    """Per-game rates from a JSON file or an evaluation folder (see :meth:`BankExperiment.rates_from`)."""
    from skillmaster.bank_report import game_rates
    from skillmaster.io import read_json

    source = Path(source)
    if source.is_dir():
        episodes = source / "episodes.parquet"
        if not episodes.is_file():
            raise DataError(f"--rates {source}: a folder must hold an evaluation's episodes.parquet")
        import polars as pl

        return game_rates(pl.read_parquet(episodes))
    data = read_json(source, "rates file")
    games = data.get("games", data) if isinstance(data, dict) else None
    if not isinstance(games, dict) or not games:
        raise DataError(
            f'--rates {source}: expected a JSON object of task ids to rates (or to {{"rate": r}})'
        )
    return games


# --------------------------------------------------------------------------- command
def bank_experiment_cmd(
    families: Annotated[
        str,
        typer.Option(help="Task families, comma-separated (Pick, Look, Clean, Heat, Cool, Pick2; any case)."),
    ] = ",".join(DEFAULT_FAMILIES),
    train_episodes: Annotated[int, typer.Option(help="Training episodes played and reviewed.")] = 32,
    score: Annotated[int, typer.Option(help="Valid edits scored (a seeded subset).")] = 8,
    probes: Annotated[int, typer.Option(help="K: probe tasks per scored edit (2K episodes each).")] = 16,
    probe_temperature: Annotated[float, typer.Option(help="Sampling temperature of probe episodes.")] = 0.4,
    probe_pool: Annotated[
        int | None, typer.Option(help="Games per family in the fixed probe pools (default 2K).")
    ] = None,
    placebos: Annotated[int, typer.Option(help="Placebo-vs-placebo contrasts (the false-commit rate).")] = 4,
    alpha: Annotated[float, typer.Option(help="Level of the sign-test gate.")] = 0.1,
    episodes_per_game: Annotated[int, typer.Option(help="M: evaluation episodes per game and arm.")] = 4,
    eval_games: Annotated[
        int | None,
        typer.Option(help="At most this many evaluation games, stratified over families (default: all)."),
    ] = None,
    arms: Annotated[
        str, typer.Option(help="Arms to build and evaluate (gated and ungated are required).")
    ] = ",".join(ARMS),
    split: Annotated[str, typer.Option(help="Evaluation split.")] = "valid_seen",
    policy: Annotated[
        Path | None,
        typer.Option(
            help="A merged policy folder (e.g. models/sft) to freeze; default: train the cold start once."
        ),
    ] = None,
    rates: Annotated[
        Path | None,
        typer.Option(
            help="Per-game success rates for the power plan: a JSON file ({task_id: rate}) or an evaluation "
            "folder holding episodes.parquet (e.g. results/cpu-experiment/sft/skills; family-pooled rates)."
        ),
    ] = None,
    effect: Annotated[float, typer.Option(help="Improvement (points) the power is reported against.")] = 8.0,
    plan: Annotated[
        bool, typer.Option("--plan", help="Print the design and its power, run nothing.")
    ] = False,
    until: Annotated[str | None, typer.Option(help="Stop after this phase (e.g. review).")] = None,
    work: Annotated[Path, typer.Option(help="Work folder (big files, phase markers).")] = Path(
        ".skillmaster/bank-experiment"
    ),
    out: Annotated[Path, typer.Option(help="Results folder (report, banks, outcomes).")] = Path(
        "results/bank-experiment"
    ),
    chunk: Annotated[
        int, typer.Option(help="Evaluation episodes played at a time; finished chunks are kept.")
    ] = 140,
    episode_seconds: Annotated[
        float,
        typer.Option(help="Wall seconds per episode for the cost estimate (measured: 28.9 on 2 cores)."),
    ] = EPISODE_SECONDS,
    base_model: Annotated[
        Path | None, typer.Option(help="The prepared base model (default models/base).")
    ] = None,
    params: Annotated[Path, typer.Option("--params", "-p", help="Settings file.")] = Path("params.yaml"),
    overlay: Annotated[list[Path] | None, typer.Option("--overlay", "-o", help="Overlay file(s).")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", "-S", help="Override one setting: KEY=VALUE.")
    ] = None,
) -> None:
    """Do counterfactually gated edits help a fixed policy more than ungated ones? Builds seed, gated,
    ungated and random banks from one set of reviewed edits and evaluates them paired (resumable)."""
    from skillmaster.config import load_config
    from skillmaster.runtime import configure_environment, project_root

    root = project_root(params.resolve().parent)
    configure_environment(root)
    cfg = load_config(params, overlays=overlay or [], sets=set_ or [])
    options = Options(
        families=resolve_families(families),
        train_episodes=train_episodes,
        score=score,
        probes=probes,
        probe_temperature=probe_temperature,
        probe_pool=probe_pool,
        placebos=placebos,
        alpha=alpha,
        episodes_per_game=episodes_per_game,
        eval_games=eval_games,
        arms=resolve_arms(arms),
        split=split,
        chunk=chunk,
        policy=policy,
    )
    experiment = BankExperiment(
        options, cfg, root=root, work=work, out=out, base_model=base_model, echo=typer.echo
    )
    experiment.run(
        plan_only=plan, until=until, rates=rates, effect=effect, seconds_per_episode=episode_seconds
    )
