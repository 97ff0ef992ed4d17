"""The sender thread: reads the outbox, asks the planner what to send, renders, posts, records.

Only the process holding the directory's :class:`~slack_logging._leader.Leadership` sends; the
others stand by and take over when the leader goes; a leader whose storage fails steps aside now
and then (:mod:`~slack_logging._yielding`). The sender only reads the outbox and sends: new
alerts are written by the ingest thread. Waits use the monotonic clock; the planner runs on the
wall clock (alert times are wall-clock, shared by processes), and a step of that clock
(:mod:`~slack_logging._clockstep`) is shifted out of the planner and the pending alerts.

The parts with inputs of their own live beside it: the message (:mod:`~slack_logging._message`),
the bookkeeping of each request's outcome and the pacing state the next leader takes over
(:mod:`~slack_logging._outcomes`), live edits and recovery notices
(:mod:`~slack_logging._followup_sends`), the pending alerts it knows
(:mod:`~slack_logging._pending_set`). About 620 lines stay here, on purpose: the thread's
lifecycle, the leader's loop and the path of one message (refresh, plan, admit, post, record)
all read and change the same pending alerts and wake-up times, and the order of those changes
is the sender's whole job.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from slack_logging._alert import Alert
from slack_logging._catalog import Catalog
from slack_logging._clockstep import ClockWatch
from slack_logging._coordination import Admission, Coordination
from slack_logging._diag import Diagnostics
from slack_logging._followup_sends import FollowupSender
from slack_logging._followups import Followups
from slack_logging._leader import Leadership
from slack_logging._ledger import Ledger
from slack_logging._message import build_payload, place_in_thread, thread_key
from slack_logging._outbox import Outbox, PendingRef
from slack_logging._outcomes import Outcomes
from slack_logging._pending_set import PendingSet
from slack_logging._planner import Plan, Planner
from slack_logging._redact import Redactor
from slack_logging._summary_job import SummaryJob
from slack_logging._transport import Outcome, SendResult, Transport
from slack_logging._yielding import YieldPolicy

__all__ = ["Sender", "SenderConfig"]


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
        on_thread: Callable[[], None] | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        self.outbox = outbox
        # The last pass over every payload before a transport sees it (see _redact.seal).
        self.redactor = redactor
        self._transports = dict(transports)
        self.default_dest = default_dest
        self.catalog = catalog
        self.planner = planner
        self.config = config
        self.diag = diag
        self.coord = coord
        self.leadership = leadership
        self._stats = ledger or Ledger()
        self.clock = clock
        self.monotonic = monotonic
        self._clock = ClockWatch()
        self.rng = rng or random.Random()  # noqa: S311 - retry jitter, not crypto
        self._on_thread = on_thread
        self._state_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._pending = PendingSet()
        self._next_look = 0.0
        self._last_prune = float("-inf")
        #: Monotonic time the next message is due (None: nothing pending).
        self._due: float | None = None
        #: Monotonic time before which this process does not try to lead (see hand_off).
        self._lead_after = float("-inf")
        #: Set by a step that found every destination out of budget: when one has budget.
        self._paced: float | None = None
        self._yield = YieldPolicy()
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
        self.outcomes = Outcomes(
            outbox,
            planner,
            coord,
            diag,
            rng=self.rng,
        )
        self.live = FollowupSender(
            self.followups,
            outbox,
            planner,
            catalog,
            diag,
            transports=self._transports,
            default_dest=default_dest,
            stats=self._stats,
            rng=self.rng,
            now=self._now,
            announce=self._announce,
            redactor=redactor,
        )

    @property
    def transports(self) -> dict[str, Transport]:
        return self._transports

    @transports.setter
    def transports(self, transports: Mapping[str, Transport]) -> None:
        """After a fork the runtime builds its own connections: every part uses them."""
        self._transports = self.live.transports = dict(transports)
        if self.summary is not None:
            self.summary.transports = self._transports

    @property
    def stats(self) -> Ledger:
        return self._stats

    @stats.setter
    def stats(self, ledger: Ledger) -> None:
        self._stats = self.live.stats = ledger
        if self.summary is not None:
            self.summary.stats = ledger

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

    def reset_after_fork(
        self, *, transports: Mapping[str, Transport] | None = None, ledger: Ledger | None = None
    ) -> None:
        """In a forked child: no thread, no lock, no cached state from the parent. The child's
        own connections (``transports``: the parent's pooled ones are not its to share) and
        ledger replace the parent's in every part, the periodic summary's too."""
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
        self.outcomes.unmarked = []
        self._forget()
        self.followups.forget()
        self.stats = ledger if ledger is not None else Ledger()
        if transports is not None:
            self.transports = transports

    def _forget(self) -> None:
        self._pending = PendingSet()
        self._next_look = 0.0
        self._clock.forget()

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
        """A new leader takes over where the last one left (see :class:`Outcomes`)."""
        self.outcomes.load_state(self._now())
        self._forget()
        self.followups.load()

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
            degraded = self.outbox.fault is not None and not self._stop.is_set()
            if self._yield.should_yield(degraded=degraded, now=self.monotonic()):
                self.step_down()
                self.hand_off(self.monotonic() + self._yield.off_for)
                self.diag.report(
                    "leader-yield",
                    "this process's outbox refuses writes, so it cannot see what other "
                    "processes store: it leaves sending to one whose storage works (retried "
                    f"every {self._yield.every:g} s; it leads again if none takes over)",
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
            wake = self.planner.wake_at(self._pending.values(), now, release=self.release.is_set())
        later = self.followups.wake(now)
        if later is not None and (wake is None or later < wake):
            wake = later
        return wake

    def _quiet(self) -> None:
        self.quiet_turns += 1
        self._announce()

    def _sleep(self, seconds: float) -> None:
        self._wake.wait(seconds)
        self._wake.clear()

    def _now(self) -> float:
        """Wall-clock now; a step since the last call (NTP, a VM resumed) is shifted out of the
        planner's state and the pending alerts' retry times."""
        wall = self.clock()
        step = self._clock.step(wall, self.monotonic())
        if step:
            self.planner.shift(step)
            self._pending.shift(step)
            self._next_look = 0.0
            self.diag.report("clock", f"the wall clock stepped by {step:+.0f} s; pacing follows")
        return wall

    def refresh(self, now: float) -> bool:
        """Pick up alerts stored since the last look (by any process on the directory)."""
        found = self.outbox.pending_refs(self._pending.last_seq)
        summarized = self._pending.take_in(
            found,
            now,
            dests=self.transports,
            default_dest=self.default_dest,
            summary_only=self._summary_only,
        )
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
        self.outcomes.mark_delivered(alert_ids, "summary")
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
        self.outcomes.retry_unmarked()
        self._paced = None
        now = self._now()
        if self.summary is not None and not volatile_only:  # the leader's job
            self.summary.tick(now)
        changed = self.refresh(now)
        if volatile_only:
            # Asked after the refresh: an alert stored between an earlier look and the refresh
            # is both picked up and kept (the refresh moved past it, so it is not seen again).
            self._pending.keep_only(self.outbox.volatile_ids())
        if now - self._last_prune > 3600.0:
            self._last_prune = now
            self.outbox.prune(self.config.retention_delivered, self.config.retention_dead)
            self.planner.forget_windows(now)
        if self.coord.shared:
            changed = self._settle(now) or changed
        release = self.release.is_set()
        # Edits and notices are the leader's.
        if not volatile_only and self.live.step(self._pending.values(), now, release=release):
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
        pending = self._pending.values()
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
            self._done(plan.refs)
            self.coord.hold(list(plan.refs), admission.await_key, now)
            return None
        alerts.extend(admission.remote)
        live = self.config.live_updates and self.live.live_mode(plan, transport)
        if live:
            message = self.live.absorb(plan, alerts)
            if message is not None:
                self._absorbed(plan, alerts, admission, message, now)
                return SendResult(Outcome.OK)
        try:
            # A live message replaces follow-ups: a run it no longer takes starts a new message.
            repeat = plan.kind == "repeat" and not live
            payload = build_payload(plan, alerts, self.catalog, self.redactor, repeat=repeat)
        except Exception as exc:
            self._unbuildable(plan, exc)
            return None
        thread = thread_key(alerts, transport.supports_threads)
        if thread is not None:
            place_in_thread(payload, alerts, self.coord.thread_ts(plan.dest, thread))
        self.planner.took_token(plan.dest, now)
        self.stats.count("requests")
        result = transport.send(payload)
        self._record(plan, result, alerts, admission, payload, transport, thread, live)
        return result

    def _record(
        self,
        plan: Plan,
        result: SendResult,
        alerts: Sequence[Alert],
        admission: Admission,
        payload: dict[str, Any],
        transport: Transport,
        thread_key: str | None,
        live: bool,
    ) -> None:
        """One outcome of a request, recorded (see :class:`~slack_logging._outcomes.Outcomes`)."""
        after = self._now()
        if result.outcome is Outcome.OK:
            self._done(plan.refs)
            ttl = self.config.thread_ttl
            self.outcomes.delivered(plan, result, after, thread_key, self.stats, thread_ttl=ttl)
            self.coord.delivered(plan, admission, result.ts or "sent")
            if live:
                thread_ts = payload.get("thread_ts")
                self.live.start_live(plan, alerts, result, transport, after, thread_ts)
            self.live.feed_failures(plan.dest, alerts)
        elif result.outcome is Outcome.RATE_LIMITED:
            self.outcomes.rate_limited(plan, result, after, self.stats)
        elif result.outcome is Outcome.RETRY:
            waiting, label = len(self._pending), self.config.label
            self.outcomes.retry(plan, result, after, self.stats, waiting=waiting, label=label)
        else:
            dead = self.outcomes.permanent(
                plan,
                result,
                after,
                self.stats,
                max_attempts=self.config.max_permanent_attempts,
                label=self.config.label,
            )
            self._pending.drop(dead)
        self._announce()

    def _absorbed(
        self, plan: Plan, alerts: Sequence[Alert], admission: Admission, message: str, now: float
    ) -> None:
        """The run's live message took the plan's alerts: they count as delivered with it."""
        self._done(plan.refs)
        self.stats.count("delivered", len(plan.refs))
        self.outcomes.mark_delivered(plan.alert_ids, message)
        self.planner.delivered(plan, now)
        self.outcomes.save_state(plan)
        self.coord.delivered(plan, admission, message)
        self.live.feed_failures(plan.dest, alerts)
        self._announce()

    def _unbuildable(self, plan: Plan, exc: Exception) -> None:
        self._done(plan.refs)
        self.outcomes.unbuildable(plan, exc, self.stats)

    def _done(self, refs: Sequence[PendingRef]) -> None:
        self._pending.drop(r.alert_id for r in refs)

    def _settle(self, now: float) -> bool:
        """Alerts left to another host's message: mark those it covered, take back those whose
        sender went away. True if anything changed."""
        settled = self.coord.settle(now)
        for ids, message in settled.done:
            self.outbox.mark_delivered(ids, message)
            self.stats.count("delivered_elsewhere", len(ids))
        self._pending.put(settled.back)
        changed = bool(settled.done or settled.back)
        if changed:
            self._announce()
        return changed

    # -- waiting -------------------------------------------------------------------------------

    def _announce(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def wait_changed(self, timeout: float) -> None:
        with self._changed:
            self._changed.wait(timeout)
