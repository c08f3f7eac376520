"""The exceptions cnnshape raises for mistakes a user can fix (importing this costs nothing)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .inspect.report import Report, Shape


class CnnshapeError(Exception):
    """A human sentence saying what went wrong, plus an optional hint saying what to do.

    The CLI prints ``Error: <message>`` and ``Hint: <hint>`` on stderr and exits non-zero;
    library callers get the same text from ``str(err)`` and ``err.hint``.
    """

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint


class WalkError(CnnshapeError):
    """A layer refused the walk's input. Carries what the walk learned before the failure."""

    def __init__(
        self,
        message: str,
        *,
        layer: str | None,
        layer_type: str | None,
        input_shape: Shape | None,
        reason: str,
        partial: Report,
        hint: str | None = None,
    ):
        super().__init__(message, hint)
        self.layer = layer
        self.layer_type = layer_type
        self.input_shape = input_shape
        self.reason = reason
        self.partial = partial

    def with_hint(self, hint: str) -> WalkError:
        """The same failure, with a hint (e.g. the input sizes the model does accept)."""
        return WalkError(
            self.message,
            layer=self.layer,
            layer_type=self.layer_type,
            input_shape=self.input_shape,
            reason=self.reason,
            partial=self.partial,
            hint=hint,
        )
