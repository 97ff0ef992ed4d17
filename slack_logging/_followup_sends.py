"""The requests that follow a message: a live message's ``chat.update`` (taking in the alerts of
its run instead of a new post, then editing it, paced) and recovery notices. State and choices
live in :mod:`~slack_logging._followups`; this module makes the requests and records their
outcome. The sender calls it from its loop, as the leader.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence

from slack_logging._alert import Alert
from slack_logging._catalog import Catalog
from slack_logging._diag import Diagnostics
from slack_logging._followups import (
    HEADLINE_MAX,
    MAX_NOTICE_ATTEMPTS,
    MAX_UPDATE_FAILURES,
    Followups,
    LiveEntry,
    live_key,
)
from slack_logging._ledger import Ledger
from slack_logging._live import Action, LiveMessage
from slack_logging._message import category_for
from slack_logging._outbox import Outbox, PendingRef
from slack_logging._outcomes import describe
from slack_logging._planner import Plan, Planner, backoff
from slack_logging._redact import Redactor, seal
from slack_logging._render import render_live, render_recovery
from slack_logging._transport import Outcome, SendResult, Transport

__all__ = ["FollowupSender"]


class FollowupSender:
    """Live edits and recovery notices of one sender. ``now`` is the sender's wall clock (with
    clock steps shifted out); ``announce`` tells flush() waiters that something changed. The
    sender replaces :attr:`transports` and :attr:`stats` after a fork."""

    def __init__(
        self,
        followups: Followups,
        outbox: Outbox,
        planner: Planner,
        catalog: Catalog,
        diag: Diagnostics,
        *,
        transports: Mapping[str, Transport],
        default_dest: str,
        stats: Ledger,
        rng: random.Random,
        now: Callable[[], float],
        announce: Callable[[], None],
        redactor: Redactor | None = None,
    ) -> None:
        self.followups = followups
        self.outbox = outbox
        self.planner = planner
        self.catalog = catalog
        self.diag = diag
        self.transports = dict(transports)
        self.default_dest = default_dest
        self.stats = stats
        self.rng = rng
        self._now = now
        self._announce = announce
        self.redactor = redactor

    # -- a run's live message (the send path) ---------------------------------------------------

    def live_mode(self, plan: Plan, transport: Transport) -> bool:
        """Whether this plan's run is (or becomes) a live message: bot mode, one kind of alert
        (the caller checks that live updates are on)."""
        return bool(getattr(transport, "supports_updates", False)) and len(plan.dedup_keys) == 1

    def absorb(self, plan: Plan, alerts: Sequence[Alert]) -> str | None:
        """Count the plan's alerts in the run's live message instead of posting: the message
        name their rows are marked delivered with, or None if it did not take them (the edit
        follows, paced, in :meth:`step`)."""
        entry = self.followups.refresh(live_key(plan.dest, plan.dedup_keys[0]))
        if entry is None or not alerts or not all(entry.live.accepts(a.created) for a in alerts):
            return None
        key_fields = category_for(self.catalog, alerts, plan.category).key_fields
        for a in alerts:
            entry.live.observe(a.created, a.fields, key_fields)
        lowest = min(r.seq for r in plan.refs)
        if entry.unshown_from is None or lowest < entry.unshown_from:
            entry.unshown_from = lowest
        # Saved before the alerts are marked delivered: a crash in between sends them again
        # (counted twice at worst), never loses them.
        self.followups.save_live(entry)
        return entry.unshown_message

    def start_live(
        self,
        plan: Plan,
        alerts: Sequence[Alert],
        result: SendResult,
        transport: Transport,
        now: float,
        thread_ts: str | None,
    ) -> None:
        """The message just posted becomes its run's live message."""
        channel = result.channel or getattr(transport, "channel", None)
        if not result.ts or not channel or not alerts:
            return
        category = category_for(self.catalog, alerts, plan.category)
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

    def feed_failures(self, dest: str, alerts: Sequence[Alert]) -> None:
        """Delivered alerts open incidents a later success can close."""

        def resolve_by(a: Alert) -> tuple[str, ...]:
            category = category_for(self.catalog, [a], a.category)
            return tuple(getattr(category, "resolve_by", ()) or ())

        self.followups.feed(dest, alerts, resolve_by, self._now())

    # -- the follow-up step ---------------------------------------------------------------------

    def step(self, pending: Iterable[PendingRef], now: float, *, release: bool) -> bool:
        """Apply successes, then post one owed notice or send one due edit. True if a request
        was made. ``pending``: the alerts still waiting (a success waits for older failures)."""
        self.followups.apply_resolutions(pending, now)
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
                        f"Slack rejected a recovery notice ({describe(result)}); dropped "
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
            self._repost(entry, f"Slack refused to edit it ({describe(result)})")
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
