"""The cost Redis coordination adds per message sent, against local coordination in the same run.

Two handlers post to one fake Slack: one coordinates locally (the alerts directory), one through a
redis-server this script starts on a free loopback port. Alerts go one at a time, alternating
between the two, each waiting until the fake received it (emit → Slack latency). The sender's
coordination hooks are wrapped with timers, so the time spent in them and the Redis round trips
(``RedisCoordination.stats["calls"]``) are counted per message too.

    python benchmarks/bench_redis.py [--alerts 250]

Without redis-server or redis-py it prints why, records the run as skipped and exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from _common import Report, make_logger, median, percentile, teardown

from slack_logging import SlackAlertHandler
from slack_logging.testing import FakeSlack

# Every hook the sender calls on its coordinator around a message; threads are not used here
# (webhook), so thread_ts/remember_thread stay at zero calls, but a change that adds them shows.
HOOKS = (
    "sync",
    "admit",
    "delivered",
    "rate_limited",
    "hold",
    "settle",
    "thread_ts",
    "remember_thread",
)
WARMUP = 5  # per variant, not counted: connection set-up, script loading, first SQLite pages
GAP = 0.005  # idle time between alerts, so each one starts from an idle sender


def missing() -> str | None:
    """Why this benchmark cannot run here, or None."""
    if shutil.which("redis-server") is None:
        return "redis-server is not installed (apt-get install redis-server)"
    try:
        import redis  # noqa: F401
    except ImportError:
        return "redis-py is not installed (pip install '.[redis]')"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[str]:
    """A throwaway redis-server on 127.0.0.1 (no persistence), killed on exit; yields its URL."""
    import redis

    port = free_port()
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=0.5)
        try:
            deadline = time.monotonic() + 10
            while True:  # readiness: poll the server's own answer, bounded
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise
                    time.sleep(0.02)
        finally:
            client.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.kill()
        proc.wait(10)


def ping_us(url: str, n: int) -> list[float]:
    """Round trips of a bare ``PING`` from redis-py, in µs: the floor of one Redis call."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=1.0)
    try:
        client.ping()
        out = []
        for _ in range(n):
            t0 = time.perf_counter_ns()
            client.ping()
            out.append((time.perf_counter_ns() - t0) / 1000)
        return out
    finally:
        client.close()


class HookTimer:
    """Wraps a coordinator's hooks: time spent per message and Redis round trips per hook.

    Only the sender thread calls the hooks; a message ends when ``delivered`` returns, so the
    hooks run since the previous message (idle ``sync`` polls included) are charged to it.
    """

    def __init__(self, coord: Any) -> None:
        self.coord = coord
        self.calls = dict.fromkeys(HOOKS, 0)
        self.ns = dict.fromkeys(HOOKS, 0)
        self.trips = dict.fromkeys(HOOKS, 0)
        self.per_message_ns: list[int] = []
        self._open_ns = 0
        self._done = threading.Condition()
        for name in HOOKS:
            setattr(coord, name, self._wrap(name, getattr(coord, name)))

    def _round_trips(self) -> int:
        stats = getattr(self.coord, "stats", None)
        return int(stats["calls"]) if stats is not None else 0

    def _wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed_hook(*args: Any, **kwargs: Any) -> Any:
            trips = self._round_trips()
            t0 = time.perf_counter_ns()
            try:
                return fn(*args, **kwargs)
            finally:
                took = time.perf_counter_ns() - t0
                trips = self._round_trips() - trips
                with self._done:
                    self.calls[name] += 1
                    self.ns[name] += took
                    self.trips[name] += trips
                    self._open_ns += took
                    if name == "delivered":
                        self.per_message_ns.append(self._open_ns)
                        self._open_ns = 0
                        self._done.notify_all()

        return timed_hook

    def wait_delivered(self, n: int, timeout: float) -> bool:
        """Wait until ``delivered`` has returned ``n`` times: the sender is done with a message."""
        with self._done:
            return self._done.wait_for(lambda: len(self.per_message_ns) >= n, timeout)

    def reset(self) -> None:
        """Forget the warm-up (call only while the sender is idle)."""
        with self._done:
            self.calls = dict.fromkeys(HOOKS, 0)
            self.ns = dict.fromkeys(HOOKS, 0)
            self.trips = dict.fromkeys(HOOKS, 0)
            self.per_message_ns.clear()
            self._open_ns = 0


def make_handler(fake: FakeSlack, alerts_dir: Path, url: str | None) -> SlackAlertHandler:
    options: dict[str, Any] = {"coordination_url": url} if url else {}
    return SlackAlertHandler(
        webhook_url=fake.webhook_url,
        alerts_dir=alerts_dir,
        rate_limit=1000,
        burst=1000,
        coordination_gather=0,
        **options,
    )


def measure(
    fake: FakeSlack, variants: dict[str, tuple[logging.Logger, HookTimer]], n: int
) -> dict[str, list[float]]:
    """Log alerts one at a time, alternating variants; ms from the log call to the fake."""
    latency: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for i in range(-WARMUP, n):
        if i == 0:
            for _, timer in variants.values():
                timer.reset()
        for name in names if i % 2 == 0 else names[::-1]:
            logger, timer = variants[name]
            oid = f"RDS-{name}-{i}"
            before = len(fake.messages)
            delivered = len(timer.per_message_ns)
            t0 = time.monotonic()
            # A distinct template per alert: every message opens a new dedup window, so the
            # full cross-host protocol runs for each one (the dearest case).
            logger.error(
                f"payment failed {oid}",
                extra={"alert": "payment_fail", "order_id": oid, "amount": 15000},
            )
            got = fake.wait_for(before + 1, timeout=10)[before]
            if not timer.wait_delivered(delivered + 1, timeout=10):
                raise RuntimeError(f"{name}: the sender never finished alert {oid}")
            if i >= 0:
                latency[name].append((got.received_at - t0) * 1000)
            time.sleep(GAP)
    return latency


def run(report: Report, n: int) -> None:
    with (
        tempfile.TemporaryDirectory(prefix="bench-redis-") as tmp,
        redis_server(Path(tmp)) as url,
    ):
        floor = ping_us(url, 2000)
        fake = FakeSlack().start()
        handlers: dict[str, SlackAlertHandler] = {}
        variants: dict[str, tuple[logging.Logger, HookTimer]] = {}
        try:
            handlers["local"] = make_handler(fake, Path(tmp) / "local", None)
            handlers["redis"] = make_handler(fake, Path(tmp) / "redis", url)
            for name, h in handlers.items():
                assert h.sender is not None
                variants[name] = (make_logger(f"redis.{name}", h), HookTimer(h.sender.coord))
            latency = measure(fake, variants, n)
            redis_stats = dict(getattr(variants["redis"][1].coord, "stats", {}))
        finally:
            for logger, _ in variants.values():
                logger.handlers.clear()
            diag = teardown(list(handlers.values()), [fake])

    timers = {name: timer for name, (_, timer) in variants.items()}
    coord_us = {name: [ns / 1000 for ns in t.per_message_ns] for name, t in timers.items()}
    trips = {name: sum(t.trips.values()) / n for name, t in timers.items()}

    rows = []
    for name, label in (
        ("local", "local coordination (alerts directory)"),
        ("redis", "Redis coordination (redis-server on 127.0.0.1)"),
    ):
        e = latency[name]
        rows.append(
            [
                label,
                f"{median(e):.2f} ms",
                f"{percentile(e, 99):.2f} ms",
                f"{max(e):.2f} ms",
                str(len(e)),
            ]
        )
    added_p50 = median(latency["redis"]) - median(latency["local"])
    added_p99 = percentile(latency["redis"], 99) - percentile(latency["local"], 99)
    rows.append(
        ["Redis adds (redis − local)", f"{added_p50:+.2f} ms", f"{added_p99:+.2f} ms", "-", "-"]
    )
    report.table(
        f"emit() → fake Slack received it, {n} alerts per variant one at a time, alternating",
        ["variant", "to Slack p50", "to Slack p99", "to Slack max", "alerts"],
        rows,
    )

    rows = []
    for name, label in (("local", "local coordination"), ("redis", "Redis coordination")):
        us = coord_us[name]
        rows.append(
            [
                label,
                f"{median(us):.1f} µs",
                f"{percentile(us, 99):.1f} µs",
                f"{sum(us) / len(us):.1f} µs",
                f"{trips[name]:.2f}",
            ]
        )
    rows.append(
        [
            "Redis adds (redis − local)",
            f"{median(coord_us['redis']) - median(coord_us['local']):+.1f} µs",
            f"{percentile(coord_us['redis'], 99) - percentile(coord_us['local'], 99):+.1f} µs",
            f"{(sum(coord_us['redis']) - sum(coord_us['local'])) / n:+.1f} µs",
            f"{trips['redis'] - trips['local']:+.2f}",
        ]
    )
    rows.append(
        [
            "floor: one bare PING from redis-py",
            f"{median(floor):.1f} µs",
            f"{percentile(floor, 99):.1f} µs",
            f"{sum(floor) / len(floor):.1f} µs",
            "1",
        ]
    )
    report.table(
        "Time in the coordinator's hooks per message sent (sender thread)",
        ["variant", "p50", "p99", "mean", "Redis round trips"],
        rows,
    )

    rows = []
    for hook in HOOKS:
        if not any(t.calls[hook] for t in timers.values()):
            continue
        rows.append(
            [
                hook,
                *(f"{timers[v].calls[hook] / n:.2f}" for v in ("local", "redis")),
                *(f"{timers[v].ns[hook] / n / 1000:.1f} µs" for v in ("local", "redis")),
                f"{timers['redis'].trips[hook] / n:.2f}",
            ]
        )
    report.table(
        "Per hook, per message sent",
        ["hook", "calls local", "calls redis", "time local", "time redis", "Redis round trips"],
        rows,
    )

    report.note(
        "Both handlers use rate_limit=1000, burst=1000 and coordination_gather=0, and every alert "
        "has its own message template, so neither pacing, dedup nor the cross-host gather wait "
        "holds a message back and every message runs the whole protocol: the difference is the "
        "Redis work itself (sync: one pipelined HGET per pending dedup key; admit: open the dedup "
        "round, take it, take a token from the shared bucket, each a Lua script; delivered: "
        "announce the message). With the default gather (0.3 s) the first alert of each new dedup "
        "key also waits that long for the other hosts' copies, by design."
    )
    report.note(
        "Hook time is measured in the sender thread around each hook call and charged to the "
        "message the next delivered() completes, idle sync() polls included; the logging call "
        "never runs these hooks. Redis round trips are RedisCoordination.stats['calls'] "
        f"counted around each hook ({sum(timers['redis'].trips.values())} over the measured "
        f"run; {redis_stats.get('calls', 0)} calls and {redis_stats.get('errors', 0)} errors "
        "in all, warm-up included), a pipeline counting once."
    )
    report.note(
        "redis-server runs on 127.0.0.1 with --save '' --appendonly no, started by this script on "
        "a free port and killed at the end; on a real network every round trip adds its RTT. "
        f"{WARMUP} warm-up alerts per variant are not counted; {GAP * 1000:.0f} ms idle between "
        "alerts."
    )
    report.data.update(
        alerts=n,
        latency_ms=latency,
        coordination_us_per_message=coord_us,
        round_trips_per_message=trips,
        hooks={
            name: {"calls": t.calls, "ns": t.ns, "round_trips": t.trips}
            for name, t in timers.items()
        },
        redis_stats=redis_stats,
        redis_ping_us=floor,
        teardown_diagnostics=diag.splitlines(),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=250)
    args = parser.parse_args(argv)
    report = Report("redis", "Redis coordination: cost per message sent")
    reason = missing()
    if reason:
        print(f"skipped: {reason}")
        report.note(f"Skipped: {reason}.")
        report.data.update(skipped=True, reason=reason)
        report.finish()
        return 0
    run(report, args.alerts)
    report.data["skipped"] = False
    report.finish()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
