"""Bursts within Slack's rate limit: messages, 429s, drain time, caller latency and memory.

Against a fake Slack enforcing 1 message/s with a burst of 3 and ``Retry-After: 1``:

(a) 100 threads each log a payment flow at once: every alert counted, at most 20 messages, at most
    one 429, and no caller slowed (per-call latency against the floor, the same flow through a
    stdlib ``QueueHandler`` with a no-op listener);
(b) a 1000-alert burst of one category: at most 15 messages, drained in under 20 s;
(c) a 10 000-alert burst across the ten built-in categories: peak RSS growth under 30 MB, next to
    the same records through the floor. Each memory figure comes from a fresh subprocess, so
    ``ru_maxrss`` is not inflated by earlier parts.

    python benchmarks/bench_burst.py
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

from _common import (
    Floor,
    Report,
    alerts_counted,
    fmt_ratio,
    make_logger,
    maxrss_mb,
    percentile,
    profile_rows,
    teardown,
    wait_counted,
)

from slack_logging import SlackAlertHandler
from slack_logging._catalog import BUILTIN_CATEGORIES
from slack_logging.testing import FakeSlack

THREADS = 100
FLOW_REPS = 5
COLD_REPS = 3
FLOW_MAX_MESSAGES = 20
FLOW_MAX_429 = 1
ONE_CATEGORY = 1000
ONE_MAX_MESSAGES = 15
ONE_MAX_DRAIN = 20.0
MANY = 10_000
MANY_MAX_MB = 30.0
DRAIN_DEADLINE = 60.0


def slack() -> FakeSlack:
    """Slack's own limit, about one message per second per webhook, with a short burst."""
    return FakeSlack(rate_limit=1.0, burst=3, retry_after=1).start()


def payment_flow(logger: logging.Logger, rep: int) -> tuple[list[float], float]:
    """100 threads, released together: payment_start, then success (80 %) or failure (20 %).

    Returns every call's latency in µs and the monotonic time the barrier opened.
    """
    latencies: list[float] = []
    opened: list[float] = []
    barrier = threading.Barrier(THREADS, action=lambda: opened.append(time.monotonic()))

    def flow(i: int) -> None:
        oid = f"PAY-{rep}-{i:04d}"
        amount = 10_000 + 100 * i
        clock = time.perf_counter_ns
        barrier.wait()
        t0 = clock()
        logger.info(
            "payment start %s",
            oid,
            extra={"alert": "payment_start", "order_id": oid, "amount": amount},
        )
        t1 = clock()
        if i % 5 == 0:
            logger.error(
                "payment failed %s",
                oid,
                extra={
                    "alert": "payment_fail",
                    "order_id": oid,
                    "amount": amount,
                    "reason": "declined",
                },
            )
        else:
            logger.info(
                "payment succeeded %s",
                oid,
                extra={"alert": "payment_success", "order_id": oid, "amount": amount},
            )
        t2 = clock()
        latencies.extend(((t1 - t0) / 1000, (t2 - t1) / 1000))

    threads = [threading.Thread(target=flow, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, opened[0]


def message_log(fake: FakeSlack, since: float) -> list[list[str]]:
    rows = []
    for m in fake.messages:
        meta = m.payload["metadata"]["event_payload"]
        rows.append(
            [
                f"{m.received_at - since:.2f} s",
                str(meta["category"]),
                str(meta["count"]),
                str(m.payload.get("text", ""))[:60],
            ]
        )
    return rows


def first_call(tmp: Path, fake: FakeSlack, n: int) -> tuple[list[float], list[list[str]]]:
    """The first log call on fresh handlers, alone: it starts the listener and sender threads.

    Returns the times in ms, and a profile of one such call (the ``profile`` module: it hooks
    only this thread, where cProfile since 3.12 would mix in the threads being started).
    """
    import profile
    import pstats

    times = []
    rows: list[list[str]] = []
    for k in range(n + 1):
        h = SlackAlertHandler(webhook_url=fake.webhook_url, alerts_dir=tmp / f"first-{k}")
        logger = make_logger(f"burst.first.{k}", h)
        record = {"alert": "payment_start", "order_id": f"F-{k}", "amount": 1}
        try:
            if k < n:
                t0 = time.perf_counter()
                logger.info("payment start %s", f"F-{k}", extra=record)
                times.append((time.perf_counter() - t0) * 1000)
            else:
                prof = profile.Profile()
                prof.runcall(logger.info, "payment start %s", f"F-{k}", extra=record)
                stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
                total = max(v[3] for v in stats.values())
                rows = profile_rows(stats, total, 1, limit=12, by="cumulative")
        finally:
            logger.handlers.clear()
            teardown([h], [])
    return times, rows


def part_a(tmp: Path, report: Report) -> None:
    lat: dict[str, list[float]] = {"floor": [], "warm": [], "cold": []}
    first: dict[str, Any] = {}
    diags = []
    for rep in range(FLOW_REPS):
        floor = Floor()
        logger = make_logger(f"burst.floor.{rep}", floor.handler)
        lat["floor"] += payment_flow(logger, rep)[0]
        floor.drain()
        logger.handlers.clear()
        floor.close()

        for mode in ("warm", "cold"):
            if mode == "cold" and rep >= COLD_REPS:
                continue
            fake = slack()
            h = SlackAlertHandler(
                webhook_url=fake.webhook_url, alerts_dir=tmp / f"flow-{mode}-{rep}"
            )
            logger = make_logger(f"burst.{mode}.{rep}", h)
            try:
                if mode == "warm":
                    # A running service has logged before: the handler's threads are up.
                    logger.info("service started")
                    h.flush(timeout=5)
                calls, opened = payment_flow(logger, rep)
                lat[mode] += calls
                if rep == 0 and mode == "warm":
                    # The full scenario once: wait for every alert to reach the fake Slack.
                    counted = wait_counted(fake, 2 * THREADS, DRAIN_DEADLINE)
                    msgs = fake.messages
                    first = {
                        "counted": alerts_counted(fake),
                        "all_counted": counted,
                        "messages": len(msgs),
                        "rate_limited": fake.rate_limited,
                        "early_requests": len(fake.early_requests),
                        "drain_s": msgs[-1].received_at - opened if msgs else float("nan"),
                        "first_message_s": msgs[0].received_at - opened if msgs else float("nan"),
                        "log": message_log(fake, opened),
                    }
            finally:
                logger.handlers.clear()
                diags.append(teardown([h], [fake]))

    fake = FakeSlack().start()
    try:
        first_ms, first_profile = first_call(tmp, fake, 5)
    finally:
        teardown([], [fake])

    def p(values: list[float], q: float) -> float:
        return percentile(values, q)

    floor_lat = lat["floor"]
    rows = []
    for name, key in (
        ("floor: QueueHandler + no-op listener", "floor"),
        ("ours, handler already in use (a running service)", "warm"),
        ("ours, the burst is the handler's first use (cold start)", "cold"),
    ):
        v = lat[key]
        rows.append(
            [
                name,
                f"{p(v, 50):.1f} µs",
                f"{p(v, 99):.1f} µs",
                f"{max(v):.1f} µs",
                fmt_ratio(p(v, 50) / p(floor_lat, 50)),
                fmt_ratio(p(v, 99) / p(floor_lat, 99)),
                fmt_ratio(max(v) / max(floor_lat)),
                str(len(v)),
            ]
        )
    report.table(
        f"(a) {THREADS} concurrent payment flows: per log call in the callers' threads "
        f"(repetitions pooled: {FLOW_REPS} floor and warm, {COLD_REPS} cold)",
        ["variant", "p50", "p99", "max", "p50 / floor", "p99 / floor", "max / floor", "calls"],
        rows,
    )
    report.table(
        f"(a) {THREADS} concurrent payment flows ({2 * THREADS} alerts): what Slack received",
        ["alerts counted", "messages", "429s", "first message", "drained"],
        [
            [
                f"{first['counted']} / {2 * THREADS}",
                str(first["messages"]),
                str(first["rate_limited"]),
                f"{first['first_message_s']:.2f} s",
                f"{first['drain_s']:.2f} s",
            ]
        ],
    )
    report.table(
        "(a) messages as received (time after the threads were released)",
        ["at", "category", "alerts", "text"],
        first["log"],
    )
    report.table(
        "(a) cold start: the first log call on a fresh handler, one thread, "
        f"median of {len(first_ms)}: {percentile(first_ms, 50):.2f} ms. Profile of one "
        "(caller thread only, profile module), top by cumulative time, share of the call",
        ["function", "calls", "own", "cumulative"],
        first_profile,
    )
    report.target(
        "(a) every alert counted", f"{2 * THREADS}", str(first["counted"]), first["all_counted"]
    )
    report.target(
        "(a) messages",
        f"≤ {FLOW_MAX_MESSAGES}",
        str(first["messages"]),
        first["messages"] <= FLOW_MAX_MESSAGES,
    )
    report.target(
        "(a) 429s", f"≤ {FLOW_MAX_429}", str(first["rate_limited"]), first["rate_limited"] <= 1
    )
    for key, label in (("warm", "handler in use"), ("cold", "cold start")):
        ratio = p(lat[key], 99) / p(floor_lat, 99)
        report.target(
            f"(a) no caller slowed, {label}: p99 per call / floor's",
            "≤ 1.5× (as the caller-cost target)",
            fmt_ratio(ratio),
            ratio <= 1.5,
        )
    report.data["a"] = {
        "scenario": {k: v for k, v in first.items() if k != "log"},
        "messages": first["log"],
        "latency_us": lat,
        "first_call_ms": first_ms,
        "first_call_profile": first_profile,
        "teardown_diagnostics": [line for d in diags for line in d.splitlines()],
    }


def part_b(tmp: Path, report: Report) -> None:
    fake = slack()
    h = SlackAlertHandler(webhook_url=fake.webhook_url, alerts_dir=tmp / "one-category")
    logger = make_logger("burst.one", h)
    try:
        t0 = time.monotonic()
        for i in range(ONE_CATEGORY):
            oid = f"ORD-{i:06d}"
            logger.error(
                "payment failed %s",
                oid,
                extra={"alert": "payment_fail", "order_id": oid, "amount": 15_000 + i},
            )
        emitted = time.monotonic() - t0
        counted = wait_counted(fake, ONE_CATEGORY, DRAIN_DEADLINE)
        msgs = fake.messages
        drain = msgs[-1].received_at - t0 if msgs else float("nan")
        result: dict[str, Any] = {
            "counted": alerts_counted(fake),
            "all_counted": counted,
            "messages": len(msgs),
            "rate_limited": fake.rate_limited,
            "drain_s": drain,
            "emit_loop_s": emitted,
            "log": message_log(fake, t0),
        }
    finally:
        logger.handlers.clear()
        diag = teardown([h], [fake])
    report.table(
        f"(b) {ONE_CATEGORY} alerts of one category (payment_fail, one template, distinct "
        "order ids), logged in a tight loop",
        ["alerts counted", "messages", "429s", "emit loop", "drained"],
        [
            [
                f"{result['counted']} / {ONE_CATEGORY}",
                str(result["messages"]),
                str(result["rate_limited"]),
                f"{emitted:.2f} s",
                f"{drain:.2f} s",
            ]
        ],
    )
    report.table("(b) messages as received", ["at", "category", "alerts", "text"], result["log"])
    report.target("(b) every alert counted", str(ONE_CATEGORY), str(result["counted"]), counted)
    report.target(
        "(b) messages",
        f"≤ {ONE_MAX_MESSAGES}",
        str(result["messages"]),
        result["messages"] <= ONE_MAX_MESSAGES,
    )
    report.target("(b) drained", f"< {ONE_MAX_DRAIN:g} s", f"{drain:.2f} s", drain < ONE_MAX_DRAIN)
    report.data["b"] = {**result, "teardown_diagnostics": diag.splitlines()}


# -- (c) memory, one fresh subprocess per figure ------------------------------------------------


def many_alerts(logger: logging.Logger) -> None:
    cats = tuple(BUILTIN_CATEGORIES)
    for i in range(MANY):
        oid = f"ORD-{i:06d}"
        logger.error(
            "order event %s",
            oid,
            extra={"alert": cats[i % len(cats)], "order_id": oid, "amount": 15_000 + i},
        )


def child(variant: str, trace: bool) -> dict[str, Any]:
    """One memory measurement in this (fresh) process; the result is printed as JSON."""
    out: dict[str, Any] = {"variant": variant, "tracemalloc": trace}
    with tempfile.TemporaryDirectory(prefix="bench-burst-mem-") as tmp:
        fake = slack() if variant == "ours" else None
        h: SlackAlertHandler | None = None
        floor: Floor | None = None
        if fake is not None:
            h = SlackAlertHandler(webhook_url=fake.webhook_url, alerts_dir=tmp)
            logger = make_logger("burst.mem.ours", h)
        else:
            floor = Floor()
            logger = make_logger("burst.mem.floor", floor.handler)
        try:
            # Start the threads and warm every code path, so the figure is the burst's own.
            logger.info("warm up", extra={"alert": "report_success", "order_id": "warm-up"})
            if fake is not None and h is not None:
                h.flush(timeout=5)
                fake.wait_for(1, timeout=5)
                fake.clear()
            gc.collect()
            rss0 = maxrss_mb()
            if trace:
                tracemalloc.start()
            t0 = time.monotonic()
            many_alerts(logger)
            out["emit_loop_s"] = time.monotonic() - t0
            if fake is not None:
                out["all_counted"] = wait_counted(fake, MANY, DRAIN_DEADLINE)
                msgs = fake.messages
                out["drain_s"] = msgs[-1].received_at - t0 if msgs else float("nan")
                out["messages"] = len(msgs)
                out["counted_alerts"] = alerts_counted(fake)
                out["rate_limited"] = fake.rate_limited
            elif floor is not None:
                floor.drain()
                out["drain_s"] = time.monotonic() - t0
            if trace:
                out["tracemalloc_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
                tracemalloc.stop()
            if h is not None:
                out["spilled"], out["dropped"] = h.spilled, h.dropped
            out["maxrss_before_mb"] = rss0
            out["maxrss_after_mb"] = maxrss_mb()
            out["maxrss_growth_mb"] = out["maxrss_after_mb"] - rss0
        finally:
            logger.handlers.clear()
            if h is not None and fake is not None:
                out["teardown"] = teardown([h], [fake]).splitlines()
            if floor is not None:
                floor.close()
    return out


def run_child(variant: str, trace: bool) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", variant]
    if trace:
        cmd.append("--tracemalloc")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def part_c(report: Report) -> None:
    floor = run_child("floor", trace=False)
    ours = run_child("ours", trace=False)
    floor_t = run_child("floor", trace=True)
    ours_t = run_child("ours", trace=True)
    rows = []
    for name, plain, traced in (
        ("floor: QueueHandler + no-op listener", floor, floor_t),
        ("ours", ours, ours_t),
    ):
        rows.append(
            [
                name,
                f"{plain['maxrss_growth_mb']:.1f} MB",
                f"{traced['tracemalloc_peak_mb']:.1f} MB",
                f"{plain['emit_loop_s']:.2f} s",
                f"{plain['drain_s']:.2f} s",
                str(plain.get("messages", "-")),
                f"{plain['counted_alerts']} / {MANY}" if "counted_alerts" in plain else "-",
                str(plain.get("rate_limited", "-")),
            ]
        )
    report.table(
        f"(c) {MANY:,} alerts across the ten built-in categories, logged in a tight loop "
        "(one fresh process per figure)",
        [
            "variant",
            "peak RSS growth",
            "tracemalloc peak",
            "emit loop",
            "drained",
            "messages",
            "alerts counted",
            "429s",
        ],
        rows,
    )
    growth = ours["maxrss_growth_mb"]
    report.target(
        "(c) peak RSS growth, ours",
        f"< {MANY_MAX_MB:g} MB",
        f"{growth:.1f} MB",
        growth < MANY_MAX_MB,
    )
    peak = ours_t["tracemalloc_peak_mb"]
    report.target(
        "(c) tracemalloc peak, ours", f"< {MANY_MAX_MB:g} MB", f"{peak:.1f} MB", peak < MANY_MAX_MB
    )
    report.target(
        "(c) every alert counted",
        str(MANY),
        str(ours["counted_alerts"]),
        ours["counted_alerts"] == MANY,
    )
    report.data["c"] = {
        "floor": floor,
        "ours": ours,
        "floor_traced": floor_t,
        "ours_traced": ours_t,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="abc", help="which parts to run (default: abc)")
    parser.add_argument("--child", choices=("ours", "floor"), help=argparse.SUPPRESS)
    parser.add_argument("--tracemalloc", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.tracemalloc)))
        return 0
    report = Report("burst", "Bursts within Slack's rate limit, and memory")
    with tempfile.TemporaryDirectory(prefix="bench-burst-") as tmp:
        if "a" in args.parts:
            part_a(Path(tmp), report)
        if "b" in args.parts:
            part_b(Path(tmp), report)
    if "c" in args.parts:
        part_c(report)
    report.note(
        "Fake Slack: rate_limit 1 message/s per webhook, burst 3, Retry-After 1 s. Handler: "
        "default settings (rate 1/s, burst 3, dedup_window 60 s, dedup_quiet 10 s, max_digest "
        "1000). Identical alerts (same category and template) after a delivered message are "
        "held and posted as one 'repeated N times' follow-up once none came for dedup_quiet "
        "(10 s): that is by design, and it sets the drain times above."
    )
    report.note(
        "(a) cold start: the handler starts its listener and sender threads lazily, inside the "
        "first emit() (the one-thread figure above, mostly Thread.start waiting for the new "
        "threads). The handler's handle() takes no lock and emit() enqueues before starting, "
        "so while one caller starts the threads the other 99 just enqueue: only that one "
        "caller pays (the max column); p50 and p99 stay at the floor's."
    )
    report.note(
        "Counting: the sum of every message's metadata event_payload.count at the fake Slack, "
        "waited for with FakeSlack.wait_for (no flush(), which would release held duplicates "
        "early). Drain time = arrival of the last message - the first emit() (a: the barrier)."
    )
    report.note(
        "(c) peak RSS growth = ru_maxrss after the burst has drained - ru_maxrss just before it, "
        "in a fresh process per figure (threads started and warmed up first); tracemalloc peak "
        "from a second fresh process with tracemalloc on during the burst and the drain."
    )
    report.finish()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
