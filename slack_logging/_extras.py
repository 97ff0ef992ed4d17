"""Extras: what a ``LogRecord`` carries beyond the standard attributes (``extra=`` fields).

One definition for the alert, the mirror and the spill files, so they agree on what a user field is.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

__all__ = ["MAX_SHAPES", "RESERVED_ATTRS", "extra_names", "extras", "extras_of"]

#: Attributes every LogRecord has; anything else on a record came from ``extra=``.
RESERVED_ATTRS = frozenset(
    {
        *vars(logging.LogRecord("", 0, "", 0, "", (), None)),
        "message",
        "asctime",
        "taskName",
        # uvicorn's copy of the message with ANSI colours: the message again, in escapes
        "color_message",
        # ours: set by the tag or by the handler, never shown as a user field
        "alert",
        "alert_id",
    }
)


#: The extra names per record shape (its attribute names, in order). Records from one call site
#: share a shape: the names are picked out once, not per record. Cleared when full.
_SHAPES: dict[tuple[Any, ...], tuple[Any, ...]] = {}
MAX_SHAPES = 1024


def extras(record: logging.LogRecord) -> dict[Any, Any]:
    """The record's ``extra=`` fields. Names starting with ``_`` are private and skipped, as in
    python-json-logger; a non-str key someone put in ``__dict__`` is kept for the walk to name."""
    return extras_of(vars(record))


def extras_of(attrs: dict[Any, Any]) -> dict[Any, Any]:
    """:func:`extras` of a record's attribute dict."""
    shape = tuple(attrs)
    names = _SHAPES.get(shape)
    if names is None:
        names = tuple(extra_names(shape))
        # Every name that is not a plain str is an extra: only all-str shapes are cached, so
        # keys that are merely equal (1 and True, a str subclass) never share an entry.
        if all(type(name) is str for name in names):
            if len(_SHAPES) >= MAX_SHAPES:
                _SHAPES.clear()
            _SHAPES[shape] = names
    return {name: attrs[name] for name in names} if names else {}


def extra_names(names: Iterable[Any]) -> list[Any]:
    """Which of a record's attribute ``names`` :func:`extras` keeps, in order."""
    return [
        k for k in names if k not in RESERVED_ATTRS and not (type(k) is str and k.startswith("_"))
    ]
