"""Extras: what a ``LogRecord`` carries beyond the standard attributes (``extra=`` fields).

One definition for the alert, the mirror and the spill files, so they agree on what a user field is.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["RESERVED_ATTRS", "extras"]

#: Attributes every LogRecord has; anything else on a record came from ``extra=``.
RESERVED_ATTRS = frozenset(
    {
        *vars(logging.LogRecord("", 0, "", 0, "", (), None)),
        "message",
        "asctime",
        "taskName",
        # ours: set by the tag or by the handler, never shown as a user field
        "alert",
        "alert_id",
    }
)


#: The extra names per record shape (its attribute names, in order). Records from one call site
#: share a shape: the names are picked out once, not per record. Cleared when full.
_SHAPES: dict[tuple[Any, ...], tuple[Any, ...]] = {}
_MAX_SHAPES = 1024


def extras(record: logging.LogRecord) -> dict[Any, Any]:
    """The record's ``extra=`` fields. Names starting with ``_`` are private and skipped, as in
    python-json-logger; a non-str key someone put in ``__dict__`` is kept for the walk to name."""
    attrs = vars(record)
    shape = tuple(attrs)
    names = _SHAPES.get(shape)
    if names is None:
        names = tuple(
            k
            for k in shape
            if k not in RESERVED_ATTRS and not (type(k) is str and k.startswith("_"))
        )
        if len(_SHAPES) >= _MAX_SHAPES:
            _SHAPES.clear()
        _SHAPES[shape] = names
    if not names:
        return {}
    try:
        return {k: attrs[k] for k in names}
    except KeyError:  # a key whose __eq__ matched another shape: pick them out here
        return {
            k: v
            for k, v in attrs.items()
            if k not in RESERVED_ATTRS and not (type(k) is str and k.startswith("_"))
        }
