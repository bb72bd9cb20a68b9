"""Stage ``bank-init``: the skill bank iteration 1 starts from (``data/banks/iter_000.json``)."""

from __future__ import annotations

from pathlib import Path

from skillmaster.stages import StageContext, register
from skillmaster.stages.contract import StageContract

CONTRACT = StageContract(
    name="bank-init",
    settings=("skills.seed_bank", "env"),
    reads=lambda w: [Path(w.cfg.skills.seed_bank)] if w.cfg.skills.seed_bank else [],
    writes=lambda w: [w.paths.bank(0)],
)


@register(CONTRACT)
def bank_init_stage(ctx: StageContext) -> dict:
    """Write the configured seed bank (``skills.seed_bank``), or an empty one with the env's categories."""
    from skillmaster.skills.bank import empty_bank
    from skillmaster.skills.diff import bank_stats
    from skillmaster.skills.store import load_bank, save_bank

    seed = ctx.cfg.skills.seed_bank
    if seed:
        path = Path(seed) if Path(seed).is_absolute() else ctx.root / seed
        bank = load_bank(path)
    else:
        from skillmaster.envs.registry import make_suite

        bank = empty_bank(make_suite(ctx.cfg.env).categories)
    # written over the previous bank atomically (kept as iter_000.prev.json); never deleted first, so a
    # failed write (a full disk) leaves the previous bank in place
    save_bank(bank, ctx.paths.bank(0))
    return bank_stats(bank)
