"""Training: DualAdv-GRPO (METHOD.md §7) and the SFT stage (METHOD.md §8) share one loop.

- :mod:`skillmaster.train.grpo`: :func:`~skillmaster.train.grpo.train_iteration`, one iteration's
  update from its tables (the ``train`` stage).
- :mod:`skillmaster.train.trainer`: :func:`~skillmaster.train.trainer.train_on_samples`, the loop
  (loss by name: ``grpo``, ``sft``); the ``sft`` stage calls it with SFT samples.
- :mod:`skillmaster.train.settings`: :class:`~skillmaster.train.settings.TrainSettings`, from
  ``train.*`` or ``sft.*``.
- :mod:`skillmaster.train.run`: the live run (policy, reference, optimizer, schedule) and one
  optimizer step over micro-batches.
- :mod:`skillmaster.train.resume`: step checkpoints under the stage's state folder, and resuming.
- :mod:`skillmaster.train.policy`: the trainable policy, its reference, the response forward.
- :mod:`skillmaster.train.samples`: tables → samples → length-grouped micro-batches.
- :mod:`skillmaster.train.checkpoint`: the checkpoint folder format, written atomically.

Imports are lazy so that ``import skillmaster.train`` stays cheap.
"""
