"""Trace capture: what reading the active OpenTelemetry span's ids adds to one log call.

The log call is the floor of this design (a stdlib ``QueueHandler`` feeding a no-op
``QueueListener``); the variant is the same handler with ``_traces.capture()`` in ``prepare()``,
where the runtime will call it. Both run in three states, interleaved in rounds so a noisy
neighbour hits every variant alike: OpenTelemetry not imported by the application, imported with
no span active, and a recording SDK span active. ``capture()`` alone is timed too.

Needs the ``otel`` extra (``pip install -e '.[otel]'``).

    python benchmarks/bench_traces.py [--rounds 15] [--calls 20000]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import logging.handlers
import sys
import time
from collections.abc import Callable, Iterator

from _common import Floor, Report, fmt_ns, fmt_ratio, make_logger, median

from slack_logging import _traces

CAPTURE_MAX_NS = 1_000
BATCH = 500


class CapturingFront(logging.handlers.QueueHandler):
    """The floor's front handler plus trace capture, as the runtime will do it."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record.otel_span = _traces.capture()
        return super().prepare(record)


def time_calls(call: Callable[[], object], calls: int) -> float:
    """Nanoseconds per call of ``call`` over ``calls`` calls, the collector off."""
    gc.disable()
    try:
        start = time.perf_counter_ns()
        for _ in range(calls):
            call()
        return (time.perf_counter_ns() - start) / calls
    finally:
        gc.enable()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=20_000, help="calls per round and variant")
    args = parser.parse_args(argv)
    report = Report("traces", "Trace capture cost per log call")

    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider()
    tracer = provider.get_tracer("bench")
    otel_trace = sys.modules[_traces.TRACE_MODULE]

    @contextlib.contextmanager
    def state(name: str) -> Iterator[None]:
        if name == "absent":
            # As if the application never imported OpenTelemetry: capture() finds no module.
            del sys.modules[_traces.TRACE_MODULE]
            try:
                yield
            finally:
                sys.modules[_traces.TRACE_MODULE] = otel_trace
        elif name == "no span":
            yield
        else:
            with tracer.start_as_current_span("request"):
                yield

    states = ["absent", "no span", "active span"]
    floor, ours = Floor(), Floor(CapturingFront)
    log_floor = make_logger("traces_floor", floor.handler)
    log_ours = make_logger("traces_capture", ours.handler)
    samples: dict[tuple[str, str], list[float]] = {}
    diffs: dict[str, list[float]] = {}

    def log_floor_call() -> None:
        log_floor.error("x", extra={"alert": "payment_fail"})

    def log_ours_call() -> None:
        log_ours.error("x", extra={"alert": "payment_fail"})

    try:
        with state("active span"):
            assert _traces.capture() is not None
            assert trace.get_current_span().is_recording()
        for _ in range(args.rounds):
            for name in states:
                with state(name):
                    samples.setdefault((name, "capture()"), []).append(
                        time_calls(_traces.capture, args.calls)
                    )
                    # Floor and floor + capture in adjacent small batches: their difference is
                    # what capture adds, with the machine's drift mostly cancelled.
                    for _ in range(args.calls // BATCH):
                        base = time_calls(log_floor_call, BATCH)
                        with_capture = time_calls(log_ours_call, BATCH)
                        samples.setdefault((name, "floor"), []).append(base)
                        samples.setdefault((name, "floor + capture"), []).append(with_capture)
                        diffs.setdefault(name, []).append(with_capture - base)
                    floor.drain()
                    ours.drain()
    finally:
        floor.close()
        ours.close()
        provider.shutdown()

    rows = []
    added: dict[str, float] = {}
    for name in states:
        base = median(samples[(name, "floor")])
        with_capture = median(samples[(name, "floor + capture")])
        added[name] = median(diffs[name])
        rows.append(
            [
                name,
                fmt_ns(median(samples[(name, "capture()")])),
                fmt_ns(base),
                fmt_ns(with_capture),
                fmt_ns(added[name]),
                fmt_ratio(with_capture / base),
            ]
        )
    report.table(
        f"median of {args.rounds} rounds × {args.calls:,} calls; added = median of paired batches",
        ["OpenTelemetry", "capture() alone", "floor log call", "+ capture", "added", "ratio"],
        rows,
    )
    worst = max(added.values())
    report.target(
        "capture adds to the log call (worst state)",
        f"≤ {fmt_ns(CAPTURE_MAX_NS)}",
        fmt_ns(worst),
        worst <= CAPTURE_MAX_NS,
    )
    report.note(
        "'absent' removes opentelemetry.trace from sys.modules for the round, which is what "
        "capture() sees when the application never imported OpenTelemetry."
    )
    report.data = {
        "ns": {f"{s} | {k}": median(v) for (s, k), v in samples.items()},
        "added_ns": added,
        "python": sys.version.split()[0],
    }
    result = report.finish()
    return 0 if all(t["met"] for t in result["targets"]) else 1


if __name__ == "__main__":
    sys.exit(main())
