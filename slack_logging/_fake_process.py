"""``python -m slack_logging.testing``: the fake Slack as a process, printing what it receives.

For pointing a service at it by hand: it prints its URLs, then each message it accepts drawn
as Slack shows it (``slack_logging._preview``), and each request it refuses with Slack's answer.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from slack_logging._fake_records import Received, RecordedRequest

__all__ = ["main"]


def main(argv: list[str] | None, fake_slack: Callable[..., Any], default_token: str) -> int:
    """``python -m slack_logging.testing``: a fake Slack as a process, for pointing a service
    at it by hand. Prints its URLs, then each message it accepts as Slack would show it.
    ``slack_logging.testing`` passes its class and token in, so this module never imports it."""
    parser = argparse.ArgumentParser(
        prog="python -m slack_logging.testing",
        description="Run a fake Slack on loopback and print every message it receives.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--port", type=int, default=8099, help="port (default 8099; 0: any)")
    parser.add_argument("--token", default=default_token, help="bot token to accept")
    parser.add_argument("--rate-limit", type=float, help="requests/s per destination (429 over)")
    parser.add_argument("--lenient", action="store_true", help="accept payloads Slack would refuse")
    color = parser.add_mutually_exclusive_group()
    color.add_argument("--color", action="store_true", default=None, help="ANSI colours")
    color.add_argument("--no-color", dest="color", action="store_false", help="no colours")
    args = parser.parse_args(argv)
    use_color = sys.stdout.isatty() if args.color is None else args.color
    width = min(100, max(40, os.get_terminal_size().columns)) if sys.stdout.isatty() else 80

    printing = threading.Lock()  # requests are served in parallel; messages print whole

    def show(message: Received) -> None:
        where = f"#{message.channel}" if message.channel else "webhook"
        if message.thread_ts:
            where += f", thread {message.thread_ts}"
        drawn = message.preview(color=use_color, width=width)
        with printing:
            when = time.strftime("%H:%M:%S")
            print(f"\n── {when} {where} " + "─" * max(0, width - len(where) - 14))
            print(drawn, flush=True)

    def refused(request: RecordedRequest) -> None:
        answer = f"HTTP {request.status}" if request.status is not None else "connection reset"
        with printing:
            print(
                f"\n✗ refused {request.method} {request.path}: {answer} {request.error}", flush=True
            )

    fake = fake_slack(
        token=args.token,
        host=args.host,
        port=args.port,
        strict=not args.lenient,
        rate_limit=args.rate_limit,
        on_message=show,
        on_refusal=refused,
    )
    fake.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    mode = "lenient" if args.lenient else "strict: refuses what Slack refuses"
    print(f"FakeSlack on {fake.url} ({mode})")
    print(f"webhook URL: {fake.webhook_url}")
    print(f"bot token:   {fake.token}  with  SLACK_API_URL={fake.api_url}")
    print("Ctrl-C stops it; messages follow.", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
    return 0
