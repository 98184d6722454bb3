"""The one error the data package raises for anything wrong with data settings or files."""


class DataConfigError(ValueError):
    """A ``data.*`` or ``augmentations`` setting, or the files it points at, cannot be used.

    The message names the key or path that was looked at, what was expected there, and how to
    fix it (the download command, the key to set).
    """
