"""User-facing error types: the CLI turns these into one line and exit status 2."""


class UserInputError(ValueError):
    """Bad input the user can fix (flag, YAML, data directory, teacher path, ...)."""


class DataNotFoundError(UserInputError):
    """A task or split is missing from the data source."""


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the run cannot continue."""
