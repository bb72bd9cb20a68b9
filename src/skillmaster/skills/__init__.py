"""The skill bank and everything pure around it (METHOD.md §2, §3, §5, §6).

- :mod:`.bank`: schema, ``apply_edit``, duplicates, fresh ids; :mod:`.store`: crash-safe load/save;
  :mod:`.diff`: sizes, stats, diff and listings;
- :mod:`.retrieval`: which skills the agent sees and the rendered skill block;
- :mod:`.review`: the review prompt; :mod:`.tools`: tool arguments (pydantic), parsing, status, shaping;
- :mod:`.probes`: probe draw; :mod:`.utility`: counterfactual utility U; :mod:`.commit`: next bank.

Nothing is imported here, so ``skillmaster --help`` (which loads :mod:`.cli`) stays fast.
"""
