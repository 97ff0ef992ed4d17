"""Shared plumbing for the benchmark scripts: baselines, statistics, and the results files.

Each ``bench_*.py`` measures ours against baselines in the same run, prints a table and writes
``results/<name>.json``; :func:`write_markdown` rebuilds ``results/RESULTS.md`` from every JSON
file there, so running one script alone keeps the combined table current.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import logging
import logging.handlers
import os
import platform
import queue
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"

# Run as `python benchmarks/x.py` from a checkout: the package need not be installed.
try:
    import slack_logging  # noqa: F401
except ImportError:
    sys.path.insert(0, str(REPO_ROOT))

import requests  # noqa: E402

from slack_logging import SlackAlertHandler  # noqa: E402
from slack_logging.testing import FakeSlack  # noqa: E402

# A real destination in the environment must never leak into a benchmark.
for _name in [n for n in os.environ if n.startswith("SLACK_")]:
    del os.environ[_name]


# -- baselines --------------------------------------------------------------------------------


class NoopHandler(logging.Handler):
    """A handler that does nothing: the listener side of the floor."""

    def emit(self, record: logging.LogRecord) -> None:
        pass


class Floor:
    """The floor of this design: a stdlib ``QueueHandler`` feeding a ``QueueListener`` whose
    handler does nothing. Unbounded queue, as the stdlib docs show it."""

    def __init__(
        self, front: type[logging.handlers.QueueHandler] = logging.handlers.QueueHandler
    ) -> None:
        self.queue: queue.Queue[Any] = queue.Queue()
        self.handler = front(self.queue)
        self.listener = logging.handlers.QueueListener(self.queue, NoopHandler())
        self.listener.start()

    def drain(self) -> None:
        """Wait until the listener took every record (it calls ``task_done`` per record)."""
        self.queue.join()

    def close(self) -> None:
        self.listener.stop()
        self.handler.close()


class SyncPeerHandler(logging.Handler):
    """What every peer does: post to Slack inside ``emit()``, in the caller's thread.

    Modelled on simple-slack-logger (``requests.post(url, json=...)`` per record), plus a timeout
    and a swallowed error so a benchmark can run it against a hung Slack.
    """

    def __init__(self, url: str, timeout: float) -> None:
        super().__init__()
        self.url = url
        self.timeout = timeout
        self.failures = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            requests.post(self.url, json={"text": self.format(record)}, timeout=self.timeout)
        except requests.RequestException:
            self.failures += 1


def make_logger(name: str, handler: logging.Handler) -> logging.Logger:
    """A private logger (no propagation) with exactly ``handler`` attached."""
    logger = logging.getLogger(f"bench.{name}")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return logger


def teardown(handlers: Sequence[SlackAlertHandler], fakes: Sequence[FakeSlack]) -> str:
    """Close the handlers (1 s each), stop the fakes, and wait for stuck senders to end.

    A sender stuck in a request to a hanging fake outlives ``close()`` until the fake stops and
    cuts the request; the diagnostics this produces (alerts left for the next process, a reset
    connection) are expected here, so they are returned instead of printed.
    """
    out = io.StringIO()
    with contextlib.redirect_stderr(out):
        for h in handlers:
            h.close(timeout=1.0)
        for fake in fakes:
            fake.stop()
        deadline = time.monotonic() + 5.0
        for h in handlers:
            while h.sender is not None and h.sender.alive and time.monotonic() < deadline:
                time.sleep(0.01)
    return out.getvalue()


def listener_idle(handler: SlackAlertHandler) -> None:
    """Wait until our listener thread has taken every queued record (mirror written, alerts
    stored): the background cost of logging, without Slack's paced delivery."""
    handler.runtime.wait_ingested(3600.0)


def alerts_counted(fake: FakeSlack) -> int:
    """Alerts covered by every message the fake accepted (metadata counts add up)."""
    return sum(m.payload["metadata"]["event_payload"]["count"] for m in fake.messages)


def wait_counted(fake: FakeSlack, n: int, timeout: float) -> bool:
    """Wait until the fake's messages cover ``n`` alerts, or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while alerts_counted(fake) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        with contextlib.suppress(TimeoutError):
            fake.wait_for(len(fake.messages) + 1, timeout=min(left, 1.0))
    return True


# -- statistics -------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation; ``values`` need not be sorted."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50.0)


def fmt_ns(ns: float) -> str:
    """Nanoseconds in the unit a reader wants: ns, µs, ms or s."""
    if ns != ns:  # NaN
        return "-"
    if ns < 1_000:
        return f"{ns:.0f} ns"
    if ns < 1_000_000:
        return f"{ns / 1_000:.2f} µs"
    if ns < 1_000_000_000:
        return f"{ns / 1_000_000:.2f} ms"
    return f"{ns / 1_000_000_000:.2f} s"


def fmt_s(seconds: float) -> str:
    return fmt_ns(seconds * 1e9)


def fmt_ratio(ratio: float) -> str:
    return "-" if ratio != ratio else f"{ratio:.2f}×"


def maxrss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    import resource

    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024.0 if sys.platform != "darwin" else kib / (1024.0 * 1024.0)


def profile_rows(
    stats: dict[Any, Any], total: float, calls: int, limit: int = 14, by: str = "own"
) -> list[list[str]]:
    """Top ``limit`` functions of a ``pstats`` table by own (or cumulative) time, the
    benchmark's own frames left out: name, calls per log call, own and cumulative share of
    ``total`` seconds."""
    harness = ("timed_", "runcall", "perf_counter_ns", "<built-in method time.perf_counter_ns>")
    rows = []
    entries = [
        (key, v)
        for key, v in stats.items()
        if not key[2].startswith(("<bound method", *harness)) and key[0] != "profile"
    ]
    for (filename, line, func), (_cc, nc, tt, ct, _callers) in sorted(
        entries, key=lambda kv: kv[1][2 if by == "own" else 3], reverse=True
    )[:limit]:
        path = Path(filename)
        if not line:
            where = func
        else:
            name = f"{path.parent.name}/{path.name}" if path.name == "__init__.py" else path.name
            where = f"{func} ({name}:{line})"
        rows.append([where, f"{nc / calls:g}", f"{tt / total:.1%}", f"{ct / total:.1%}"])
    return rows


# -- results ----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "loadavg_1_5_15": [round(x, 2) for x in load],
    }


def command() -> str:
    """The command line that started this process, with the interpreter's full path, and the
    directory it ran in when that is not the repository root."""
    line = shlex.join([sys.executable, *sys.argv])
    return line if Path.cwd() == REPO_ROOT else f"cd {shlex.quote(str(Path.cwd()))} && {line}"


class Report:
    """What one benchmark found: tables, targets, notes; printed and saved as JSON."""

    def __init__(self, name: str, title: str) -> None:
        self.name = name
        self.title = title
        self.tables: list[dict[str, Any]] = []
        self.targets: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.data: dict[str, Any] = {}
        self.started = time.monotonic()
        self.machine = machine()

    def table(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.tables.append(
            {"title": title, "columns": list(columns), "rows": [[str(c) for c in r] for r in rows]}
        )

    def target(self, what: str, target: str, measured: str, met: bool) -> None:
        self.targets.append({"what": what, "target": target, "measured": measured, "met": met})

    def note(self, text: str) -> None:
        self.notes.append(text)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "command": command(),
            "cwd": str(Path.cwd()),
            "machine": self.machine,
            "duration_s": round(time.monotonic() - self.started, 2),
            "tables": self.tables,
            "targets": self.targets,
            "notes": self.notes,
            "data": self.data,
        }

    def finish(self) -> dict[str, Any]:
        """Print the tables, write ``results/<name>.json`` and rebuild ``RESULTS.md``."""
        result = self.as_dict()
        print(render_text(result))
        RESULTS_DIR.mkdir(exist_ok=True)
        path = RESULTS_DIR / f"{self.name}.json"
        path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        write_markdown()
        print(f"wrote {path.relative_to(REPO_ROOT)} and {RESULTS_DIR.name}/RESULTS.md")
        return result


def _text_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(c)), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    line = "  ".join(str(c).ljust(w) for c, w in zip(columns, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return out


def render_text(result: dict[str, Any]) -> str:
    out = [f"\n== {result['title']} ({result['duration_s']} s) =="]
    for t in result["tables"]:
        out += ["", t["title"], *_text_table(t["columns"], t["rows"])]
    if result["targets"]:
        rows = [
            [t["what"], t["target"], t["measured"], "met" if t["met"] else "MISSED"]
            for t in result["targets"]
        ]
        out += ["", "Targets", *_text_table(["what", "target", "measured", ""], rows)]
    out += [f"note: {n}" for n in result["notes"]]
    return "\n".join(out)


def _md_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|")

    out = ["| " + " | ".join(cell(c) for c in columns) + " |"]
    out.append("|" + "|".join("---" for _ in columns) + "|")
    out += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return out


ORDER = ("caller", "request", "throughput", "burst", "latency", "exit")


def write_markdown() -> Path:
    """Rebuild ``RESULTS.md`` from every ``results/*.json``, in the order of :data:`ORDER`."""
    found = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in RESULTS_DIR.glob("*.json")}
    names = [n for n in ORDER if n in found] + sorted(set(found) - set(ORDER))
    m = machine()
    out = [
        "# slack-logging benchmarks",
        "",
        "Ours against baselines measured in the same run; medians unless said otherwise.",
        "Regenerate all with `python benchmarks/run.py` (or one with "
        "`python benchmarks/bench_<name>.py`) from the repository root.",
        "",
        f"Written {m['date']} by `{command()}`.",
        "",
    ]
    for name in names:
        r = found[name]
        mach = r["machine"]
        out += [
            f"## {r['title']}",
            "",
            f"Command: `{r['command']}` ({r['duration_s']} s). Machine: {mach['platform']}, "
            f"{mach['cpu_count']} CPUs, {mach['python']}, {mach['date']}, "
            f"load average {mach['loadavg_1_5_15']}.",
            "",
        ]
        for t in r["tables"]:
            out += [f"**{t['title']}**", "", *_md_table(t["columns"], t["rows"]), ""]
        if r["targets"]:
            rows = [
                [t["what"], t["target"], t["measured"], "met" if t["met"] else "**missed**"]
                for t in r["targets"]
            ]
            out += ["**Targets**", "", *_md_table(["what", "target", "measured", ""], rows), ""]
        out += [f"- {n}" for n in r["notes"]]
        if r["notes"]:
            out.append("")
    path = RESULTS_DIR / "RESULTS.md"
    path.write_text("\n".join(out).rstrip() + "\n", encoding="utf-8")
    return path
