"""The promise every reader keeps: a malformed input raises `RecordError` naming the file, nothing else.

Readers raise `RecordError` themselves for what they check; the libraries under them (wfdb, pyedflib,
pydicom, numpy, the XML and JSON parsers) raise whatever they like on inputs nobody checked for. `guarded`
turns those into a `RecordError` that still names the file and the format it was being read as.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Mapping, TypeVar

from ecglens.errors import RecordError
from ecglens.formats._source import display_name

F = TypeVar("F", bound=Callable[..., Any])

_MAX_DETAIL = 300


def describe(exc: BaseException) -> str:
    """A short one-line account of a library exception (its message, else its type)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, MemoryError):
        text = "not enough memory to decode it"
    return text if len(text) <= _MAX_DETAIL else text[:_MAX_DETAIL] + "..."


def guarded(fmt: str) -> Callable[[F], F]:
    """Decorate a reader ``read_x(source, filename=None, ...)`` so that only `RecordError` escapes it."""

    def decorate(reader: F) -> F:
        @functools.wraps(reader)
        def wrapper(source: Any = None, filename: str | None = None, *args: Any, **kwargs: Any) -> Any:
            try:
                return reader(source, filename, *args, **kwargs)
            except RecordError:
                raise
            except Exception as exc:  # noqa: BLE001 - the boundary: library errors become RecordError
                name = "<upload>" if isinstance(source, Mapping) and not filename else \
                    display_name(source, filename)
                raise RecordError(name, f"not a readable {fmt} file: {describe(exc)}") from exc

        return wrapper  # type: ignore[return-value]

    return decorate
