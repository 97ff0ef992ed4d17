"""The active OpenTelemetry span's ids at log time, at the cost of a dictionary look-up without it.

:func:`capture` runs on the caller's thread inside the log call, so it does the least possible:
it looks for ``opentelemetry.trace`` in ``sys.modules`` (nothing is ever imported here: a span can
only be active if the application imported OpenTelemetry itself) and keeps the current span's
immutable ``SpanContext``. :func:`trace_fields` checks and formats it later, off the caller's
thread, the way OpenTelemetry writes ids (32 and 16 lower-case hex digits)::

    captured = capture()                    # in the handler, on the caller's thread
    fields.update(trace_fields(captured))   # building the alert: {"trace_id": "0af7…", ...}

No span, OpenTelemetry's invalid span (its API without the SDK) or any error inside OpenTelemetry
gives no fields. Measured in ``benchmarks/bench_traces.py``.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["SPAN_ATTR", "TRACE_MODULE", "capture", "portable", "trace_fields"]

#: Looked up, never imported.
TRACE_MODULE = "opentelemetry.trace"
#: The record attribute the handler keeps the captured span in; the leading ``_`` keeps it out
#: of the alert's fields and the mirror's extras.
SPAN_ATTR = "_slack_logging_span"

_modules = sys.modules


def capture() -> object | None:
    """The current span's context (an immutable ``SpanContext``), or ``None``. Never raises.

    Returned as it is, unchecked and unformatted: :func:`trace_fields` does that later, off the
    caller's thread. Without an active span this is OpenTelemetry's invalid context, which
    :func:`trace_fields` turns into ``{}``.
    """
    trace: Any = _modules.get(TRACE_MODULE)
    if trace is None:
        return None
    try:
        context: object = trace.get_current_span().get_span_context()
    except Exception:
        # A broken or half-initialised tracing setup must never fail the log call.
        return None
    return context


def trace_fields(captured: object) -> dict[str, str]:
    """``{"trace_id": 32 hex, "span_id": 16 hex}`` for what :func:`capture` returned, else ``{}``.

    Accepts anything (a ``SpanContext``, or a ``[trace_id, span_id]`` pair back from JSON) and
    checks it: zero (OpenTelemetry's invalid id), negative or oversized ids give ``{}``.
    """
    try:
        if isinstance(captured, list) and len(captured) == 2:
            trace_id, span_id = captured
        else:
            trace_id = getattr(captured, "trace_id", None)
            span_id = getattr(captured, "span_id", None)
    except Exception:
        return {}
    if not _valid(trace_id, 128) or not _valid(span_id, 64):
        return {}
    return {"trace_id": f"{trace_id:032x}", "span_id": f"{span_id:016x}"}


def portable(captured: object) -> list[int] | None:
    """The captured ids as a JSON-safe ``[trace_id, span_id]`` pair (a spill file keeps it),
    which :func:`trace_fields` accepts back; ``None`` when there are none."""
    ids = trace_fields(captured)
    if not ids:
        return None
    return [int(ids["trace_id"], 16), int(ids["span_id"], 16)]


def _valid(value: object, bits: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < (1 << bits)
