"""Decides what is sent when: pacing per destination, digests, dedup, priority, retries.

Two parts:

* :class:`Planner` is pure: given the pending alerts and a time, it says which message to send
  next and when to look again. It owns the token buckets, ``Retry-After`` blocks and dedup windows.
  Tests drive it with a fake clock.
* :class:`Sender` is the thread around it. One sender per alerts directory is elected with
  ``flock`` (the kernel drops the lock when its holder dies, even by ``kill -9``); the others stand
  by. The leader reads the outbox, renders, posts through the transports and records the outcome.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from slack_logging._alert import Alert
from slack_logging._catalog import Catalog
from slack_logging._coordination import Coordination, LocalCoordination
from slack_logging._diag import Diagnostics
from slack_logging._outbox import Outbox, PendingRef
from slack_logging._render import render_alert, render_digest
from slack_logging._transport import Outcome, SendResult, Transport

__all__ = ["Bucket", "Plan", "Planner", "Sender", "backoff"]

Kind = Literal["single", "digest", "repeat"]


def backoff(attempts: int, *, base: float = 0.5, cap: float = 60.0) -> float:
    """Delay before retry number ``attempts`` (1-based): exponential, capped, jittered ±50 %."""
    delay = min(cap, base * 2 ** max(0, attempts - 1))
    return float(delay * random.uniform(0.5, 1.5))  # noqa: S311 - jitter, not crypto


@dataclass
class Bucket:
    """A token bucket for one destination, plus Slack's own ``Retry-After`` block."""

    tokens: float
    updated: float
    blocked_until: float = 0.0


@dataclass(frozen=True)
class Plan:
    """One Slack message to send now: the alerts it covers and how to render them."""

    dest: str
    category: str
    refs: tuple[PendingRef, ...]
    kind: Kind

    @property
    def alert_ids(self) -> list[str]:
        return [r.alert_id for r in self.refs]


@dataclass
class Planner:
    """Pure scheduling state and rules; every method takes ``now`` (epoch seconds).

    Args:
        rate: messages per second per destination (Slack allows about 1).
        burst: messages a quiet destination may send at once before pacing starts.
        dedup_window: seconds after a message during which identical alerts are held back and
            then posted as one "repeated N times" follow-up.
        dedup_quiet: a held run of identical alerts is posted early once none has come for this
            many seconds, so a storm that stops is reported promptly.
        max_digest: the most alerts one message covers.
    """

    rate: float = 1.0
    burst: int = 3
    dedup_window: float = 60.0
    dedup_quiet: float = 10.0
    max_digest: int = 1000
    buckets: dict[str, Bucket] = field(default_factory=dict)
    windows: dict[tuple[str, str], float] = field(default_factory=dict)
    #: While set, held duplicates are released at once (flush and shutdown).
    release_all: bool = False

    def _bucket(self, dest: str, now: float) -> Bucket:
        b = self.buckets.get(dest)
        if b is None:
            b = self.buckets[dest] = Bucket(tokens=float(self.burst), updated=now)
        elif now > b.updated:
            b.tokens = min(float(self.burst), b.tokens + (now - b.updated) * self.rate)
            b.updated = now
        return b

    def ready_at(self, dest: str, now: float) -> float:
        """The earliest time ``dest`` may be sent to."""
        b = self._bucket(dest, now)
        token_at = now if b.tokens >= 1.0 else now + (1.0 - b.tokens) / self.rate
        return max(token_at, b.blocked_until)

    def _latest_by_key(self, pending: Iterable[PendingRef]) -> dict[tuple[str, str], float]:
        latest: dict[tuple[str, str], float] = {}
        for r in pending:
            k = (r.dest, r.dedup_key)
            if r.created > latest.get(k, 0.0):
                latest[k] = r.created
        return latest

    def _is_repeat(self, ref: PendingRef) -> bool:
        start = self.windows.get((ref.dest, ref.dedup_key))
        return start is not None and ref.created < start + self.dedup_window

    def release_at(self, ref: PendingRef, latest: Mapping[tuple[str, str], float]) -> float:
        """When ``ref`` may go out: its retry time, or later while it is a held duplicate."""
        start = self.windows.get((ref.dest, ref.dedup_key))
        if self.release_all or start is None or ref.created >= start + self.dedup_window:
            return ref.not_before
        quiet_end = latest.get((ref.dest, ref.dedup_key), ref.created) + self.dedup_quiet
        return max(ref.not_before, min(start + self.dedup_window, quiet_end))

    def plan(self, pending: Sequence[PendingRef], now: float) -> Plan | None:
        """The message to send now, or ``None`` when nothing may go yet."""
        latest = self._latest_by_key(pending)
        by_dest: dict[str, list[PendingRef]] = defaultdict(list)
        for r in pending:
            by_dest[r.dest].append(r)
        best_plan: Plan | None = None
        best_rank = (-1, 0.0)
        for dest, refs in by_dest.items():
            if self.ready_at(dest, now) > now:
                continue
            eligible = [r for r in refs if self.release_at(r, latest) <= now]
            if not eligible:
                continue
            top = max(eligible, key=lambda r: (r.rank, -r.created))
            rank = (top.rank, -top.created)
            if best_plan is not None and rank <= best_rank:
                continue
            group = sorted(
                (r for r in eligible if r.category == top.category), key=lambda r: r.created
            )[: self.max_digest]
            keys = {r.dedup_key for r in group}
            kind: Kind
            if len(keys) == 1 and self._is_repeat(group[0]):
                kind = "repeat"
            elif len(group) == 1:
                kind = "single"
            else:
                kind = "digest"
            best_plan, best_rank = Plan(dest, top.category, tuple(group), kind), rank
        return best_plan

    def wake_at(self, pending: Sequence[PendingRef], now: float) -> float | None:
        """The next time :meth:`plan` could return something, if nothing new arrives."""
        latest = self._latest_by_key(pending)
        soonest: float | None = None
        ready: dict[str, float] = {}
        for r in pending:
            if r.dest not in ready:
                ready[r.dest] = self.ready_at(r.dest, now)
            t = max(ready[r.dest], self.release_at(r, latest))
            if soonest is None or t < soonest:
                soonest = t
        return soonest

    def defer(self, dest: str, now: float, until: float) -> None:
        """Send nothing to ``dest`` before ``until`` (the shared budget or a gathering wait)."""
        b = self._bucket(dest, now)
        b.blocked_until = max(b.blocked_until, until)

    def took_token(self, dest: str, now: float) -> None:
        b = self._bucket(dest, now)
        b.tokens -= 1.0

    def delivered(self, plan: Plan, now: float) -> None:
        """Open (or restart) the dedup window of every kind of alert the message covered."""
        for key in {r.dedup_key for r in plan.refs}:
            self.windows[(plan.dest, key)] = now

    def rate_limited(self, dest: str, retry_after: float, now: float) -> None:
        """Slack said wait: no request to ``dest`` before ``retry_after`` seconds pass."""
        b = self._bucket(dest, now)
        b.tokens = min(b.tokens, 0.0)
        b.blocked_until = max(b.blocked_until, now + retry_after)

    def forget_windows(self, now: float) -> None:
        horizon = self.dedup_window + self.dedup_quiet
        self.windows = {k: t for k, t in self.windows.items() if now - t < horizon}


@dataclass(frozen=True)
class SenderConfig:
    """The sender's knobs, resolved from :class:`~slack_logging._config.Settings`."""

    lock_path: Path | None
    poll_interval: float = 0.1
    lead_interval: float = 0.5
    max_permanent_attempts: int = 3
    thread_ttl: float = 24 * 3600.0
    label: str = "alerts directory"
    retention_delivered: float = 7 * 86400.0
    retention_dead: float = 30 * 86400.0


class Sender:
    """The delivery thread for one handler. Started lazily, restartable after fork.

    Only the process holding the directory's sender lock sends; the others store alerts and
    stand by to take over.
    """

    def __init__(
        self,
        outbox: Outbox,
        transports: Mapping[str, Transport],
        default_dest: str,
        catalog: Catalog,
        planner: Planner,
        config: SenderConfig,
        diag: Diagnostics,
        *,
        clock: Callable[[], float] = time.time,
        on_thread_start: Callable[[], None] | None = None,
        on_idle: Callable[[], None] | None = None,
        coord: Coordination | None = None,
    ) -> None:
        self.outbox = outbox
        self.transports = dict(transports)
        self.default_dest = default_dest
        self.catalog = catalog
        self.planner = planner
        self.config = config
        self.diag = diag
        self.clock = clock
        self.coord: Coordination = coord or LocalCoordination(outbox)
        self._on_thread_start = on_thread_start
        self._on_idle = on_idle
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._lock_fd: int | None = None
        self._pending: dict[str, PendingRef] = {}
        self._awaiting: dict[str, tuple[list[PendingRef], float]] = {}
        self._unmarked: list[tuple[list[str], str]] = []
        self._next_look = 0.0
        self._last_seq = 0
        self._last_prune = 0.0
        self.leader = False
        self.stats: dict[str, int] = defaultdict(int)
        self.deadline: float | None = None  # set at shutdown: give up sending after this
        #: Called when the thread ends, if set (close() could not wait for a hung request).
        self.on_exit: Callable[[], None] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="slack-logging-sender", daemon=True)
        self._thread.start()

    def notify(self) -> None:
        """New alerts were stored by this process: look now rather than at the next poll."""
        self._wake.set()

    def stop(self, timeout: float) -> bool:
        """Ask the thread to end and wait up to ``timeout`` s. True if it ended."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            ended = not self._thread.is_alive()
        else:
            ended = True
        if ended:
            self._release_lead()
        return ended

    def reset_after_fork(self) -> None:
        """In a forked child: no thread, no lock, no cached state from the parent."""
        self._thread = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._changed = threading.Condition()
        if self._lock_fd is not None:
            # Closing our copy does not release the parent's flock (shared open file description).
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = None
        self.leader = False
        self._unmarked = []
        self._pending = {}
        self._awaiting = {}
        self._next_look = 0.0
        self._last_seq = 0

    # -- leadership ------------------------------------------------------------------------

    def _try_lead(self) -> bool:
        if self.config.lock_path is None:
            self.leader = True
            return True
        try:
            fd = os.open(self.config.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._lock_fd = fd
        self.leader = True
        self._load_state()
        return True

    def _release_lead(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = None
        self.leader = False

    def _load_state(self) -> None:
        """A new leader takes over the rate budget and dedup windows where the last one left."""
        now = self.clock()
        for key, value in self.outbox.get_states("bucket:").items():
            dest = key.removeprefix("bucket:")
            self.planner.buckets[dest] = Bucket(
                tokens=float(value["tokens"]),
                updated=float(value["updated"]),
                blocked_until=float(value["blocked_until"]),
            )
        for key, value in self.outbox.get_states("dedup:").items():
            _, dest, dkey = key.split(":", 2)
            self.planner.windows[(dest, dkey)] = float(value)
        self.planner.forget_windows(now)
        self._pending = {}
        self._awaiting = {}
        self._next_look = 0.0
        self._last_seq = 0

    def _save_state(self, plan: Plan) -> None:
        b = self.planner.buckets.get(plan.dest)
        if b is not None:
            self.outbox.set_state(
                f"bucket:{plan.dest}",
                {"tokens": b.tokens, "updated": b.updated, "blocked_until": b.blocked_until},
                ttl=3600.0,
            )
        ttl = self.planner.dedup_window + self.planner.dedup_quiet
        for key in {r.dedup_key for r in plan.refs}:
            start = self.planner.windows.get((plan.dest, key))
            if start is not None:
                self.outbox.set_state(f"dedup:{plan.dest}:{key}", start, ttl=ttl)

    # -- the loop ----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            # Even when stop() gave up waiting (a hung request): never keep the directory's
            # sender lock past the thread's life, or no process could lead again.
            self._release_lead()
            if self.on_exit is not None:
                self.on_exit()

    def _loop(self) -> None:
        if self._on_thread_start is not None:
            self._on_thread_start()
        while not self._stop.is_set() or self._draining():
            try:
                if not self.leader and not self._try_lead():
                    if self._stop.is_set():
                        return
                    if self._on_idle is not None:
                        self._on_idle()
                    self._wake.wait(self.config.lead_interval)
                    self._wake.clear()
                    continue
                if not self.step():
                    now = self.clock()
                    wake = self.planner.wake_at(list(self._pending.values()), now)
                    delay = self.config.poll_interval
                    if wake is not None:
                        delay = min(delay, max(0.0, wake - now))
                    if self._stop.is_set() and (
                        self.deadline is None or wake is None or wake > self.deadline
                    ):
                        return
                    self._wake.wait(delay)
                    self._wake.clear()
            except Exception as exc:  # the loop must survive anything; the outbox keeps the alerts
                self.stats["errors"] += 1
                self.diag.report(
                    f"loop:{type(exc).__name__}",
                    f"delivery loop error ({type(exc).__name__}: {exc}); alerts stay in the outbox",
                )
                self._wake.wait(1.0)
                self._wake.clear()

    def _draining(self) -> bool:
        """After stop(): keep sending what is due until the shutdown deadline."""
        return self.deadline is not None and self.leader and self.clock() < self.deadline

    def refresh(self) -> bool:
        """Pick up alerts stored since the last look (by any process on the directory)."""
        found = self.outbox.pending_refs(self._last_seq)
        for ref in found:
            if ref.dest not in self.transports:
                ref.dest = self.default_dest
            self._pending[ref.alert_id] = ref
            self._last_seq = max(self._last_seq, ref.seq)
        return bool(found)

    def step(self) -> bool:
        """Send at most one message. True if one was attempted."""
        if self._on_idle is not None:
            self._on_idle()
        self._retry_unmarked()
        changed = self.refresh()
        now = self.clock()
        if now - self._last_prune > 3600.0:
            self._last_prune = now
            self.outbox.prune(self.config.retention_delivered, self.config.retention_dead)
            self.planner.forget_windows(now)
        if self.coord.shared:
            changed = self._check_awaiting(now) or changed
        # Planning is O(pending): during a long outage with a big backlog, skip it until
        # something arrives or the time it said to look again has come.
        if not changed and not self.planner.release_all and now < self._next_look:
            return False
        pending = list(self._pending.values())
        if self.coord.shared:
            self.coord.sync(self.planner, pending, now)
        plan = self.planner.plan(pending, now)
        if plan is None:
            wake = self.planner.wake_at(pending, now)
            self._next_look = wake if wake is not None else now + 3600.0
            return False
        self._next_look = 0.0
        self.send(plan, now)
        return True

    def _retry_unmarked(self) -> None:
        """Messages Slack took whose alerts could not be marked delivered (a locked disk):
        mark them now rather than send them again."""
        while self._unmarked:
            ids, message = self._unmarked[0]
            try:
                self.outbox.mark_delivered(ids, message)
            except Exception:
                return
            self._unmarked.pop(0)

    def send(self, plan: Plan, now: float) -> SendResult | None:
        """Post one planned message and record the outcome; None if it was not sent now."""
        transport = self.transports.get(plan.dest) or self.transports[self.default_dest]
        try:
            bodies = self.outbox.bodies(plan.alert_ids)
        except Exception as exc:  # a row this version cannot read: never block the others
            self._unbuildable(plan, exc)
            return None
        alerts = [bodies[i] for i in plan.alert_ids if i in bodies]
        admission = self.coord.admit(plan, alerts, now)
        if admission.wait > 0:
            self.planner.defer(plan.dest, now, now + admission.wait)
            return None
        if admission.await_key is not None:
            self._await(plan, admission.await_key, now)
            return None
        alerts.extend(admission.remote)
        try:
            payload = self._payload(plan, alerts)
        except Exception as exc:
            self._unbuildable(plan, exc)
            return None
        thread_key = self._thread_key(alerts, transport)
        if thread_key is not None:
            ts = self.coord.thread_ts(plan.dest, thread_key)
            if ts:
                payload["thread_ts"] = ts
                if any(a.severity == "critical" for a in alerts):
                    payload["reply_broadcast"] = True
        self.planner.took_token(plan.dest, now)
        self.stats["requests"] += 1
        result = transport.send(payload)
        after = self.clock()
        if result.outcome is Outcome.OK:
            self._delivered(plan, result, after, thread_key)
            self.coord.delivered(plan, admission, result.ts or "sent")
        elif result.outcome is Outcome.RATE_LIMITED:
            self.stats["rate_limited"] += 1
            retry_after = result.retry_after or 30.0
            self.planner.rate_limited(plan.dest, retry_after, after)
            self.coord.rate_limited(plan.dest, retry_after)
            self._save_state(plan)
        elif result.outcome is Outcome.RETRY:
            self._retry(plan, result, after)
        else:
            self._permanent(plan, result, after)
        with self._changed:
            self._changed.notify_all()
        return result

    def _payload(self, plan: Plan, alerts: Sequence[Alert]) -> dict[str, Any]:
        category = self.catalog.lookup(plan.category)
        if not category.known and alerts:
            category = self.catalog.lookup(plan.category, _LEVELS.get(alerts[0].level, 40))
        if plan.kind == "single" and len(alerts) == 1:
            return render_alert(alerts[0], category)
        return render_digest(
            alerts, category, repeat=plan.kind == "repeat", window=self.planner.dedup_window
        )

    @staticmethod
    def _thread_key(alerts: Sequence[Alert], transport: Transport) -> str | None:
        if not transport.supports_threads or not alerts:
            return None
        keys = {a.thread_key for a in alerts}
        if len(keys) != 1:
            return None
        return keys.pop()

    def _delivered(
        self, plan: Plan, result: SendResult, now: float, thread_key: str | None
    ) -> None:
        for r in plan.refs:
            self._pending.pop(r.alert_id, None)
        message = result.ts or f"sent:{uuid.uuid4().hex[:12]}"
        try:
            self.outbox.mark_delivered(plan.alert_ids, message)
        except Exception:
            self._unmarked.append((plan.alert_ids, message))
        self.planner.delivered(plan, now)
        self._save_state(plan)
        if thread_key is not None and result.ts:
            self.coord.remember_thread(plan.dest, thread_key, result.ts, self.config.thread_ttl)
        self.stats["messages"] += 1
        self.stats["delivered"] += len(plan.refs)

    def _retry(self, plan: Plan, result: SendResult, now: float) -> None:
        self.stats["retries"] += 1
        attempts = max(r.attempts for r in plan.refs) + 1
        not_before = now + backoff(attempts)
        self.outbox.reschedule(plan.alert_ids, not_before, _describe(result))
        for r in plan.refs:
            r.attempts += 1
            r.not_before = not_before
        self.diag.report(
            f"retry:{plan.dest}",
            f"Slack did not take an alert ({_describe(result)}); {len(self._pending)} alert(s) "
            f"wait in the {self.config.label} and are retried with backoff. "
            f"{result.remedy or ''}".rstrip(),
        )

    def _permanent(self, plan: Plan, result: SendResult, now: float) -> None:
        # Blocked by the pytest plugin: dead at once, so no later process posts a test's alert.
        blocked = result.error == "blocked_by_pytest"
        limit = 1 if blocked else self.config.max_permanent_attempts
        dead = [r.alert_id for r in plan.refs if r.attempts + 1 >= limit]
        later = [r for r in plan.refs if r.attempts + 1 < limit]
        reason = _describe(result)
        if dead:
            self.outbox.mark_dead(dead, reason)
            self.stats["dead"] += len(dead)
            for i in dead:
                self._pending.pop(i, None)
        if later:
            not_before = now + backoff(max(r.attempts for r in later) + 1)
            self.outbox.reschedule([r.alert_id for r in later], not_before, reason)
            for r in later:
                r.attempts += 1
                r.not_before = not_before
        self.diag.report(
            f"permanent:{plan.dest}:{result.status}:{result.error}",
            f"Slack rejected an alert: {reason}. {result.remedy or ''} Rejected alerts are kept "
            f"as dead letters in the {self.config.label}; "
            "run `slack-logging replay` after the fix.",
            once=True,
        )

    def _await(self, plan: Plan, key: str, now: float) -> None:
        """Another host's message will cover these alerts: wait for it to be announced."""
        deadline = now + self._await_grace()
        refs = [self._pending.pop(r.alert_id) for r in plan.refs if r.alert_id in self._pending]
        held, _ = self._awaiting.get(key, ([], deadline))
        self._awaiting[key] = (held + refs, deadline)

    def _check_awaiting(self, now: float) -> bool:
        """Mark alerts delivered once the covering message is announced. If the host that took
        them stops renewing its lease (it died), take them back and send them (fail open).
        True if anything changed."""
        if not self._awaiting:
            return False
        done = self.coord.announced(list(self._awaiting))
        changed = False
        for key in list(self._awaiting):
            refs, deadline = self._awaiting[key]
            ts = done.get(key)
            if ts:
                self.outbox.mark_delivered([r.alert_id for r in refs], f"remote:{ts}")
                self.stats["delivered_elsewhere"] += len(refs)
                del self._awaiting[key]
                changed = True
            elif key in done:  # not sent yet, but its sender is alive and still trying
                self._awaiting[key] = (refs, max(deadline, now + self._await_grace()))
            elif now > deadline or now > deadline - self._await_grace() + NO_LEASE_GRACE:
                # Past the deadline, or nobody took the round (no lease) well after the opener's
                # gather: the window was lost (a flushed Redis); send them here.
                for r in refs:
                    self._pending[r.alert_id] = r
                del self._awaiting[key]
                changed = True
        if changed:
            with self._changed:
                self._changed.notify_all()
        return changed

    def _await_grace(self) -> float:
        return self.planner.dedup_window + self.planner.dedup_quiet + 30.0

    def _unbuildable(self, plan: Plan, exc: Exception) -> None:
        """A message that cannot be built (a corrupt or incompatible row) is a dead letter."""
        reason = f"could not build the message ({type(exc).__name__}: {exc})"[:300]
        self.outbox.mark_dead(plan.alert_ids, reason)
        for r in plan.refs:
            self._pending.pop(r.alert_id, None)
        self.stats["dead"] += len(plan.refs)
        self.diag.report(f"unbuildable:{type(exc).__name__}", f"{reason}; kept as dead letters")

    # -- waiting -------------------------------------------------------------------------------

    def wait_changed(self, timeout: float) -> None:
        with self._changed:
            self._changed.wait(timeout)


#: How long an awaited round may show neither a message nor a live sender before we take it back.
NO_LEASE_GRACE = 15.0

_LEVELS = {"CRITICAL": 50, "ERROR": 40, "WARNING": 30, "INFO": 20, "DEBUG": 10}


def _describe(result: SendResult) -> str:
    parts = []
    if result.status is not None:
        parts.append(f"HTTP {result.status}")
    if result.error:
        parts.append(result.error)
    return " ".join(parts) or result.outcome.value
