"""One exception type for every user-facing error: the CLI prints its message on one line."""
from __future__ import annotations


class EznasError(Exception):
    """A problem with the user's input, data or environment, explained in one line."""
