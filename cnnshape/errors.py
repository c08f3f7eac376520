"""The one exception type cnnshape raises for mistakes a user can fix."""

from __future__ import annotations


class CnnshapeError(Exception):
    """A human sentence saying what went wrong, plus an optional hint saying what to do.

    The CLI prints ``Error: <message>`` and ``Hint: <hint>`` on stderr and exits non-zero;
    library callers get the same text from ``str(err)`` and ``err.hint``.
    """

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
