"""Listener throughput: records per second through the mirror and the outbox, and how long an
alert waits between ``emit()`` and being durable.

Ours against the naive way to mirror JSON lines, in the same run: a stdlib ``QueueHandler`` +
``QueueListener`` feeding a ``logging.FileHandler`` with python-json-logger's ``JsonFormatter``.

    python benchmarks/bench_throughput.py [--untagged 50000] [--alerts 20000]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import logging.handlers
import queue
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import Report, fmt_s, make_logger, median, percentile, teardown
from pythonjsonlogger.json import JsonFormatter

from slack_logging import SlackAlertHandler
from slack_logging._catalog import BUILTIN_CATEGORIES
from slack_logging.testing import FakeSlack

#: Untagged records through the mirror, as a multiple of the naive baseline in the same run.
UNTAGGED_MIN_RATIO = 1.0
ALERTS_MIN_RATE = 25_000
LATENCY_ALERTS = 200
LATENCY_GAP = 0.02
CATEGORIES = tuple(BUILTIN_CATEGORIES)


def log_untagged(logger: logging.Logger, n: int) -> None:
    for i in range(n):
        logger.info("checkout %s", f"ORD-{i:08d}", extra={"order_id": f"ORD-{i:08d}"})


def log_alerts(logger: logging.Logger, n: int) -> None:
    """Alerts across the built-in categories, distinct order ids."""
    cats = CATEGORIES
    for i in range(n):
        oid = f"ORD-{i:08d}"
        logger.error(
            "payment event %s",
            oid,
            extra={"alert": cats[i % len(cats)], "order_id": oid, "amount": 15000 + i},
        )


class CpuMeter:
    """Wraps a listener-side method and sums the calling thread's CPU time spent in it."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.ns = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        t0 = time.thread_time_ns()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.ns += time.thread_time_ns() - t0


class StoredCounter:
    """Wraps ``Outbox.add``: counts alerts committed, and when each order id was committed."""

    def __init__(self, fn: Callable[..., int], expected: int) -> None:
        self.fn = fn
        self.expected = expected
        self.stored = 0
        self.done = threading.Event()
        self.last_at = 0.0
        self.at: dict[str, float] = {}

    def __call__(self, items: list[Any]) -> int:
        seq = self.fn(items)
        now = time.perf_counter()
        for alert, _dest in items:
            self.at.setdefault(str(alert.fields.get("order_id")), now)
        self.stored += len(items)
        self.last_at = now
        if self.stored >= self.expected:
            self.done.set()
        return seq

    def expect(self, n: int) -> None:
        self.expected = n
        if self.stored >= n:
            self.done.set()


def quietly(
    run: Callable[..., tuple[dict[str, float], str]], *args: Any
) -> tuple[dict[str, float], str]:
    """Run with stderr captured: a full queue is reported there, and expected here."""
    out = io.StringIO()
    with contextlib.redirect_stderr(out):
        result, diag = run(*args)
    return result, out.getvalue() + diag


def run_ours_untagged(
    directory: Path, n: int, queue_size: int | None
) -> tuple[dict[str, float], str]:
    options: dict[str, Any] = {} if queue_size is None else {"queue_size": queue_size}
    h = SlackAlertHandler(enabled=False, alerts_dir=directory, **options)
    meter = CpuMeter(h.ingest.store)
    h.ingest.store = meter  # type: ignore[method-assign]
    logger = make_logger(f"tp.ours.untagged.{queue_size}", h)
    try:
        t0 = time.perf_counter()
        log_untagged(logger, n)
        t_emit = time.perf_counter()
        drained = h.flush(timeout=120)
        t1 = time.perf_counter()
        ingested = h.ingest.stats.records
        lines = sum(1 for _ in (directory / "alerts.jsonl").open(encoding="utf-8"))
        result = {
            "elapsed_s": t1 - t0,
            "emit_s": t_emit - t0,
            "records_per_s": ingested / (t1 - t0),
            "listener_cpu_s": meter.ns / 1e9,
            "listener_cpu_rate": ingested / (meter.ns / 1e9) if meter.ns else float("nan"),
            "ingested": ingested,
            "dropped": h.dropped,
            "drained": float(drained),
            "mirror_lines_current_file": lines,
        }
    finally:
        logger.handlers.clear()
        diag = teardown([h], [])
    return result, diag


def run_ours_alerts(
    directory: Path, n: int, queue_size: int | None
) -> tuple[dict[str, float], str]:
    fake = FakeSlack().start()
    fake.hang_next(60, count=10)
    options: dict[str, Any] = {} if queue_size is None else {"queue_size": queue_size}
    h = SlackAlertHandler(
        webhook_url=fake.webhook_url, alerts_dir=directory, read_timeout=120, **options
    )
    assert h.outbox is not None
    stored = StoredCounter(h.outbox.add, n)
    h.outbox.add = stored  # type: ignore[method-assign,assignment]
    meter = CpuMeter(h.ingest.store)
    h.ingest.store = meter  # type: ignore[method-assign]
    logger = make_logger(f"tp.ours.alerts.{queue_size}", h)
    try:
        t0 = time.perf_counter()
        log_alerts(logger, n)
        t_emit = time.perf_counter()
        # Alerts spilled on a full queue are on disk but not in the outbox: expect the rest.
        stored.expect(n - h.spilled - h.dropped)
        stored.done.wait(120)
        elapsed = stored.last_at - t0
        result = {
            "elapsed_s": elapsed,
            "emit_s": t_emit - t0,
            "alerts_per_s": stored.stored / elapsed,
            "listener_cpu_s": meter.ns / 1e9,
            "listener_cpu_rate": stored.stored / (meter.ns / 1e9) if meter.ns else float("nan"),
            "stored": stored.stored,
            "spilled": h.spilled,
            "dropped": h.dropped,
            "outbox_rows": sum(h.outbox.counts().values()),
            "held_requests": sum(not r.answered for r in fake.requests),
        }
    finally:
        logger.handlers.clear()
        diag = teardown([h], [fake])
    return result, diag


def run_baseline(
    path: Path, n: int, emit: Callable[[logging.Logger, int], None]
) -> dict[str, float]:
    q: queue.Queue[Any] = queue.Queue()
    file_handler = logging.FileHandler(path, encoding="utf-8")
    file_handler.setFormatter(JsonFormatter())
    listener = logging.handlers.QueueListener(q, file_handler)
    listener.start()
    front = logging.handlers.QueueHandler(q)
    logger = make_logger(f"tp.baseline.{path.stem}", front)
    try:
        t0 = time.perf_counter()
        emit(logger, n)
        t_emit = time.perf_counter()
        q.join()
        t1 = time.perf_counter()
    finally:
        logger.handlers.clear()
        listener.stop()
        file_handler.close()
    return {"elapsed_s": t1 - t0, "emit_s": t_emit - t0, "records_per_s": n / (t1 - t0)}


def run_latency(directory: Path) -> tuple[list[float], str]:
    """Alerts one at a time, 20 ms apart: emit() to committed in the outbox, per alert."""
    fake = FakeSlack().start()
    h = SlackAlertHandler(webhook_url=fake.webhook_url, alerts_dir=directory)
    assert h.outbox is not None
    stored = StoredCounter(h.outbox.add, LATENCY_ALERTS + 1)
    h.outbox.add = stored  # type: ignore[method-assign,assignment]
    logger = make_logger("tp.latency", h)
    emitted: dict[str, float] = {}
    try:
        logger.info("warm up", extra={"alert": "report_success", "order_id": "warm-up"})
        h.flush(timeout=5)
        for i in range(LATENCY_ALERTS):
            oid = f"LAT-{i:05d}"
            emitted[oid] = time.perf_counter()
            logger.error(
                "payment failed %s",
                oid,
                extra={"alert": "payment_fail", "order_id": oid, "amount": 15000},
            )
            time.sleep(LATENCY_GAP)
        stored.done.wait(10)
    finally:
        logger.handlers.clear()
        diag = teardown([h], [fake])
    return [stored.at[oid] - t for oid, t in emitted.items() if oid in stored.at], diag


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--untagged", type=int, default=50_000)
    parser.add_argument("--alerts", type=int, default=20_000)
    parser.add_argument("--reps", type=int, default=3, help="repetitions; the median is shown")
    args = parser.parse_args(argv)
    report = Report("throughput", "Listener throughput and emit→durable latency")
    n_u, n_a = args.untagged, args.alerts

    diags: list[str] = []
    runs: dict[str, list[dict[str, float]]] = {}

    def keep(name: str, result: tuple[dict[str, float], str] | dict[str, float]) -> None:
        if isinstance(result, tuple):
            result, diag = result
            diags.append(diag)
        runs.setdefault(name, []).append(result)

    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp_name:
        tmp = Path(tmp_name)
        # Interleaved repetitions: a noisy neighbour on a shared machine hits every variant.
        for i in range(args.reps):
            keep("base_u", run_baseline(tmp / f"base-untagged-{i}.jsonl", n_u, log_untagged))
            keep("ours_u", run_ours_untagged(tmp / f"untagged-{i}", n_u, 100_000))
            keep("ours_u_default", quietly(run_ours_untagged, tmp / f"untagged-d-{i}", n_u, None))
            keep("base_a", run_baseline(tmp / f"base-alerts-{i}.jsonl", n_a, log_alerts))
            keep("ours_a", run_ours_alerts(tmp / f"alerts-{i}", n_a, 100_000))
            keep("ours_a_default", quietly(run_ours_alerts, tmp / f"alerts-d-{i}", n_a, None))
        latencies, d = run_latency(tmp / "latency")
        diags.append(d)

    def median_run(name: str) -> dict[str, float]:
        """The repetition with the median throughput, so each row is one consistent run."""
        key = "alerts_per_s" if name.startswith("ours_a") else "records_per_s"
        ordered = sorted(runs[name], key=lambda r: r[key])
        return ordered[(len(ordered) - 1) // 2]

    base_u, ours_u, ours_u_default = (median_run(k) for k in ("base_u", "ours_u", "ours_u_default"))
    base_a, ours_a, ours_a_default = (median_run(k) for k in ("base_a", "ours_a", "ours_a_default"))

    def rate(x: float) -> str:
        return f"{x:,.0f}/s"

    rows = [
        [
            f"untagged × {n_u:,}",
            "baseline: QueueListener → FileHandler + JsonFormatter",
            fmt_s(base_u["emit_s"]),
            fmt_s(base_u["elapsed_s"]),
            rate(base_u["records_per_s"]),
            "-",
            "1.00×",
            "0",
        ],
        [
            f"untagged × {n_u:,}",
            "ours (Slack off, mirror on), queue_size 100 000",
            fmt_s(ours_u["emit_s"]),
            fmt_s(ours_u["elapsed_s"]),
            rate(ours_u["records_per_s"]),
            rate(ours_u["listener_cpu_rate"]),
            f"{ours_u['records_per_s'] / base_u['records_per_s']:.2f}×",
            f"{ours_u['dropped']:,.0f}",
        ],
        [
            f"untagged × {n_u:,}",
            "ours (Slack off, mirror on), queue_size 10 000 (default)",
            fmt_s(ours_u_default["emit_s"]),
            fmt_s(ours_u_default["elapsed_s"]),
            rate(ours_u_default["records_per_s"]),
            rate(ours_u_default["listener_cpu_rate"]),
            f"{ours_u_default['records_per_s'] / base_u['records_per_s']:.2f}×",
            f"{ours_u_default['dropped']:,.0f} dropped",
        ],
        [
            f"alerts × {n_a:,}",
            "baseline: QueueListener → FileHandler + JsonFormatter",
            fmt_s(base_a["emit_s"]),
            fmt_s(base_a["elapsed_s"]),
            rate(base_a["records_per_s"]),
            "-",
            "1.00×",
            "0",
        ],
        [
            f"alerts × {n_a:,}",
            "ours (mirror + outbox, Slack hanging), queue_size 100 000",
            fmt_s(ours_a["emit_s"]),
            fmt_s(ours_a["elapsed_s"]),
            rate(ours_a["alerts_per_s"]),
            rate(ours_a["listener_cpu_rate"]),
            f"{ours_a['alerts_per_s'] / base_a['records_per_s']:.2f}×",
            f"{ours_a['spilled']:,.0f} spilled",
        ],
        [
            f"alerts × {n_a:,}",
            "ours (mirror + outbox, Slack hanging), queue_size 10 000 (default)",
            fmt_s(ours_a_default["emit_s"]),
            fmt_s(ours_a_default["elapsed_s"]),
            rate(ours_a_default["alerts_per_s"]),
            rate(ours_a_default["listener_cpu_rate"]),
            f"{ours_a_default['alerts_per_s'] / base_a['records_per_s']:.2f}×",
            f"{ours_a_default['spilled']:,.0f} spilled",
        ],
    ]
    report.table(
        "Records logged in a tight loop, first emit() until all are written (untagged: in the "
        "mirror; ours' alerts: committed in the outbox)",
        [
            "records",
            "variant",
            "emit loop",
            "until durable",
            "throughput",
            "listener CPU-bound rate",
            "ours / baseline",
            "overflow",
        ],
        rows,
    )
    lat_ms = [x * 1000 for x in latencies]
    report.table(
        f"emit() → committed in the outbox, {LATENCY_ALERTS} alerts logged "
        f"{LATENCY_GAP * 1000:.0f} ms apart (Slack answering, default settings)",
        ["alerts", "p50", "p90", "p99", "max"],
        [
            [
                str(len(lat_ms)),
                f"{median(lat_ms):.2f} ms",
                f"{percentile(lat_ms, 90):.2f} ms",
                f"{percentile(lat_ms, 99):.2f} ms",
                f"{max(lat_ms):.2f} ms",
            ]
        ],
    )
    untagged_ratio = ours_u["records_per_s"] / base_u["records_per_s"]
    report.target(
        "untagged records/s through the mirror / naive baseline (queue_size 100 000)",
        f"≥ {UNTAGGED_MIN_RATIO:g}×",
        f"{untagged_ratio:.2f}× ({rate(ours_u['records_per_s'])})",
        untagged_ratio >= UNTAGGED_MIN_RATIO,
    )
    report.target(
        "alerts/s made durable in the outbox (queue_size 100 000)",
        f"≥ {ALERTS_MIN_RATE:,}/s",
        rate(ours_a["alerts_per_s"]),
        ours_a["alerts_per_s"] >= ALERTS_MIN_RATE,
    )
    report.note(
        f"Each row is the median of {args.reps} interleaved repetitions by throughput (every "
        "run is in throughput.json)."
    )
    report.note(
        "Throughput counts from the first emit() (the caller's loop runs concurrently with the "
        "listener and shares the GIL) until the last record is written: untagged = "
        "handler.flush() returned (Slack disabled, mirror on); alerts = Outbox.add (wrapped by "
        "the benchmark) committed the last one, with the fake Slack holding the sender's first "
        "request for 60 s so delivery does not compete. 'listener CPU-bound rate' = records / "
        "CPU time of the listener thread inside Ingest.store (time.thread_time), i.e. the "
        "ceiling if the listener had a core to itself."
    )
    report.note(
        "The baseline's FileHandler writes and flushes one line per record; the baseline for "
        "alerts writes the same records as JSON lines only (no outbox, no alert building, no "
        "redaction), so it does less work than ours by design."
    )
    report.note(
        "The targets are read on queue_size 100 000, where nothing overflows; the default-queue "
        "rows show what a tight loop of this size does to a 10 000-record queue (their "
        "throughput counts only the records that went through the queue)."
    )
    if ours_a_default["spilled"] or ours_u_default["dropped"]:
        report.note(
            f"Default queue_size (10 000) in a tight loop of {n_u:,} untagged / {n_a:,} alerts: "
            f"{ours_u_default['dropped']:,.0f} untagged records dropped from the mirror; "
            f"{ours_a_default['spilled']:,.0f} alerts overflowed to spill files (written by the "
            "overflow writer thread, not the caller) and are moved into the outbox by the sender "
            "thread soon after; the mirror has one gap line per run of dropped records. The "
            f"outbox held {ours_a_default['outbox_rows']:,.0f} of {n_a:,} alerts when the "
            "queued ones were committed."
        )
    report.data.update(
        runs=runs,
        emit_to_durable_ms=lat_ms,
        teardown_diagnostics=[line for d in diags for line in d.splitlines()],
    )
    report.finish()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
