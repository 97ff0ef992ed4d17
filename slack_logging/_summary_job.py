"""The periodic summary, run by the sender (the leader) at ``summary_at`` in ``summary_zone``.

At each run the period ``[the run before, this run)`` is summed up from the outbox (pending,
delivered and dead alerts alike) and posted once per destination: the default destination
always (a quiet day says so), a category's own destination when it had alerts. "Once" holds
across processes and restarts through a claim per destination and period
(``summary:<destination>:<period start>``), taken with an insert-if-absent in the outbox, or in
Redis (``SET NX``) when coordination is on:

* the claim is a lease (:data:`LEASE` seconds) while the summary is being sent; a process that
  dies holding it leaves it to expire, and the next leader sends the summary;
* once Slack took it, the claim becomes ``sent`` for :data:`KEEP` seconds, so no later leader,
  restart or clock slip sends it again.

A run missed while no process ran is sent late, but only the latest one, and never one from
before this alerts directory first ran a schedule (a new deployment does not start with
yesterday's summary). Nothing here raises into the sender: a failure is reported once and
retried with backoff.

A little over 400 lines: the claims (local and Redis) and the period arithmetic exist only for
this job, and reading them next to :class:`SummaryJob` is what shows how "once" holds.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import re
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from slack_logging._alert import Alert
from slack_logging._catalog import Catalog
from slack_logging._coordination import RedisCoordination
from slack_logging._diag import Diagnostics
from slack_logging._ledger import Ledger
from slack_logging._outbox import Outbox
from slack_logging._planner import backoff
from slack_logging._redact import Redactor, seal
from slack_logging._schedule import Schedule
from slack_logging._summary import SummaryRow, claim_key, render_summary, summarize
from slack_logging._transport import Outcome, Transport

__all__ = [
    "KEEP",
    "LEASE",
    "Claims",
    "OutboxClaims",
    "RedisClaims",
    "SummaryJob",
    "summary_rows",
]

#: Seconds a claim holds while its process sends; past it another leader may take over.
LEASE = 600.0
#: Seconds a sent (or given up) summary's claim is kept: longer than any period.
KEEP = 8 * 86400.0
#: Seconds the first run of a schedule on a directory is remembered (effectively forever).
SINCE_KEEP = 10 * 365 * 86400.0
SINCE_KEY = "summary-since"
#: Permanent failures before a period's summary is given up (a bad channel, a revoked hook).
MAX_PERMANENT = 3
#: Summary messages carry this metadata event type; ``alerts`` is how many it sums up (not
#: ``count``, which means alerts a message delivers).
EVENT_TYPE = "slack_logging_summary"

_DEST_CHARS = re.compile(r"[^A-Za-z0-9_.-]")


class Claims(Protocol):
    """Where claims live: the outbox's small state, or Redis across hosts."""

    def claim(self, key: str, value: Any, ttl: float) -> bool: ...

    def get(self, key: str) -> Any: ...

    def put(self, key: str, value: Any, ttl: float) -> None: ...


class OutboxClaims:
    """Claims in the alerts directory's outbox: one summary per period for every process on
    the directory."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    def claim(self, key: str, value: Any, ttl: float) -> bool:
        return self.outbox.claim_state(key, value, ttl)

    def get(self, key: str) -> Any:
        return self.outbox.get_state(key)

    def put(self, key: str, value: Any, ttl: float) -> None:
        self.outbox.set_state(key, value, ttl=ttl)


class RedisClaims:
    """Claims shared by every host on one Redis (``SET NX PX``), kept in the outbox too, and
    the alerts of every host, so the one summary counts them all.

    Each host's leader publishes compact rows of its alerts (category, severity, title, time,
    reason, amount) into hourly Redis lists; the host that wins the claim reads the period's
    lists and adds its own outbox (rows are told apart by alert id, so a row published twice
    counts once).

    While Redis does not answer, the outbox decides for this host alone (each host may then
    send its own summary: a duplicate notice, never a lost alert). A claim settled in either
    place counts as settled.
    """

    def __init__(self, coord: RedisCoordination, local: Claims) -> None:
        self.coord = coord
        self.local = local

    def claim(self, key: str, value: Any, ttl: float) -> bool:
        won = self.coord.shared_claim(key, json.dumps(value), ttl)
        if won is None:
            return self.local.claim(key, value, ttl)
        if won:
            self.local.put(key, value, ttl)
        return won

    def get(self, key: str) -> Any:
        local = self.local.get(key)
        if isinstance(local, dict) and local.get("state") in ("sent", "failed"):
            return local
        text = self.coord.shared_get(key)
        if text is None:
            return local
        try:
            return json.loads(text)
        except ValueError:
            return local

    def put(self, key: str, value: Any, ttl: float) -> None:
        self.local.put(key, value, ttl)
        self.coord.shared_put(key, json.dumps(value), ttl)

    def publish(self, rows: Sequence[tuple[str, Alert]]) -> bool:
        """Share ``(destination, alert)`` rows; False while Redis does not answer."""
        items: dict[str, list[str]] = {}
        for dest, alert in rows:
            fields = alert.fields if isinstance(alert.fields, Mapping) else {}
            row = {
                "id": alert.alert_id,
                "d": dest,
                "c": alert.category,
                "s": alert.severity,
                "t": alert.title,
                "at": alert.created,
                "f": {k: fields[k] for k in _SHARED_FIELDS if k in fields},
            }
            items.setdefault(_bucket(alert.created), []).append(json.dumps(row))
        return not items or self.coord.shared_push(items, KEEP)

    def gather(self, start: float, end: float) -> dict[str, tuple[str, SummaryRow]] | None:
        """Every host's rows created in ``[start, end)`` by alert id; None while Redis does
        not answer."""
        first, last = int(start // 3600), int((end - 1e-6) // 3600)
        keys = [f"summary-rows:{hour}" for hour in range(first, last + 1)]
        found = self.coord.shared_lists(keys)
        if found is None:
            return None
        out: dict[str, tuple[str, SummaryRow]] = {}
        for text in found:
            try:
                row = json.loads(text)
                created = float(row["at"])
                if start <= created < end:
                    out[str(row["id"])] = (
                        str(row["d"]),
                        SummaryRow(
                            str(row["c"]), str(row["s"]), str(row["t"]), created, dict(row["f"])
                        ),
                    )
            except (ValueError, TypeError, KeyError):
                continue
        return out


#: The fields a summary reads (see :func:`~slack_logging._summary.summarize`).
_SHARED_FIELDS = ("reason", "amount")
#: Rows published per look, and how far back a host's first look goes.
SHARE_BATCH = 1000
SHARE_BACK = 2 * 86400.0
SHARE_EVERY = 1.0
SHARED_SEQ_KEY = "summary-shared-seq"
#: Seconds after the run time a shared summary waits for every host's last alerts.
SHARED_DELAY = 5.0


def _bucket(created: float) -> str:
    return f"summary-rows:{int(created // 3600)}"


def summary_rows(
    found: Sequence[tuple[str, str, Alert]], catalog: Catalog
) -> list[tuple[str, SummaryRow]]:
    """``(destination, row)`` for the outbox's ``alerts_between`` answer."""
    return [_row(dest, alert, catalog)[1] for dest, _state, alert in found]


def _row(dest: str, alert: Alert, catalog: Catalog) -> tuple[str, tuple[str, SummaryRow]]:
    """``(alert id, (destination, row))``."""
    title = (
        alert.title
        or catalog.stored(alert.category, alert.title, alert.severity, alert.known).title
    )
    fields = alert.fields if isinstance(alert.fields, Mapping) else {}
    row = SummaryRow(alert.category, alert.severity, title, alert.created, fields)
    return alert.alert_id, (dest, row)


def summary_title(service: str | None, environment: str | None) -> str:
    """``Alert summary · payments (prod)``: which service the numbers are for."""
    title = "Alert summary"
    if service:
        title += f" · {service}"
    if environment:
        title += f" ({environment})"
    return title


class SummaryJob:
    """Sends each period's summary once; :meth:`tick` is called by the sender every cycle."""

    def __init__(
        self,
        schedule: Schedule,
        outbox: Outbox,
        claims: Claims,
        transports: Mapping[str, Transport],
        default_dest: str,
        catalog: Catalog,
        diag: Diagnostics,
        *,
        title: str = "Alert summary",
        redactor: Redactor | None = None,
        ledger: Ledger | None = None,
        rng: random.Random | None = None,
        took_token: Callable[[str, float], None] = lambda dest, now: None,
    ) -> None:
        self.schedule = schedule
        self.outbox = outbox
        self.claims = claims
        self.transports = transports
        self.default_dest = default_dest
        self.catalog = catalog
        self.diag = diag
        self.title = title
        self.redactor = redactor
        self.stats = ledger or Ledger()
        self.rng = rng or random.Random()  # noqa: S311 - retry jitter, not crypto
        self.took_token = took_token
        #: Wall-clock time of the next look (0: look at the first tick).
        self.next_at = 0.0
        self._since: float | None = None
        self._attempts: dict[str, int] = {}
        self._shared_seq: int | None = None
        self._share_at = 0.0
        # Claims tell processes apart, not threads: one tick at a time within a process.
        self._lock = threading.Lock()

    def reset_after_fork(self) -> None:
        """In a forked child: the parent's sender thread may have held the lock."""
        self._lock = threading.Lock()

    def tick(self, now: float) -> None:
        """Send what is owed if its time has come. Never raises."""
        if now < self.next_at:
            return
        with self._lock:
            self._tick(now)

    def _tick(self, now: float) -> None:
        if isinstance(self.claims, RedisClaims) and now >= self._share_at:
            self._share_at = now + SHARE_EVERY
            try:
                self._share(self.claims, now)
            except Exception as exc:
                self.diag.report(
                    f"summary-share:{type(exc).__name__}",
                    f"could not share alerts for the summary with other hosts ({exc})",
                )
        if now < self.next_at:
            return
        try:
            self.next_at = self._run(now)
        except Exception as exc:
            self.next_at = now + 60.0
            self.diag.report(
                f"summary:{type(exc).__name__}",
                f"could not send the periodic summary ({type(exc).__name__}: {exc}); "
                "tried again in a minute",
            )

    def _run(self, now: float) -> float:
        zone = self.schedule.zone
        moment = dt.datetime.fromtimestamp(now, tz=zone)
        upcoming = self.schedule.next_run(moment).timestamp()
        run = self.schedule.previous_run(moment)
        if run.timestamp() <= self._first_seen(now):
            return upcoming
        if isinstance(self.claims, RedisClaims) and now < run.timestamp() + SHARED_DELAY:
            return run.timestamp() + SHARED_DELAY  # the other hosts' last alerts to arrive
        start, end = self.schedule.period_before(run)
        rows = self._rows(start.timestamp(), end.timestamp())
        retry_at = upcoming
        for dest in self._destinations(rows):
            wait = self._send(dest, [r for d, r in rows if d == dest], start, end, now)
            if wait is not None:
                retry_at = min(retry_at, wait)
        return retry_at

    def _share(self, claims: RedisClaims, now: float) -> None:
        """Publish this directory's new alerts for the other hosts' summaries."""
        if self._shared_seq is None:
            stored = self.outbox.get_state(SHARED_SEQ_KEY)
            self._shared_seq = stored if isinstance(stored, int) else 0
        while True:
            found = self.outbox.alerts_after(self._shared_seq, SHARE_BATCH)
            if not found:
                return
            rows = [(dest, a) for _, dest, a in found if a.created >= now - SHARE_BACK]
            if not claims.publish(rows):
                return  # Redis is down: published once it answers again
            self._shared_seq = found[-1][0]
            self.outbox.set_state(SHARED_SEQ_KEY, self._shared_seq, ttl=KEEP)
            if len(found) < SHARE_BATCH:
                return

    def _rows(self, start: float, end: float) -> list[tuple[str, SummaryRow]]:
        """The period's rows: this directory's, plus every host's when they are shared."""
        rows = dict(
            _row(dest, alert, self.catalog)
            for dest, _state, alert in self.outbox.alerts_between(start, end)
        )
        if isinstance(self.claims, RedisClaims):
            shared = self.claims.gather(start, end)
            if shared:
                rows = {**shared, **rows}
        return list(rows.values())

    def _first_seen(self, now: float) -> float:
        """When a schedule first ran on this directory (shared, so a restart catches up)."""
        if self._since is None:
            self.outbox.claim_state(SINCE_KEY, now, SINCE_KEEP)
            stored = self.outbox.get_state(SINCE_KEY)
            self._since = float(stored) if isinstance(stored, int | float) else now
        return self._since

    def _destinations(self, rows: Sequence[tuple[str, SummaryRow]]) -> list[str]:
        dests = [self.default_dest] if self.default_dest in self.transports else []
        for dest, _ in rows:
            if dest in self.transports and dest not in dests:
                dests.append(dest)
        return dests

    def _send(
        self,
        dest: str,
        rows: Sequence[SummaryRow],
        start: dt.datetime,
        end: dt.datetime,
        now: float,
    ) -> float | None:
        """Post one destination's summary if this process may; the time to look again if it
        is still owed (None when it is settled, here or by another process)."""
        key = claim_key(_DEST_CHARS.sub("_", dest)[:64], start)
        me = f"{socket.gethostname()}:{os.getpid()}"
        held = self.claims.get(key)
        if isinstance(held, dict) and held.get("state") in ("sent", "failed"):
            self._attempts.pop(key, None)
            return None
        lease = {"state": "sending", "by": me}
        if isinstance(held, dict) and held.get("by") == me:
            self.claims.put(key, lease, LEASE)
        elif not self.claims.claim(key, lease, LEASE):
            return now + LEASE / 2  # another process sends it; look again in case it dies
        payload = render_summary(summarize(rows, start, end), title=self.title)
        payload["metadata"] = {"event_type": EVENT_TYPE, "event_payload": {"alerts": len(rows)}}
        if self.redactor is not None:
            payload = seal(payload, self.redactor)
        transport = self.transports[dest]
        self.took_token(dest, now)
        self.stats.count("requests")
        result = transport.send(payload)
        if result.outcome is Outcome.OK:
            self._attempts.pop(key, None)
            self.claims.put(key, {"state": "sent", "by": me, "ts": result.ts}, KEEP)
            self.stats.count("summaries")
            return None
        attempts = self._attempts[key] = self._attempts.get(key, 0) + 1
        reason = " ".join(str(p) for p in (result.status, result.error) if p) or "no answer"
        if result.outcome is Outcome.PERMANENT and attempts >= MAX_PERMANENT:
            self._attempts.pop(key, None)
            self.claims.put(key, {"state": "failed", "by": me, "error": reason}, KEEP)
            self.diag.report(
                f"summary-failed:{dest}",
                f"gave up the periodic summary for {start:%Y-%m-%d %H:%M} ({reason}). "
                f"{result.remedy or ''}".rstrip(),
            )
            return None
        self.diag.report(
            f"summary-retry:{dest}",
            f"Slack did not take the periodic summary ({reason}); it is tried again",
        )
        delay = result.retry_after or backoff(attempts, self.rng)
        return now + max(1.0, delay)
