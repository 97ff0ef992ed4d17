"""The sender thread: reads the outbox, asks the planner what to send, renders, posts, records.

Only the process holding the directory's :class:`~slack_logging._leader.Leadership` sends; the
others stand by (doing the runtime's housekeeping) and take over when the leader goes. Waits use
the monotonic clock; the planner runs on the wall clock (alert times are wall-clock, shared by
processes), and a step of that clock is detected against the monotonic one and shifted out.

About 800 lines: each outcome of a request (delivered, retry, rate limited, rejected, not
buildable) is a short method here because it changes the outbox, the planner and the ledger
together; so are the two requests that follow a message (a live message's ``chat.update`` and a
recovery notice), whose state and choices live in :mod:`~slack_logging._followups`.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from slack_logging._alert import Alert
from slack_logging._catalog import Catalog, Category
from slack_logging._coordination import Admission, Coordination
from slack_logging._diag import Diagnostics
from slack_logging._followups import (
    HEADLINE_MAX,
    MAX_NOTICE_ATTEMPTS,
    MAX_UPDATE_FAILURES,
    Followups,
    LiveEntry,
    live_key,
)
from slack_logging._leader import Leadership
from slack_logging._ledger import Ledger
from slack_logging._live import Action, LiveMessage
from slack_logging._outbox import Outbox, PendingRef
from slack_logging._planner import BACKOFF_CAP, Plan, Planner, backoff
from slack_logging._redact import Redactor, seal
from slack_logging._render import render_alert, render_digest, render_live, render_recovery
from slack_logging._summary_job import SummaryJob
from slack_logging._transport import Outcome, SendResult, Transport

__all__ = ["Sender", "SenderConfig"]

#: A wall-clock jump bigger than this (against the monotonic clock) counts as a step.
CLOCK_STEP = 2.0
#: A leader whose outbox has refused writes this long lets go of the sender lock for
#: ``YIELD_FOR`` seconds, at most every ``YIELD_EVERY``: a peer whose storage works can then
#: lead and send what the peers store in the file, which a degraded leader cannot see.
YIELD_AFTER = 5.0
YIELD_FOR = 2.0
YIELD_EVERY = 30.0


@dataclass(frozen=True)
class SenderConfig:
    """The sender's knobs, resolved from :class:`~slack_logging._config.Settings`."""

    poll_interval: float = 0.1
    lead_interval: float = 0.5
    max_permanent_attempts: int = 3
    thread_ttl: float = 24 * 3600.0
    label: str = "alerts directory"
    retention_delivered: float = 7 * 86400.0
    retention_dead: float = 30 * 86400.0
    live_updates: bool = True
    live_updates_per_minute: float = 40.0
    recovery_quiet_period: float = 60.0


class Sender:
    """The delivery thread of one runtime. Started by the runtime, paused around ``fork``."""

    def __init__(
        self,
        outbox: Outbox,
        transports: Mapping[str, Transport],
        default_dest: str,
        catalog: Catalog,
        planner: Planner,
        config: SenderConfig,
        diag: Diagnostics,
        coord: Coordination,
        leadership: Leadership,
        *,
        ledger: Ledger | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        housekeeping: Callable[[], None] | None = None,
        on_thread: Callable[[], None] | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        self.outbox = outbox
        # The last pass over every payload before a transport sees it (see _redact.seal).
        self.redactor = redactor
        self.transports = dict(transports)
        self.default_dest = default_dest
        self.catalog = catalog
        self.planner = planner
        self.config = config
        self.diag = diag
        self.coord = coord
        self.leadership = leadership
        self.stats = ledger or Ledger()
        self.clock = clock
        self.monotonic = monotonic
        self.rng = rng or random.Random()  # noqa: S311 - retry jitter, not crypto
        self._housekeeping = housekeeping
        self._on_thread = on_thread
        self._state_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._pending: dict[str, PendingRef] = {}
        self._unmarked: list[tuple[list[str], str]] = []
        self._next_look = 0.0
        self._last_seq = 0
        self._last_prune = float("-inf")
        self._clock_mark: tuple[float, float] | None = None
        #: Monotonic time the next message is due (None: nothing pending).
        self._due: float | None = None
        #: Monotonic time before which this process does not try to lead (see hand_off).
        self._lead_after = float("-inf")
        #: Set by a step that found every destination out of budget: when one has budget.
        self._paced: float | None = None
        #: Since when (monotonic) the outbox refuses writes while we lead; the last yield.
        self._degraded_since: float | None = None
        self._yielded_at = float("-inf")
        #: Monotonic time after which a stopping sender gives up (set by :meth:`stop`).
        self._deadline: float | None = None
        #: While set, held duplicates go at once (flush and shutdown).
        self.release = threading.Event()
        #: Called when the thread ends, if set (stop() could not wait for a hung request).
        self.on_exit: Callable[[], None] | None = None
        #: The periodic summary (``summary_at``), run by whichever process leads.
        self.summary: SummaryJob | None = None
        self.followups = Followups(
            outbox,
            diag,
            quiet_period=config.recovery_quiet_period,
            per_minute=config.live_updates_per_minute,
            shared=coord if coord.shared else None,
        )
        #: Turns of the loop that ended with no request in flight and nothing due (see
        #: Runtime.flush: a fork child may ``os._exit`` right after flush returns).
        self.quiet_turns = 0

    # -- lifecycle (the runtime calls these) --------------------------------------------------

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def leader(self) -> bool:
        return self.leadership.held

    def start(self) -> None:
        """Start the thread, or keep the one that is still running (a stop it has not acted on
        yet is cancelled: see :meth:`_should_exit`)."""
        with self._state_lock:
            self._stop.clear()
            self._deadline = None
            if self.alive:
                return
            self._thread = threading.Thread(
                target=self._run, name="slack-logging-sender", daemon=True
            )
            self._thread.start()

    def notify(self) -> None:
        """New alerts were stored by this process: look now rather than at the next poll."""
        self._wake.set()

    def stop(self, timeout: float, *, drain_until: float | None = None) -> bool:
        """Ask the thread to end and wait up to ``timeout`` s. True if it ended.

        ``drain_until`` (monotonic): keep sending what is due until then (shutdown).
        """
        with self._state_lock:
            self._deadline = drain_until
            self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(max(0.0, timeout))
        ended = not self.alive
        if ended:
            self.leadership.release()
        return ended

    def reset_after_fork(self) -> None:
        """In a forked child: no thread, no lock, no cached state from the parent."""
        self._thread = None
        self._state_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self.release = threading.Event()
        self._deadline = None
        self._lead_after = float("-inf")
        self.on_exit = None
        self.leadership.reset_after_fork()
        if self.summary is not None:
            self.summary.reset_after_fork()
        self._unmarked = []
        self._forget()
        self.followups.forget()
        self.stats = Ledger()

    def _forget(self) -> None:
        self._pending = {}
        self._next_look = 0.0
        self._last_seq = 0
        self._clock_mark = None

    # -- leadership --------------------------------------------------------------------------

    def hand_off(self, until: float) -> None:
        """Stay off the sender lock until the monotonic ``until`` (a process that just forked
        leaves sending to its children, and leads again only if none does)."""
        self._lead_after = until

    def try_lead(self) -> bool:
        if self.leadership.held:
            return True
        if self.monotonic() < self._lead_after or not self.leadership.try_acquire():
            return False
        self._load_state()
        return True

    def step_down(self) -> None:
        self.leadership.release()

    def _load_state(self) -> None:
        """A new leader takes over the rate budget and dedup windows where the last one left,
        clamped by the planner (another process may have run on another clock)."""
        now = self._now()
        buckets = {
            k.removeprefix("bucket:"): v for k, v in self.outbox.get_states("bucket:").items()
        }
        windows = []
        for key, value in self.outbox.get_states("dedup:").items():
            # The destination id has a colon of its own ("chat:C0123"); the dedup key is hex.
            dest, _, dkey = key.removeprefix("dedup:").rpartition(":")
            windows.append([dest, dkey, value])
        self.planner.load({"buckets": buckets, "windows": windows}, now)
        self._forget()
        self.followups.load()

    def _save_state(self, plan: Plan) -> None:
        state = self.planner.to_dict()
        bucket = state["buckets"].get(plan.dest)
        if bucket is not None:
            self.outbox.set_state(f"bucket:{plan.dest}", bucket, ttl=3600.0)
        ttl = self.planner.dedup_window + self.planner.dedup_quiet
        for key in plan.dedup_keys:
            start = self.planner.windows.get((plan.dest, key))
            if start is not None:
                self.outbox.set_state(f"dedup:{plan.dest}:{key}", start, ttl=ttl)

    # -- the loop ------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            if self._on_thread is not None:
                self._on_thread()
            while True:
                self._cycle()
                if self._should_exit():
                    return
        finally:
            # Even when stop() gave up waiting (a hung request): never keep the directory's
            # sender lock past the thread's life, or no process could lead again.
            self.leadership.release()
            if self.on_exit is not None:
                self.on_exit()

    def _should_exit(self) -> bool:
        """Decided under the state lock, so a start() racing with a stop never finds a thread
        that is about to end and believes it runs."""
        with self._state_lock:
            if not self._stop.is_set():
                return False
            return not self._draining()

    def _draining(self) -> bool:
        """After stop(drain_until=...): keep sending what is due until then."""
        deadline, due = self._deadline, self._due
        return (
            deadline is not None
            and due is not None
            and self.leadership.held
            and self.monotonic() < deadline
            and due <= deadline
        )

    def _cycle(self) -> None:
        """One turn of the loop: stand by, or send one message, or sleep until one is due.
        Nothing escapes: the outbox keeps the alerts, and a user object's ``__str__`` that
        raises even ``SystemExit`` must not end delivery."""
        try:
            if not self.try_lead():
                self._idle()
                if self.step_volatile():
                    return
                self._quiet()
                if not self._stop.is_set():
                    self._sleep(self.config.lead_interval)
                return
            self.leadership.beat()
            if not self.leadership.still_held():
                self.diag.report(
                    "leader",
                    "the sender lock file was replaced (another process took over after this "
                    "one was stopped, or the alerts directory was moved); sending goes on from "
                    "whoever holds it now",
                )
                return
            if self._should_yield():
                self.step_down()
                self.hand_off(self.monotonic() + YIELD_FOR)
                self.diag.report(
                    "leader-yield",
                    "this process's outbox refuses writes, so it cannot see what other "
                    "processes store: it leaves sending to one whose storage works (retried "
                    f"every {YIELD_EVERY:g} s; it leads again if none takes over)",
                )
                return
            if self.step():
                self._due = self.monotonic()
                return
            self._quiet()
            now = self._now()
            wake = self._wake_at(now)
            delay = self.config.poll_interval
            self._due = None
            if wake is not None:
                delay = min(delay, max(0.0, wake - now))
                self._due = self.monotonic() + max(0.0, wake - now)
            if not self._stop.is_set():
                self._sleep(delay)
            elif self._draining() and wake is not None:
                self._sleep(min(delay, max(0.0, (self._deadline or 0.0) - self.monotonic())))
        except BaseException as exc:
            self.stats.count("errors")
            self.diag.report(
                f"loop:{type(exc).__name__}",
                f"delivery loop error ({type(exc).__name__}: {exc}); alerts stay in the outbox",
            )
            if not self._stop.is_set():
                self._sleep(1.0)

    def _wake_at(self, now: float) -> float | None:
        """When the next message or live edit may be due, if nothing new arrives."""
        wake = self._paced
        if wake is None:
            wake = self.planner.wake_at(
                list(self._pending.values()), now, release=self.release.is_set()
            )
        later = self.followups.wake(now)
        if later is not None and (wake is None or later < wake):
            wake = later
        return wake

    def _should_yield(self) -> bool:
        if self.outbox.fault is None or self._stop.is_set():
            self._degraded_since = None
            return False
        now = self.monotonic()
        if self._degraded_since is None:
            self._degraded_since = now
        if now - self._degraded_since < YIELD_AFTER or now - self._yielded_at < YIELD_EVERY:
            return False
        self._yielded_at = now
        return True

    def _quiet(self) -> None:
        self.quiet_turns += 1
        self._announce()

    def _sleep(self, seconds: float) -> None:
        self._wake.wait(seconds)
        self._wake.clear()

    def _idle(self) -> None:
        if self._housekeeping is not None:
            self._housekeeping()

    def _now(self) -> float:
        """Wall-clock now; a step since the last call (NTP, a VM resumed) is shifted out of the
        planner's state and the pending alerts' retry times."""
        wall, mono = self.clock(), self.monotonic()
        mark = self._clock_mark
        self._clock_mark = (wall, mono)
        if mark is not None:
            step = wall - (mark[0] + (mono - mark[1]))
            if abs(step) > CLOCK_STEP:
                self.planner.shift(step)
                for r in self._pending.values():
                    r.created += step
                    if r.not_before:
                        r.not_before += step
                self._next_look = 0.0
                self.diag.report(
                    "clock", f"the wall clock stepped by {step:+.0f} s; pacing follows"
                )
        return wall

    def refresh(self, now: float) -> bool:
        """Pick up alerts stored since the last look (by any process on the directory)."""
        found = self.outbox.pending_refs(self._last_seq)
        # A retry time saved under another clock (or by a process whose clock was ahead) is
        # never believed further out than the longest backoff.
        latest = now + BACKOFF_CAP * 1.5
        summarized: list[str] = []
        for ref in found:
            self._last_seq = max(self._last_seq, ref.seq)
            known = self._pending.get(ref.alert_id)
            if known is not None:
                # Renumbered as storage recovered: its retry time stays ours (shifted with any
                # clock step since), not the one saved under the old clock.
                known.seq = ref.seq
                continue
            if self._summary_only(ref.category):
                summarized.append(ref.alert_id)
                continue
            if ref.dest not in self.transports:
                ref.dest = self.default_dest
            ref.not_before = min(ref.not_before, latest)
            self._pending[ref.alert_id] = ref
        if summarized:
            self._summarized(summarized)
        return bool(found)

    def _summary_only(self, key: str) -> bool:
        found = self.catalog.get(key)
        return found is not None and found.delivery == "summary" and self.summary is not None

    def _summarized(self, alert_ids: list[str]) -> None:
        """``delivery: summary`` alerts are done once stored: the periodic summary reads them
        from the outbox whatever their state, so nothing waits on them (flush, exit)."""
        self.stats.count("summary_only", len(alert_ids))
        self._mark_delivered(alert_ids, "summary")
        self._announce()

    def pending_count(self) -> int:
        return len(self._pending)

    def live_pending(self) -> int:
        """Live messages that show less than they count (their edit is owed): flush waits for
        them as for pending alerts, so Slack shows every alert once it returns."""
        return sum(
            1
            for e in list(self.followups.live.values())
            if e.live.pending or e.unshown_from is not None
        )

    def step_volatile(self) -> bool:
        """Not the leader, yet the outbox holds some of our alerts only in memory (its file
        refused them): the leader cannot see those, so send them from here. True if a message
        was attempted."""
        if not self.outbox.volatile_ids():
            if self._pending:
                self._forget()  # stored in the file again: the leader's to send
            return False
        return self.step(volatile_only=True)

    def step(self, *, volatile_only: bool = False) -> bool:
        """Send at most one message (only of alerts held in memory alone, if ``volatile_only``).
        True if one was attempted."""
        self._idle()
        self._retry_unmarked()
        self._paced = None
        now = self._now()
        if self.summary is not None and not volatile_only:  # the leader's job
            self.summary.tick(now)
        changed = self.refresh(now)
        if volatile_only:
            # Asked after the refresh: an alert stored between an earlier look and the refresh
            # is both picked up and kept (the refresh moved past it, so it is not seen again).
            volatile = self.outbox.volatile_ids()
            for alert_id in [a for a in self._pending if a not in volatile]:
                del self._pending[alert_id]
        if now - self._last_prune > 3600.0:
            self._last_prune = now
            self.outbox.prune(self.config.retention_delivered, self.config.retention_dead)
            self.planner.forget_windows(now)
        if self.coord.shared:
            changed = self._settle(now) or changed
        release = self.release.is_set()
        if not volatile_only and self._followup_step(now, release):  # edits are the leader's
            return True
        # Planning is O(pending): during a long outage with a big backlog, skip it until
        # something arrives or the time it said to look again has come.
        if not changed and not release and now < self._next_look:
            return False
        if not self.coord.shared:
            # A burst waits mostly for the rate budget: then no plan can come out before the
            # budget refills, and planning over thousands of alerts each wake-up is wasted.
            paced = self.planner.paced_until({r.dest for r in self._pending.values()}, now)
            if paced is not None:
                self._next_look = self._paced = paced
                return False
        pending = list(self._pending.values())
        if self.coord.shared:
            self.planner.learn_windows(self.coord.sync(pending, now), now)
        plan = self.planner.plan(pending, now, release=release)
        if plan is None:
            wake = self.planner.wake_at(pending, now, release=release)
            self._next_look = wake if wake is not None else now + 3600.0
            return False
        self._next_look = 0.0
        self.send(plan, now)
        return True

    def _mark_delivered(self, ids: list[str], message: str) -> None:
        """Done with them: a disk that refuses the mark now gets it again later (never a resend)."""
        try:
            self.outbox.mark_delivered(ids, message)
        except Exception:
            self._unmarked.append((ids, message))

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
            for r in plan.refs:
                self._pending.pop(r.alert_id, None)
            self.coord.hold(list(plan.refs), admission.await_key, now)
            return None
        alerts.extend(admission.remote)
        live = self._live_mode(plan, transport)
        if live and self._absorb(plan, alerts, admission, now):
            return SendResult(Outcome.OK)
        try:
            # A live message replaces follow-ups: a run it no longer takes starts a new message.
            payload = self._payload(plan, alerts, repeat=plan.kind == "repeat" and not live)
        except Exception as exc:
            self._unbuildable(plan, exc)
            return None
        thread_key = self._place_in_thread(payload, plan.dest, alerts, transport)
        self.planner.took_token(plan.dest, now)
        self.stats.count("requests")
        result = transport.send(payload)
        after = self._now()
        if result.outcome is Outcome.OK:
            self._delivered(plan, result, after, thread_key)
            self.coord.delivered(plan, admission, result.ts or "sent")
            if live:
                self._start_live(plan, alerts, result, transport, after, payload.get("thread_ts"))
            self._feed_failures(plan.dest, alerts)
        elif result.outcome is Outcome.RATE_LIMITED:
            self.stats.count("rate_limited")
            retry_after = result.retry_after or 30.0
            self.planner.rate_limited(plan.dest, retry_after, after)
            self.coord.rate_limited(plan.dest, retry_after)
            self._save_state(plan)
        elif result.outcome is Outcome.RETRY:
            self._retry(plan, result, after)
        else:
            self._permanent(plan, result, after)
        self._announce()
        return result

    def _place_in_thread(
        self, payload: dict[str, Any], dest: str, alerts: Sequence[Alert], transport: Transport
    ) -> str | None:
        """Put the message in its Slack thread, if its alerts have one open; the thread key."""
        thread_key = _thread_key(alerts, transport)
        if thread_key is not None:
            ts = self.coord.thread_ts(dest, thread_key)
            if ts:
                payload["thread_ts"] = ts
                if any(a.severity == "critical" for a in alerts):
                    payload["reply_broadcast"] = True
        return thread_key

    def category_for(self, alerts: Sequence[Alert], key: str) -> Category:
        """The category resolved at ingest and stored with the alerts (never looked up anew)."""
        if not alerts:
            return self.catalog.lookup(key)
        a = alerts[0]
        return self.catalog.stored(key, a.title, a.severity, a.known)

    def _payload(self, plan: Plan, alerts: Sequence[Alert], *, repeat: bool) -> dict[str, Any]:
        category = self.category_for(alerts, plan.category)
        redact = None if self.redactor is None else self.redactor.text
        if plan.kind == "single" and len(alerts) == 1:
            payload = render_alert(alerts[0], category, redact=redact)
        else:
            payload = render_digest(alerts, category, repeat=repeat, redact=redact)
        return payload if self.redactor is None else seal(payload, self.redactor)

    def _delivered(
        self, plan: Plan, result: SendResult, now: float, thread_key: str | None
    ) -> None:
        for r in plan.refs:
            self._pending.pop(r.alert_id, None)
        # Counted before the outbox says so: Slack has them, whatever the disk does next.
        self.stats.count("messages")
        self.stats.count("delivered", len(plan.refs))
        message = result.ts or f"sent:{uuid.uuid4().hex[:12]}"
        self._mark_delivered(plan.alert_ids, message)
        self.planner.delivered(plan, now)
        self._save_state(plan)
        if thread_key is not None and result.ts:
            self.coord.remember_thread(plan.dest, thread_key, result.ts, self.config.thread_ttl)

    def _reschedule(self, refs: Sequence[PendingRef], now: float, reason: str) -> None:
        not_before = now + backoff(max(r.attempts for r in refs) + 1, self.rng)
        self.outbox.reschedule([r.alert_id for r in refs], not_before, reason)
        for r in refs:
            r.attempts += 1
            r.not_before = not_before

    def _retry(self, plan: Plan, result: SendResult, now: float) -> None:
        self.stats.count("retries")
        self._reschedule(plan.refs, now, _describe(result))
        self.diag.report(
            f"retry:{plan.dest}",
            f"Slack did not take an alert ({_describe(result)}); {len(self._pending)} alert(s) "
            f"wait {self._where()} and are retried with backoff. "
            f"{result.remedy or ''}".rstrip(),
        )

    def _where(self) -> str:
        if self.outbox.durable:
            return f"in the {self.config.label}"
        if self.outbox.path is None:
            return "in memory (the alerts directory cannot be written)"
        return "in memory (the outbox cannot be written now; stored once it works again)"

    def _permanent(self, plan: Plan, result: SendResult, now: float) -> None:
        # Blocked by the pytest plugin: dead at once, so no later process posts a test's alert.
        blocked = result.error == "blocked_by_pytest"
        limit = 1 if blocked else self.config.max_permanent_attempts
        dead = [r.alert_id for r in plan.refs if r.attempts + 1 >= limit]
        later = [r for r in plan.refs if r.attempts + 1 < limit]
        reason = _describe(result)
        if dead:
            self.outbox.mark_dead(dead, reason)
            self.stats.count("dead", len(dead))
            for i in dead:
                self._pending.pop(i, None)
        if later:
            self._reschedule(later, now, reason)
        if blocked:  # a test's alert: it must never reach Slack later, nothing to replay
            text = (
                f"a real Slack send was blocked because pytest is running; the alert is kept as "
                f"a dead letter in the {self.config.label} and never sent. To let a test run post "
                "for real, pass --slack-real-sends (or SLACK_LOGGING_REAL_SENDS=1, or mark the "
                "test slack_real_sends); to capture alerts instead, use the slack_alerts fixture"
            )
        else:
            text = (
                f"Slack rejected an alert: {reason}. {result.remedy or ''} Rejected alerts are "
                f"kept as dead letters in the {self.config.label}; run `slack-logging replay` "
                "after the fix."
            )
        self.diag.report(
            f"permanent:{plan.dest}:{result.status}:{result.error}",
            text,
            once=True,
        )

    def _settle(self, now: float) -> bool:
        """Alerts left to another host's message: mark those it covered, take back those whose
        sender went away. True if anything changed."""
        settled = self.coord.settle(now)
        for ids, message in settled.done:
            self.outbox.mark_delivered(ids, message)
            self.stats.count("delivered_elsewhere", len(ids))
        for r in settled.back:
            self._pending[r.alert_id] = r
        changed = bool(settled.done or settled.back)
        if changed:
            self._announce()
        return changed

    def _unbuildable(self, plan: Plan, exc: Exception) -> None:
        """A message that cannot be built (a corrupt or incompatible row) is a dead letter."""
        reason = f"could not build the message ({type(exc).__name__}: {exc})"[:300]
        self.outbox.mark_dead(plan.alert_ids, reason)
        for r in plan.refs:
            self._pending.pop(r.alert_id, None)
        self.stats.count("dead", len(plan.refs))
        self.diag.report(f"unbuildable:{type(exc).__name__}", f"{reason}; kept as dead letters")

    # -- live messages and recovery notices (see _followups) ---------------------------------

    def _live_mode(self, plan: Plan, transport: Transport) -> bool:
        """Whether this plan's run is (or becomes) a live message: bot mode, one kind of alert."""
        return (
            self.config.live_updates
            and bool(getattr(transport, "supports_updates", False))
            and len(plan.dedup_keys) == 1
        )

    def _absorb(
        self, plan: Plan, alerts: Sequence[Alert], admission: Admission, now: float
    ) -> bool:
        """Count the plan's alerts in the run's live message instead of posting; True if it
        took them (the edit follows, paced, in :meth:`_update_live`)."""
        entry = self.followups.refresh(live_key(plan.dest, plan.dedup_keys[0]))
        if entry is None or not alerts or not all(entry.live.accepts(a.created) for a in alerts):
            return False
        key_fields = self.category_for(alerts, plan.category).key_fields
        for a in alerts:
            entry.live.observe(a.created, a.fields, key_fields)
        lowest = min(r.seq for r in plan.refs)
        if entry.unshown_from is None or lowest < entry.unshown_from:
            entry.unshown_from = lowest
        # Saved before the alerts are marked delivered: a crash in between sends them again
        # (counted twice at worst), never loses them.
        self.followups.save_live(entry)
        message = entry.unshown_message
        for r in plan.refs:
            self._pending.pop(r.alert_id, None)
        self.stats.count("delivered", len(plan.refs))
        self._mark_delivered(plan.alert_ids, message)
        self.planner.delivered(plan, now)
        self._save_state(plan)
        self.coord.delivered(plan, admission, message)
        self._feed_failures(plan.dest, alerts)
        self._announce()
        return True

    def _start_live(
        self,
        plan: Plan,
        alerts: Sequence[Alert],
        result: SendResult,
        transport: Transport,
        now: float,
        thread_ts: str | None,
    ) -> None:
        channel = result.channel or getattr(transport, "channel", None)
        if not result.ts or not channel or not alerts:
            return
        category = self.category_for(alerts, plan.category)
        try:
            live = LiveMessage.start(
                dedup_key=plan.dedup_keys[0],
                channel=channel,
                ts=result.ts,
                posted_at=now,
                alerts=[(a.created, a.fields) for a in alerts],
                key_fields=category.key_fields,
            )
        except ValueError:
            return
        headline = str(alerts[0].message)[:HEADLINE_MAX]
        entry = LiveEntry(plan.dest, plan.category, live, headline, thread_ts=thread_ts)
        self.followups.live[entry.key] = entry
        self.followups.save_live(entry)

    def _feed_failures(self, dest: str, alerts: Sequence[Alert]) -> None:
        def resolve_by(a: Alert) -> tuple[str, ...]:
            category = self.category_for([a], a.category)
            return tuple(getattr(category, "resolve_by", ()) or ())

        self.followups.feed(dest, alerts, resolve_by, self._now())

    def _followup_step(self, now: float, release: bool) -> bool:
        """Apply successes, then post one owed notice or send one due edit. True if a request
        was made."""
        self.followups.apply_resolutions(self._pending.values(), now)
        self.followups.flush_recovery(now)
        return self._post_notice(now) or self._update_live(now, release=release)

    def _post_notice(self, now: float) -> bool:
        """Post one recovery notice that is due: in the thread of the incident's live message
        (which then shows it resolved), else as a short message of its own."""
        fu = self.followups
        for pending in list(fu.notices):
            notice = pending.notice
            dest, _, dkey = (notice.ref or "").removeprefix("live:").rpartition(":")
            if dest not in self.transports:
                dest = self.default_dest
            if pending.not_before > now or self.planner.ready_at(dest, now) > now:
                continue
            transport = self.transports[dest]
            entry = fu.live.get(live_key(dest, dkey))
            key = notice.categories[0] if notice.categories else notice.scope
            payload = render_recovery(notice, self.catalog.lookup(key).title)
            if entry is not None and transport.supports_threads:
                # A reply goes under the thread's parent, not under another reply.
                payload["thread_ts"] = entry.thread_ts or entry.live.ts
                entry.live.resolve(notice.recovered_at)
                fu.save_live(entry)
            if self.redactor is not None:
                payload = seal(payload, self.redactor)
            self.planner.took_token(dest, now)
            self.stats.count("requests")
            result = transport.send(payload)
            after = self._now()
            if result.ok:
                fu.notices.remove(pending)
                self.stats.count("recoveries")
            elif result.outcome is Outcome.RATE_LIMITED:
                self.planner.rate_limited(dest, result.retry_after or 30.0, after)
            else:
                pending.attempts += 1
                pending.not_before = after + backoff(pending.attempts, self.rng)
                if result.outcome is Outcome.PERMANENT and pending.attempts >= MAX_NOTICE_ATTEMPTS:
                    fu.notices.remove(pending)
                    self.diag.report(
                        f"notice:{result.error}",
                        f"Slack rejected a recovery notice ({_describe(result)}); dropped "
                        "(no alert is lost)",
                        once=True,
                    )
            fu.save_recovery()
            self._announce()
            return True
        return False

    def _update_live(self, now: float, *, release: bool) -> bool:
        """Send the most overdue live edit, if the budget has a token. On flush and shutdown
        (``release``) an edit goes without waiting out its interval."""
        fu = self.followups
        if fu.shared is not None:
            self._sync_live()
        for closed in fu.closed_with_alerts():
            self._repost(closed, "the message can no longer be edited")
        entry = fu.due_live(now, release=release)
        if entry is None:
            return False
        transport = self.transports.get(entry.dest)
        update = getattr(transport, "update", None)
        if transport is None or not getattr(transport, "supports_updates", False) or not update:
            entry.live.closed = True
            self._repost(entry, "its destination cannot edit messages")
            return False
        if not fu.budget.take(now):
            return False
        sent = entry.live.view()
        payload = render_live(sent, self.catalog.lookup(entry.category), headline=entry.headline)
        if self.redactor is not None:
            payload = seal(payload, self.redactor)
        self.stats.count("requests")
        result: SendResult = update(entry.live.channel, entry.live.ts, payload)
        after = self._now()
        error = None if result.ok else (result.error or result.outcome.value)
        if result.outcome is Outcome.RATE_LIMITED:
            error = "ratelimited"
            self.stats.count("rate_limited")
            fu.budget.rate_limited(after, result.retry_after)
        action = entry.live.apply(error, sent=sent, now=after, retry_after=result.retry_after)
        if result.ok:
            self._shown(entry)
            self.stats.count("live_updates")
        elif (
            result.outcome is Outcome.PERMANENT
            and action is Action.RETRY
            and entry.live.failures >= MAX_UPDATE_FAILURES
        ):
            entry.live.closed = True
            action = Action.REPOST
        if action is Action.REPOST:
            self._repost(entry, f"Slack refused to edit it ({_describe(result)})")
        fu.save_live(entry)
        fu.save_budget()
        self._announce()
        return True

    def _sync_live(self) -> None:
        """Shared mode: take what other hosts did to the live messages this one has alerts in
        or owes an edit (it may have been shown, or closed, meanwhile)."""
        fu = self.followups
        for key, entry in list(fu.live.items()):
            if entry.unshown_from is None and not entry.live.pending:
                continue
            fresh = fu.refresh(key)
            if fresh is not None and not fresh.live.pending and not fresh.live.closed:
                self._shown(fresh)

    def _shown(self, entry: LiveEntry) -> None:
        """Slack shows every alert the message counts: their rows say so."""
        if entry.unshown_from is None:
            return
        try:
            self.outbox.rename_message(
                entry.unshown_message, entry.shown_message, entry.unshown_from
            )
        except Exception:
            return  # still marked unshown: a later repost would send them twice, never lose one
        entry.unshown_from = None

    def _repost(self, entry: LiveEntry, why: str) -> None:
        """A live message that cannot be edited any more hands the alerts Slack does not show
        back to the outbox; the planner posts them as a new message (a new live run)."""
        if entry.unshown_from is None:
            return
        try:
            moved = self.outbox.requeue_message(entry.unshown_message, entry.unshown_from)
        except Exception:
            return  # tried again on the next turn: these alerts are not shown yet
        entry.unshown_from = None
        self.followups.save_live(entry)
        if moved:
            self.stats.count("live_reposts")
            self.diag.report(
                f"live:{entry.dest}",
                f"a live Slack message was not updated: {why}; its {moved} alert(s) not yet "
                "shown are posted as a new message",
            )

    # -- waiting -------------------------------------------------------------------------------

    def _announce(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def wait_changed(self, timeout: float) -> None:
        with self._changed:
            self._changed.wait(timeout)


def _thread_key(alerts: Sequence[Alert], transport: Transport) -> str | None:
    """The Slack thread (``thread_ts`` parent) a message belongs in, if all its alerts agree."""
    if not transport.supports_threads or not alerts:
        return None
    keys = {a.thread_key for a in alerts}
    if len(keys) != 1:
        return None
    return keys.pop()


def _describe(result: SendResult) -> str:
    parts = []
    if result.status is not None:
        parts.append(f"HTTP {result.status}")
    if result.error:
        parts.append(result.error)
    return " ".join(parts) or result.outcome.value
