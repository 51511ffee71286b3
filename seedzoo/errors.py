"""Errors a user can cause and fix. The CLI prints their message, never a traceback."""


class SeedzooError(Exception):
    """An error whose message says what went wrong and what to do about it."""


class DatasetNotFoundError(SeedzooError):
    """A dataset's files are not on disk."""


class ModelNotFoundError(SeedzooError):
    """A model spec names nothing that can be loaded."""


class CheckpointError(SeedzooError):
    """A weights file is unreadable, in an unknown format, or does not fit the architecture."""


def user_message(error: SeedzooError) -> str:
    """What the user reads of ``error``: its message, without the traceback that torch's
    DataLoader puts in front of an error it re-raises from a data-loading worker."""
    text = str(error)
    if "\nOriginal Traceback" not in text:
        return text
    last = text.rstrip().splitlines()[-1]  # "seedzoo.errors.SomeError: <the message>"
    return last.partition(": ")[2] or last
