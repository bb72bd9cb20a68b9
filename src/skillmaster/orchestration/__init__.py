"""How stages run: the plan and dvc.yaml, DVC bookkeeping, Prefect task runners and the flow.

- :mod:`~skillmaster.orchestration.plan`: the stages of a run in order, rendered as ``dvc.yaml``
  from each stage's contract;
- :mod:`~skillmaster.orchestration.dvc`: ``dvc status``/``dvc commit`` for stages a flow runs;
- :mod:`~skillmaster.orchestration.runners`: Prefect task runners (sequential, Dask, Ray) and the
  shard runner they give the ``collect`` stage;
- :mod:`~skillmaster.orchestration.flow`: the Prefect flow (``flows/loop.py`` is its entry point);
- :mod:`~skillmaster.orchestration.deploy`: a scheduled deployment (``flows/deploy.py``);
- :mod:`~skillmaster.orchestration.project`: a scratch git + DVC project (benches, tests).

Stages never import this package: they get their shard runner and resources through their context.
"""
