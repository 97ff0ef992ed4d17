"""Exit time: how long a process that logged one alert takes to exit, Slack answering or hanging.

pm2 kills a process that has not exited 1.6 s after SIGINT, so both must stay well under that.
Baseline in the same run: the same subprocess with plain ``logging`` and no handler of ours.

    python benchmarks/bench_exit.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO_ROOT, Report, median, teardown

from slack_logging.testing import FakeSlack

PM2_KILL_TIMEOUT = 1.6

OURS = """
import logging, sys, time
from slack_logging import SlackAlertHandler
handler = SlackAlertHandler(webhook_url=sys.argv[1], alerts_dir=sys.argv[2])
log = logging.getLogger("app")
log.addHandler(handler)
log.error("payment failed %s", "ORD-1",
          extra={"alert": "payment_fail", "order_id": "ORD-1", "amount": 15000})
print(time.monotonic(), flush=True)
"""

PLAIN = """
import logging, sys, time
logging.basicConfig()
log = logging.getLogger("app")
log.error("payment failed %s", "ORD-1",
          extra={"alert": "payment_fail", "order_id": "ORD-1", "amount": 15000})
print(time.monotonic(), flush=True)
"""


def run_child(code: str, *args: str) -> dict[str, float | str]:
    """Wall time of the whole process, and from just after its log call until it has exited.

    ``time.monotonic()`` is one system-wide clock on Linux, so the child's reading and ours
    compare directly.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    out, err = proc.communicate(timeout=30)
    t1 = time.monotonic()
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}):\n{err}")
    logged = float(out.strip().splitlines()[-1])
    return {"total_s": t1 - t0, "after_log_s": t1 - logged, "stderr": err.strip()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    report = Report("exit", "Exit time of a process that logged one alert")

    answering = FakeSlack().start()
    hung = FakeSlack().start()
    hung.hang_next(60, count=100)
    results: dict[str, list[dict[str, float | str]]] = {"plain": [], "answering": [], "hung": []}
    delivered = 0
    try:
        with tempfile.TemporaryDirectory(prefix="bench-exit-") as tmp:
            for i in range(args.runs):
                results["plain"].append(run_child(PLAIN))
                before = len(answering.messages)
                results["answering"].append(
                    run_child(OURS, answering.webhook_url, str(Path(tmp) / f"answering-{i}"))
                )
                delivered += len(answering.messages) > before
                results["hung"].append(
                    run_child(OURS, hung.webhook_url, str(Path(tmp) / f"hung-{i}"))
                )
    finally:
        teardown([], [answering, hung])

    plain_total = median([float(r["total_s"]) for r in results["plain"]])
    plain_after = median([float(r["after_log_s"]) for r in results["plain"]])
    rows = []
    for name, key in (
        ("baseline: plain logging, no handler of ours", "plain"),
        ("ours, Slack answering", "answering"),
        ("ours, Slack hanging (request held 60 s)", "hung"),
    ):
        total = [float(r["total_s"]) for r in results[key]]
        after = [float(r["after_log_s"]) for r in results[key]]
        rows.append(
            [
                name,
                f"{median(after) * 1000:.0f} ms",
                f"{max(after) * 1000:.0f} ms",
                f"{(median(after) - plain_after) * 1000:+.0f} ms",
                f"{median(total) * 1000:.0f} ms",
                f"{(median(total) - plain_total) * 1000:+.0f} ms",
                str(len(total)),
            ]
        )
    report.table(
        "Subprocess that logs one alert and returns from its script (exit runs atexit → "
        "handler close)",
        [
            "variant",
            "log call → exited (median)",
            "max",
            "vs baseline",
            "whole process (median)",
            "vs baseline",
            "runs",
        ],
        rows,
    )
    for key, label in (("answering", "Slack answering"), ("hung", "Slack hanging")):
        worst = max(float(r["after_log_s"]) for r in results[key])
        report.target(
            f"log call → exited, {label} (worst of {args.runs})",
            f"< {PM2_KILL_TIMEOUT} s (pm2 kill timeout)",
            f"{worst:.2f} s",
            worst < PM2_KILL_TIMEOUT,
        )
    report.note(
        f"Slack answering: the alert reached the fake Slack before exit in {delivered} of "
        f"{args.runs} runs. Slack hanging: exit waits at most shutdown_timeout (1 s, default) "
        "and leaves the alert in the outbox for the next process (the child says so on stderr)."
    )
    report.note(
        "'whole process' includes interpreter start-up and imports (ours imports requests and "
        "sqlite3); 'log call → exited' is from the child's time.monotonic() just after its log "
        "call until the parent saw it exit."
    )
    report.data.update(results=results, delivered_before_exit=delivered)
    report.finish()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
