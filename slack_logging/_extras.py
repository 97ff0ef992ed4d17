"""Extras: what a ``LogRecord`` carries beyond the standard attributes (``extra=`` fields).

One definition for the alert, the mirror and the spill files, so they agree on what a user field is.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

__all__ = ["RESERVED_ATTRS", "extra_names", "extras"]

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


def extras(record: logging.LogRecord) -> dict[Any, Any]:
    """The record's ``extra=`` fields. Names starting with ``_`` are private and skipped, as in
    python-json-logger; a non-str key someone put in ``__dict__`` is kept for the walk to name."""
    return {
        k: v
        for k, v in vars(record).items()
        if k not in RESERVED_ATTRS and not (type(k) is str and k.startswith("_"))
    }


def extra_names(names: Iterable[Any]) -> list[Any]:
    """Which of a record's attribute ``names`` :func:`extras` keeps, in order."""
    return [
        k for k in names if k not in RESERVED_ATTRS and not (type(k) is str and k.startswith("_"))
    ]
