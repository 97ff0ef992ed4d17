"""SlackAlertHandler: the front door. A thin ``logging.Handler`` over a
:class:`~slack_logging._runtime.Runtime`, which owns the threads, storage and lifecycle."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from slack_logging._alert import IGNORED_LOGGERS
from slack_logging._caller import prepare
from slack_logging._config import Settings, parse_level
from slack_logging._diag import Diagnostics
from slack_logging._ingest import Ingest
from slack_logging._outbox import Outbox
from slack_logging._runtime import Runtime, ours
from slack_logging._sender import Sender
from slack_logging._urls import mask_url

__all__ = ["SlackAlertHandler"]


class SlackAlertHandler(logging.Handler):
    """Send records tagged ``extra={"alert": "<category>"}`` to Slack without slowing the caller.

    Every record is also written as a JSON line to ``alerts_dir/alerts.jsonl``; alerts are stored
    in ``alerts_dir/outbox.sqlite3`` before delivery, so a Slack outage, a restart or ``kill -9``
    loses none. Nothing is created on disk until the first record (or until alerts an earlier
    process left pending are picked up).

    Every parameter is optional; ``None`` means the environment variable named, else the default.

    Args:
        level: the handler's level (default ``NOTSET``).
        webhook_url: incoming webhook URL (env ``SLACK_WEBHOOK_URL``).
        token: bot token for chat.postMessage (env ``SLACK_BOT_TOKEN``); wins over a webhook.
        channel: channel id for the bot token (env ``SLACK_CHANNEL_ID``).
        enabled: kill switch (env ``SLACK_ENABLED``); default on when a destination is set.
            Off means no network at all; the mirror goes on.
        alerts_dir: where the mirror and outbox live (env ``SLACK_ALERTS_DIR``, default
            ``./slack_alerts``). Must be on local disk.
        api_url: Web API base (env ``SLACK_API_URL``, default ``https://slack.com/api``).
        categories: mapping merged over the built-in catalog (see :class:`Catalog`).
        rate_limit: messages per second per destination (default 1).
        burst: messages a quiet destination may get at once before pacing (default 3).
        dedup_window: seconds identical alerts are folded into one follow-up (default 60; 0 off).
        dedup_quiet: a folded run is posted once quiet this many seconds (default 10).
        max_digest: the most alerts one message covers (default 1000).
        untagged_level: also send untagged records at or above this level (default off),
            titled like "Error log · payments.api".
        service, environment: shown on every alert (env ``SLACK_SERVICE_NAME``,
            ``SLACK_ENVIRONMENT``; service defaults to the script's name).
        connect_timeout, read_timeout: per Slack request, seconds (3.05 and 5).
        queue_size: records held in memory before alerts spill to disk (default 10 000).
        shutdown_timeout: the most ``close()`` and interpreter exit wait, seconds (default 1).
        flush_timeout: what ``flush()`` waits by default, seconds (default 5).
        mirror, mirror_max_bytes, mirror_backups, mirror_rotate: the JSON-lines mirror (on,
            10 MiB, 5 backups, ``"size"`` or ``"daily"``).
        redact: masking options (``enabled``, ``disable``, ``patterns``, ``secret_keys``).
        thread_ttl: seconds a Slack thread (``thread_key``) stays open for replies (default 1 day).
        coordination_url, coordination_namespace, coordination_gather: share pacing and dedup
            between hosts through Redis (env ``SLACK_LOGGING_REDIS_URL``).
        ignore_loggers: logger names whose records this handler never takes.
        trace_url, runbook: link templates every category shows unless it sets its own, e.g.
            ``"https://tempo.example/trace/{trace_id}"`` (``{trace_id}``/``{span_id}`` come from
            the OpenTelemetry span active at log time).
        summary_at, summary_zone: when the periodic summary is posted (``"09:00"`` daily,
            ``"hourly"`` or ``"*:30"``) and in which IANA zone (env ``SLACK_SUMMARY_AT``,
            ``SLACK_SUMMARY_ZONE``; no default zone). Categories with ``delivery: summary``
            are only counted there.
        recovery_quiet_period: seconds a success must stand before "recovered after …" is
            posted (default 60).
        live_updates: bot mode: edit a run's first message in place (``chat.update``) instead
            of posting "repeated N times" follow-ups (default true; webhooks cannot edit).
        live_updates_per_minute: ``chat.update`` calls a minute, 1-50 (default 40).
        env: read these variables instead of ``os.environ`` (tests).
        settings: an already resolved :class:`~slack_logging._config.Settings`; the other
            parameters (but ``level``) are then ignored.

    Example::

        handler = SlackAlertHandler(webhook_url="https://hooks.slack.com/services/T…/B…/…")
        logging.getLogger().addHandler(handler)
        logging.getLogger("pay").error("카드 한도 초과", extra={"alert": "payment_fail",
                                                           "order_id": "ORD-1", "amount": 15000})
    """

    def __init__(
        self,
        webhook_url: str | None = None,
        token: str | None = None,
        channel: str | None = None,
        enabled: bool | str | None = None,
        alerts_dir: str | os.PathLike[str] | None = None,
        api_url: str | None = None,
        categories: Mapping[str, Mapping[str, Any]] | None = None,
        rate_limit: float | str | None = None,
        *,
        level: int | str = logging.NOTSET,
        burst: int | str | None = None,
        dedup_window: float | str | None = None,
        dedup_quiet: float | str | None = None,
        max_digest: int | str | None = None,
        untagged_level: int | str | None = None,
        service: str | None = None,
        environment: str | None = None,
        connect_timeout: float | str | None = None,
        read_timeout: float | str | None = None,
        queue_size: int | str | None = None,
        shutdown_timeout: float | str | None = None,
        flush_timeout: float | str | None = None,
        mirror: bool | str | None = None,
        mirror_max_bytes: int | str | None = None,
        mirror_backups: int | str | None = None,
        mirror_rotate: str | None = None,
        redact: Mapping[str, Any] | None = None,
        thread_ttl: float | str | None = None,
        coordination_url: str | None = None,
        coordination_namespace: str | None = None,
        coordination_gather: float | str | None = None,
        ignore_loggers: Sequence[str] | None = None,
        trace_url: str | None = None,
        runbook: str | None = None,
        summary_at: str | None = None,
        summary_zone: str | None = None,
        recovery_quiet_period: float | str | None = None,
        live_updates: bool | str | None = None,
        live_updates_per_minute: float | str | None = None,
        env: Mapping[str, str] | None = None,
        settings: Settings | None = None,
    ) -> None:
        if settings is None:
            options = {
                k: v for k, v in locals().items() if k not in ("self", "level", "env", "settings")
            }
            options.pop("__class__", None)
            settings = Settings.resolve(env, **options)
        elif not isinstance(settings, Settings):
            raise ValueError(f"settings: expected Settings, got {type(settings).__name__}")
        self.settings = settings
        self.diag = Diagnostics()
        self.runtime = Runtime(self.settings, self.diag)
        self._submit = self.runtime.submit
        ignored = (*IGNORED_LOGGERS, *self.settings.ignore_loggers)
        self._ignored = frozenset(ignored)
        self._ignored_dotted = tuple(f"{n}." for n in ignored)
        # Last: logging.shutdown() closes handlers in reverse creation order.
        super().__init__(parse_level(level, key="level") or logging.NOTSET)

    # -- what other parts of the package (CLI, tests, benchmarks) look at -------------------------

    @property
    def outbox(self) -> Outbox | None:
        self.runtime.open()
        return self.runtime.outbox

    @property
    def sender(self) -> Sender | None:
        self.runtime.open()
        return self.runtime.sender

    @property
    def ingest(self) -> Ingest:
        return self.runtime.ingest

    @property
    def durable(self) -> bool:
        self.runtime.open()
        return self.runtime.durable

    @property
    def dropped(self) -> int:
        return self.runtime.ledger.dropped()

    @property
    def spilled(self) -> int:
        return self.runtime.ledger["spilled"]

    def stats(self) -> dict[str, Any]:
        """This process's numbers from the one ledger: ``delivered``, ``pending``, ``dead``,
        ``spilled``, ``dropped`` (a dict by reason), plus ``alerts``, ``requests``, ``retries``,
        ``rate_limited``, ``messages``, ``errors``, ``mirror_errors``, ``outbox_errors`` when
        they happened."""
        return self.runtime.stats()

    def pending(self) -> int:
        """This process's alerts not yet delivered (or given up)."""
        return self.runtime.pending()

    def take_spills(self) -> int:
        """Move spilled alerts (ours, and those of processes that are gone) into the outbox."""
        return self.runtime.take_spills()

    def __repr__(self) -> str:
        s = self.settings
        where = (
            f"channel={s.channel!r}"
            if s.mode == "chat"
            else f"webhook_url={mask_url(s.webhook_url)!r}"
            if s.webhook_url
            else "destination=None"
        )
        return (
            f"<{type(self).__name__} {where} enabled={s.enabled} "
            f"alerts_dir={str(s.alerts_dir)!r} level={logging.getLevelName(self.level)}>"
        )

    # -- the hot path ------------------------------------------------------------------------

    def handle(self, record: logging.LogRecord) -> Any:
        """Filter and emit without the handler lock: ``emit`` only enqueues and is thread-safe,
        and the lock would make a burst of callers wait behind the one starting the threads."""
        rv: bool | logging.LogRecord = self.filter(record)
        if isinstance(rv, logging.LogRecord):  # 3.12+: a filter may return a replacement
            record = rv
        if rv:
            self.emit(record)
        return rv

    def emit(self, record: logging.LogRecord) -> None:
        """Enqueue a shallow copy prepared in this thread (:func:`~slack_logging._caller.prepare`);
        never blocks, never raises, no file I/O (but after close, or past 10 000 overflowing
        alerts waiting for the overflow writer)."""
        try:
            name = record.name
            # ours.__dict__ is non-empty only in our own threads (is_our_thread, inlined).
            if name in self._ignored or name.startswith(self._ignored_dotted) or ours.__dict__:
                return
            self._submit(prepare(record))
        except Exception:
            self.handleError(record)

    # -- flush and close -------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:  # type: ignore[override]  # bool: see docstring
        """Wait until everything accepted so far is delivered or given up as undeliverable.

        Args:
            timeout: seconds to wait; ``None`` means the ``flush_timeout`` setting (5 s), so a
                framework calling ``flush()`` on every handler is never stuck behind Slack.

        Returns:
            True if nothing accepted before the call is still waiting.
        """
        budget = self.settings.flush_timeout if timeout is None else timeout
        try:
            return self.runtime.flush(time.monotonic() + max(0.0, budget))
        except Exception:
            self.handleError(logging.makeLogRecord({"msg": "slack-logging flush failed"}))
            return False

    def close(self, timeout: float | None = None) -> None:
        """Stop within ``timeout`` (default ``shutdown_timeout``, 1 s), even if Slack hangs.

        The queue is drained to disk first; delivery is tried until the deadline; anything left
        stays in the outbox for the next process, with one line on stderr. Idempotent.
        """
        budget = self.settings.shutdown_timeout if timeout is None else timeout
        try:
            self.runtime.stop(time.monotonic() + max(0.0, budget))
        finally:
            super().close()
