"""Errors a user can cause and fix. The CLI prints their message, never a traceback."""


class SeedzooError(Exception):
    """An error whose message says what went wrong and what to do about it."""


class DatasetNotFoundError(SeedzooError):
    """A dataset's files are not on disk."""


class ModelNotFoundError(SeedzooError):
    """A model spec names nothing that can be loaded."""


class CheckpointError(SeedzooError):
    """A weights file is unreadable, in an unknown format, or does not fit the architecture."""
