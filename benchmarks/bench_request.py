"""Request-level cost: how many requests per second a CPU-busy service keeps with our handler.

N worker threads each serve requests that do pure-Python CPU work (holding the GIL, as a
template render or JSON (de)serialisation does) and log 10 untagged records and 2 alerts. The
same load runs with no logging at all, with the floor of this design (a stdlib ``QueueHandler``
feeding a ``QueueListener`` whose handler does nothing) and with ours (mirror on, alerts made
durable and delivered to a loopback fake Slack), interleaved in rounds so a noisy neighbour hits
every variant alike. Our listener and sender threads compete with the workers for the GIL: this
is the cost a service owner pays, which the per-call benchmark cannot show.

    python benchmarks/bench_request.py [--rounds 5] [--requests 600] [--workers 4] [--work-us 500]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from _common import Floor, Report, fmt_ratio, listener_idle, make_logger, median, teardown

from slack_logging import SlackAlertHandler
from slack_logging.testing import FakeSlack

TARGET_RATIO = 0.9
UNTAGGED_PER_REQUEST = 10
ALERTS_PER_REQUEST = 2


def spin(iterations: int) -> int:
    """Pure-Python work that holds the GIL, like a template render."""
    total = 0
    for i in range(iterations):
        total += i * i % 7
    return total


def calibrate(work_us: float) -> int:
    """Iterations of :func:`spin` that take about ``work_us`` microseconds on this machine."""
    n = 10_000
    while True:
        t0 = time.perf_counter()
        spin(n)
        took = time.perf_counter() - t0
        if took > 0.05:
            return max(1, int(n * work_us / 1e6 / took))
        n *= 2


def serve(
    logger: logging.Logger | None,
    requests: int,
    workers: int,
    iterations: int,
    drain: Callable[[], object],
) -> float:
    """Run ``requests`` requests on ``workers`` threads; return requests per second, counting
    the time until the background side has taken every record (``drain``): a listener that falls
    behind would otherwise look free while its queue fills, and overflow under sustained load."""
    per_worker = requests // workers
    start = threading.Barrier(workers + 1)

    def worker(w: int) -> None:
        start.wait()
        for r in range(per_worker):
            spin(iterations)
            if logger is None:
                continue
            oid = f"ORD-{w}-{r}"
            for i in range(UNTAGGED_PER_REQUEST):
                logger.info("step %d of order %s", i, oid)
            logger.info("결제 시작", extra={"alert": "payment_start", "order_id": oid})
            logger.error(
                "카드 한도 초과",
                extra={"alert": "payment_fail", "order_id": oid, "amount": 15000},
            )

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    drain()
    return per_worker * workers / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=600, help="per round and variant")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--work-us", type=float, default=500.0, help="CPU work per request")
    args = parser.parse_args(argv)

    report = Report("request", "Requests per second of a CPU-busy service, by logging set-up")
    iterations = calibrate(args.work_us)
    rates: dict[str, list[float]] = {"none": [], "floor": [], "ours": []}

    with tempfile.TemporaryDirectory() as tmp, FakeSlack() as slack:
        floor = Floor()
        ours = SlackAlertHandler(
            webhook_url=slack.webhook_url, alerts_dir=Path(tmp) / "alerts", level=logging.DEBUG
        )
        variants: dict[str, tuple[logging.Logger | None, Callable[[], object]]] = {
            "none": (None, lambda: None),
            "floor": (make_logger("request.floor", floor.handler), floor.drain),
            "ours": (make_logger("request.ours", ours), lambda: listener_idle(ours)),
        }
        logger, drain = variants["ours"]
        serve(logger, args.requests // 4, args.workers, iterations, drain)  # warm-up
        for _ in range(args.rounds):
            for name, (logger, drain) in variants.items():
                rates[name].append(serve(logger, args.requests, args.workers, iterations, drain))
                # Deliveries go on between rounds (paced at 1/s): start each round without them.
                ours.flush(30)
        dropped = ours.stats()["dropped"] if hasattr(ours, "stats") else "n/a"
        report.note(f"records our handler dropped (queue full): {dropped}")
        floor.close()
        report.note(teardown([ours], [slack]).strip() or "teardown quiet")

    none, flo, our = (median(rates[k]) for k in ("none", "floor", "ours"))
    ratio = our / flo
    report.table(
        f"{args.workers} worker threads, {args.work_us:.0f} µs of CPU work and "
        f"{UNTAGGED_PER_REQUEST} untagged records + {ALERTS_PER_REQUEST} alerts per request; "
        f"median of {args.rounds} rounds of {args.requests} requests",
        ["variant", "requests/s", "vs floor", "vs no logging"],
        [
            ["no logging", f"{none:,.0f}", fmt_ratio(none / flo), "1.00×"],
            [
                "floor: QueueHandler -> do-nothing listener",
                f"{flo:,.0f}",
                "1.00×",
                fmt_ratio(flo / none),
            ],
            [
                "ours: SlackAlertHandler, mirror on, Slack answering",
                f"{our:,.0f}",
                fmt_ratio(ratio),
                fmt_ratio(our / none),
            ],
        ],
    )
    report.target(
        "ours / floor requests per second",
        f"≥ {TARGET_RATIO}×",
        fmt_ratio(ratio),
        ratio >= TARGET_RATIO,
    )
    report.data = {"rates": rates, "iterations": iterations}
    report.finish()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
