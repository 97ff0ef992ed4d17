"""Tests for slack_logging._traces: span ids with OpenTelemetry, no import without it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import types
from collections.abc import Iterator

import pytest

from slack_logging._traces import TRACE_MODULE, capture, trace_fields

TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
SPAN_ID = 0x00F067AA0BA902B7


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.subprocess
def test_nothing_is_imported_when_the_app_does_not_use_opentelemetry() -> None:
    """Installed but never imported by the app: capture() finds nothing and imports nothing."""
    result = _run(
        """
        import logging, sys
        import slack_logging
        from slack_logging._traces import capture, trace_fields
        assert capture() is None
        assert trace_fields(capture()) == {}
        logging.getLogger("x").error("boom", extra={"alert": "payment_fail"})
        loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
        print(loaded)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.subprocess
def test_works_when_opentelemetry_cannot_be_imported_at_all() -> None:
    """Absent OpenTelemetry (every import of it fails): capture() is None, never an error."""
    result = _run(
        """
        import sys
        from importlib.abc import MetaPathFinder

        class Absent(MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "opentelemetry":
                    raise ImportError(f"No module named {name!r}")
                return None

        sys.meta_path.insert(0, Absent())
        from slack_logging._traces import capture
        print(capture())
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "None"


@pytest.fixture
def tracer() -> Iterator[object]:
    pytest.importorskip("opentelemetry.sdk.trace", reason="needs the otel test extra")
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider()
    yield provider.get_tracer("tests")
    provider.shutdown()


def test_captures_the_active_span_as_opentelemetry_formats_it(tracer: object) -> None:
    """Inside a span: the ids are that span's, 32 and 16 lower-case hex digits."""
    from opentelemetry import trace

    assert isinstance(tracer, trace.Tracer)
    with tracer.start_as_current_span("checkout") as span:
        captured = capture()
        context = span.get_span_context()
    assert captured == context
    assert trace_fields(captured) == {
        "trace_id": trace.format_trace_id(context.trace_id),
        "span_id": trace.format_span_id(context.span_id),
    }


def test_the_innermost_span_is_the_one_captured(tracer: object) -> None:
    from opentelemetry import trace

    assert isinstance(tracer, trace.Tracer)
    with tracer.start_as_current_span("outer") as outer:
        with tracer.start_as_current_span("inner") as inner:
            inner_fields = trace_fields(capture())
        outer_fields = trace_fields(capture())
    assert inner_fields["span_id"] == trace.format_span_id(inner.get_span_context().span_id)
    assert outer_fields["span_id"] == trace.format_span_id(outer.get_span_context().span_id)
    assert inner_fields["trace_id"] == outer_fields["trace_id"]


def test_no_active_span_gives_nothing(tracer: object) -> None:
    """OpenTelemetry imported, no span (or the API's invalid span): no fields."""
    from opentelemetry import trace

    assert trace_fields(capture()) == {}
    with trace.use_span(trace.INVALID_SPAN):
        assert trace_fields(capture()) == {}


def test_a_propagated_remote_span_is_captured(tracer: object) -> None:
    """A span context from an incoming request (not recording here) still names the trace."""
    from opentelemetry import trace

    remote = trace.NonRecordingSpan(
        trace.SpanContext(TRACE_ID, SPAN_ID, is_remote=True, trace_flags=trace.TraceFlags(1))
    )
    with trace.use_span(remote):
        assert trace_fields(capture()) == {
            "trace_id": "0af7651916cd43dd8448eb211c80319c",
            "span_id": "00f067aa0ba902b7",
        }


def test_span_context_follows_threads_and_tasks_like_opentelemetry(tracer: object) -> None:
    """A new thread does not inherit the span (contextvars); an asyncio task does."""
    from opentelemetry import trace

    assert isinstance(tracer, trace.Tracer)
    seen: list[dict[str, str]] = []
    with tracer.start_as_current_span("request") as span:
        worker = threading.Thread(target=lambda: seen.append(trace_fields(capture())))
        worker.start()
        worker.join()

        async def in_task() -> dict[str, str]:
            return trace_fields(capture())

        in_task_fields = asyncio.run(in_task())
    assert seen == [{}]
    assert in_task_fields["span_id"] == trace.format_span_id(span.get_span_context().span_id)


def test_a_broken_tracing_module_never_fails_the_log_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever OpenTelemetry (or an impostor under its name) raises, capture() is None."""
    broken = types.ModuleType(TRACE_MODULE)

    def get_current_span() -> object:
        raise RuntimeError("tracing not initialised")

    broken.get_current_span = get_current_span  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, TRACE_MODULE, broken)
    assert capture() is None
    monkeypatch.setitem(sys.modules, TRACE_MODULE, types.ModuleType(TRACE_MODULE))
    assert capture() is None


def test_an_odd_span_context_gives_no_fields() -> None:
    """A context whose attributes raise or hold non-ints is checked, not trusted."""

    class Raising:
        @property
        def trace_id(self) -> int:
            raise RuntimeError("no")

    odd = types.SimpleNamespace(trace_id="0af7", span_id=SPAN_ID)
    assert trace_fields(Raising()) == {}
    assert trace_fields(odd) == {}


@pytest.mark.parametrize(
    "value",
    [
        None,
        [],
        [TRACE_ID],
        [TRACE_ID, SPAN_ID, 1],
        (TRACE_ID, SPAN_ID),
        [0, SPAN_ID],
        [TRACE_ID, 0],
        [1 << 128, SPAN_ID],
        [TRACE_ID, 1 << 64],
        [-1, SPAN_ID],
        [True, SPAN_ID],
        ["0af7651916cd43dd8448eb211c80319c", SPAN_ID],
        {"trace_id": TRACE_ID, "span_id": SPAN_ID},
    ],
)
def test_trace_fields_refuses_anything_that_is_not_two_valid_ids(value: object) -> None:
    """Only a span context or a [trace_id, span_id] list of in-range, non-zero ints counts."""
    assert trace_fields(value) == {}


def test_trace_fields_pads_to_full_width_and_accepts_a_json_list() -> None:
    """Small ids keep their leading zeros; a list (ids back from JSON) works too."""
    assert trace_fields([1, 2]) == {"trace_id": "0" * 31 + "1", "span_id": "0" * 15 + "2"}
