"""The project's exception types. Readers raise only `RecordError`; budgets raise `QueryBudgetExceeded`."""

from __future__ import annotations


class RecordError(ValueError):
    """A record could not be read. The message names the file and what is wrong with it.

    Parameters
    ----------
    filename : str or None
        The file (or upload name) at fault; prefixed to the message when given.
    reason : str
        What is wrong, in plain words ("header line 2: expected 10 fields, got 3").
    """

    def __init__(self, filename: str | None, reason: str):
        self.filename = filename
        self.reason = reason
        super().__init__(f"{filename}: {reason}" if filename else reason)


class ClassifierError(RuntimeError):
    """A classifier could not be loaded or did not answer as its model card promises."""


class QueryBudgetExceeded(RuntimeError):
    """A `QueryCounter` with a hard budget was asked for more rows than it had left."""
