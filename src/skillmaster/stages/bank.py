"""Stage ``bank-init``: the skill bank iteration 1 starts from (``data/banks/iter_000.json``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from skillmaster.config import EnvConfig
from skillmaster.paths import project_file
from skillmaster.stages import StageContext, register
from skillmaster.stages.contract import StageContract
from skillmaster.stages.views import From, StageView


class BankInitView(StageView):
    seed_bank: Annotated[Path | None, From("skills.seed_bank", convert=project_file)]
    """The seed bank file (absolute: a relative ``skills.seed_bank`` lies under the project root)."""
    env: Annotated[EnvConfig, From("env")]


CONTRACT = StageContract(
    name="bank-init",
    view=BankInitView,
    reads=lambda w: [Path(w.cfg.skills.seed_bank)] if w.cfg.skills.seed_bank else [],
    writes=lambda w: [w.paths.bank(0)],
)


@register(CONTRACT)
def bank_init_stage(ctx: StageContext) -> dict:
    """Write the configured seed bank (``skills.seed_bank``), or an empty one with the env's categories."""
    from skillmaster.skills.bank import empty_bank
    from skillmaster.skills.diff import bank_stats
    from skillmaster.skills.store import load_bank, save_bank

    view = ctx.view
    if view.seed_bank is not None:
        bank = load_bank(view.seed_bank)
    else:
        from skillmaster.envs.registry import make_suite

        bank = empty_bank(make_suite(view.env).categories)
    # written over the previous bank atomically (kept as iter_000.prev.json); never deleted first, so a
    # failed write (a full disk) leaves the previous bank in place
    save_bank(bank, ctx.paths.bank(0))
    return bank_stats(bank)
