"""What a process keeps between the stages it runs: the generation engine, environment suites and
the skill retriever.

``skillmaster stage`` runs one stage per process, which opens what it needs and closes it at the end.
The Prefect flow runs every stage in one process and passes one :class:`Resources` to all of them:
the engine starts once and, after a train stage, serves the new weights in place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Resources:
    policy: Any = None
    """The open generation engine (:mod:`skillmaster.agent.engines`), or None."""
    policy_weights: tuple | None = None
    """What ``policy`` serves: (policy base, checkpoint, engine setting)."""
    suites: dict[int, Any] = field(default_factory=dict)
    """Environment suites by their step limit."""
    retriever: Any = None

    def close(self) -> None:
        """End the engine (and its processes); the rest holds no process."""
        policy, self.policy, self.policy_weights = self.policy, None, None
        if policy is not None:
            policy.close()
