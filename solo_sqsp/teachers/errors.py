"""Errors raised while reading teacher files (network pickles and our own checkpoints)."""


class TeacherFileError(ValueError):
    """A teacher file is missing, empty, truncated, corrupt or not the kind that was expected.

    The message says what was found and what was expected instead.
    """


class UnsafePickleError(TeacherFileError):
    """A pickle refers to a global that a network pickle has no business with (for example
    ``os.system``); the message names it as ``module.name``. Nothing from the file was run."""
