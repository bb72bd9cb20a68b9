"""User-facing errors: each carries one sentence saying what is wrong and how to fix it.

The CLI prints the message of a :class:`SkillMasterError` and exits non-zero, without a traceback.
"""


class SkillMasterError(Exception):
    """Base of every error caused by input, configuration or missing data (not by a bug)."""


class ConfigError(SkillMasterError):
    """A settings file or override is wrong."""


class DataError(SkillMasterError):
    """An input file (games, bank, table, checkpoint) is missing, corrupt or has the wrong schema."""


class ModelError(SkillMasterError):
    """The base model or a checkpoint cannot be found or loaded."""


class EnvFailure(SkillMasterError):
    """Most episodes of a stage ended in an environment error (a full disk, broken games, dead workers)."""
