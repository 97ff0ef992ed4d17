"""State the senders share around each message: rate budget, Retry-After blocks, dedup windows
with their repeat counts, and the thread map.

:class:`LocalCoordination` keeps it in the alerts directory: one sender per host already sees
everything. :class:`RedisCoordination` shares it through Redis between hosts (``coordination_url``)
and falls back to local coordination while Redis is down or slow. Only the sender thread calls
these; the logging call never does.

Over 400 lines because the Redis side carries the whole round protocol (enter, gather, close,
lease, announce, settle) in one place, next to the local stand-in it falls back to; the Lua
scripts it runs inside Redis are :mod:`slack_logging._redis_scripts`.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from slack_logging._alert import Alert
from slack_logging._diag import Diagnostics
from slack_logging._outbox import Outbox, PendingRef
from slack_logging._planner import Plan
from slack_logging._redis_scripts import ACQUIRE, BLOCK, CLOSE, ENTER

__all__ = ["Admission", "Coordination", "LocalCoordination", "RedisCoordination", "Settled"]


@dataclass(frozen=True)
class Admission:
    """The coordinator's answer to "may I send this message now?".

    Exactly one of: go (``wait == 0`` and ``await_key is None``), wait ``wait`` seconds and ask
    again, or leave these alerts to another host's message announced under ``await_key``.
    """

    wait: float = 0.0
    await_key: str | None = None
    #: Alerts other hosts published for this message; it covers them too.
    remote: tuple[Alert, ...] = ()
    #: Where to announce the message once sent (other hosts wait on it).
    done_key: str | None = None

    @property
    def go(self) -> bool:
        return self.wait <= 0 and self.await_key is None


GO = Admission()


@dataclass(frozen=True)
class Settled:
    """Alerts left to other hosts' messages that are settled now (see ``settle``)."""

    #: ``(alert ids, message)``: covered by a message another host sent; mark them delivered.
    done: tuple[tuple[list[str], str], ...] = ()
    #: Held alerts to send here after all: the host that took them went away.
    back: tuple[PendingRef, ...] = ()


class Coordination(Protocol):
    shared: bool

    def sync(self, pending: Sequence[PendingRef], now: float) -> dict[tuple[str, str], float]: ...

    def admit(self, plan: Plan, alerts: Sequence[Alert], now: float) -> Admission: ...

    def delivered(self, plan: Plan, admission: Admission, ts: str) -> None: ...

    def rate_limited(self, dest: str, retry_after: float) -> None: ...

    def hold(self, refs: list[PendingRef], await_key: str, now: float) -> None: ...

    def settle(self, now: float) -> Settled: ...

    def thread_ts(self, dest: str, thread_key: str) -> str | None: ...

    def remember_thread(self, dest: str, thread_key: str, ts: str, ttl: float) -> None: ...

    def reset_after_fork(self) -> None: ...

    def close(self) -> None: ...

    def live_entry(self, key: str) -> Any:
        """A live message's state as another host's leader left it (None: unknown here)."""
        ...

    def save_live_entry(self, key: str, value: Any, ttl: float) -> None: ...


class LocalCoordination:
    """One host: the elected sender sees every alert, so only the thread map needs storing."""

    shared = False

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    def sync(self, pending: Sequence[PendingRef], now: float) -> dict[tuple[str, str], float]:
        return {}

    def admit(self, plan: Plan, alerts: Sequence[Alert], now: float) -> Admission:
        return GO

    def delivered(self, plan: Plan, admission: Admission, ts: str) -> None:
        return None

    def rate_limited(self, dest: str, retry_after: float) -> None:
        return None

    def hold(self, refs: list[PendingRef], await_key: str, now: float) -> None:
        raise AssertionError("local coordination never asks to await another host")

    def settle(self, now: float) -> Settled:
        return _NOTHING

    def thread_ts(self, dest: str, thread_key: str) -> str | None:
        value = self.outbox.get_state(f"thread:{dest}:{thread_key}")
        return str(value) if value else None

    def remember_thread(self, dest: str, thread_key: str, ts: str, ttl: float) -> None:
        if self.thread_ts(dest, thread_key) is None:
            self.outbox.set_state(f"thread:{dest}:{thread_key}", ts, ttl=ttl)

    def reset_after_fork(self) -> None:
        return None

    def close(self) -> None:
        return None

    def live_entry(self, key: str) -> Any:
        return None  # one host: the leader's own outbox state is the only copy

    def save_live_entry(self, key: str, value: Any, ttl: float) -> None:
        return None


@dataclass
class _Round:
    """A dedup round this host has opened or taken, kept until its message is sent."""

    number: int
    start_ms: str
    gather_until: float = 0.0
    remote: list[Alert] = field(default_factory=list)
    taken: bool = False


class RedisCoordination:
    """Coordination shared by every host on one Redis.

    Keys (all under ``<namespace>:``, all with TTLs, so a flushed or new Redis is harmless):

    ``bucket:<dest>`` token bucket (hash), ``block:<dest>`` Retry-After block,
    ``win:<dest>:<dedup key>`` dedup window (hash: start_ms, round),
    ``round:<dest>:<key>:<start>:<n>`` alerts published into a round (list of JSON),
    ``lease:…`` / ``done:<dest>:<key>:<start>:<n>`` the host sending a round is alive / the message
    that covered it, ``thread:<dest>:<thread key>`` the thread's parent ts,
    ``live:<dest>:<dedup key>`` a live message's state (so the next round's host edits it).

    Redis holds coordination state and copies, never the only copy of an alert: every host keeps
    its alerts pending in its own outbox until the message covering them is announced.

    Args:
        url: ``redis://host:port/db``.
        fallback: used while Redis does not answer.
        rate, burst: the shared budget per destination.
        window, quiet: the dedup window, as in :class:`~slack_logging._planner.Planner`.
        gather: how long the host that opens a window waits for the other hosts' copies of the
            same alert, so a failure seen by every host at once is one message.
        timeout: per Redis call; a slow Redis counts as down.
    """

    shared = True

    def __init__(
        self,
        url: str,
        fallback: Coordination,
        diag: Diagnostics,
        *,
        rate: float = 1.0,
        burst: int = 3,
        window: float = 60.0,
        quiet: float = 10.0,
        gather: float = 0.3,
        timeout: float = 0.25,
        namespace: str = "slack_logging",
        retry_every: float = 5.0,
        client: Any = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        import redis

        self._redis_errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self.client = client or redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, health_check_interval=0
        )
        self.url = url
        self.fallback = fallback
        self.diag = diag
        self.rate, self.burst = rate, burst
        self.window, self.quiet, self.gather = window, quiet, gather
        self.ns = namespace
        self.retry_every = retry_every
        self._down_until = 0.0
        self._down = False
        self._rounds: dict[tuple[str, str], _Round] = {}
        self._awaiting: dict[str, tuple[list[PendingRef], float]] = {}
        self.clock = clock
        self.monotonic = monotonic
        self._acquire = self.client.register_script(ACQUIRE)
        self._block = self.client.register_script(BLOCK)
        self._enter = self.client.register_script(ENTER)
        self._close = self.client.register_script(CLOSE)
        self.stats: dict[str, int] = {"calls": 0, "errors": 0}

    @property
    def _ttl_ms(self) -> int:
        return int((self.window + self.quiet + 60.0) * 1000)

    # -- availability ------------------------------------------------------------------------

    @property
    def available(self) -> bool:
        return not self._down or self.monotonic() >= self._down_until

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one Redis operation; raise _Unavailable (after reporting once) when it fails."""
        if not self.available:
            raise _Unavailable
        self.stats["calls"] += 1
        try:
            result = fn(*args, **kwargs)
        except self._redis_errors as exc:
            self.stats["errors"] += 1
            self._down_until = self.monotonic() + self.retry_every
            if not self._down:
                self._down = True
                self.diag.report(
                    "redis-down",
                    f"Redis coordination unavailable ({type(exc).__name__}); each host now paces "
                    "and dedups on its own until Redis answers again. No alert is lost.",
                    once=False,
                )
            raise _Unavailable from None
        if self._down:
            self._down = False
            self.diag.report("redis-up", "Redis coordination is back; hosts share it again.")
        return result

    def _key(self, *parts: str) -> str:
        return ":".join((self.ns, *parts))

    # -- the sender's hooks --------------------------------------------------------------------

    def sync(self, pending: Sequence[PendingRef], now: float) -> dict[tuple[str, str], float]:
        """The dedup windows other hosts opened (``{(dest, dedup key): start}``), so repeats
        are held here too."""
        keys = sorted({(r.dest, r.dedup_key) for r in pending} - set(self._rounds))[:500]
        if not keys:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for dest, key in keys:
            pipe.hget(self._key("win", dest, key), "start_ms")
        try:
            starts = self._call(pipe.execute)
        except _Unavailable:
            return {}
        return {
            slot: float(start) / 1000.0
            for slot, start in zip(keys, starts, strict=True)
            if start is not None
        }

    def admit(self, plan: Plan, alerts: Sequence[Alert], now: float) -> Admission:
        try:
            return self._admit(plan, alerts, now)
        except _Unavailable:
            pending = self._rounds.pop((plan.dest, next(iter(_keys(alerts)), "")), None)
            remote = tuple(pending.remote) if pending is not None else ()
            return Admission(remote=remote)

    def _admit(self, plan: Plan, alerts: Sequence[Alert], now: float) -> Admission:  # noqa: PLR0911 - one return per admission outcome
        keys = _keys(alerts)
        if self.window <= 0:  # dedup off: only the shared budget applies
            return self._budget(plan.dest, None)
        if len(keys) != 1:
            # A digest of many kinds: open their windows (dated past the gather time, since no
            # one gathers for them) so other hosts hold their repeats.
            backdate = int(self.gather * 1000) + 1000
            for key in keys:
                self._call(
                    self._enter,
                    keys=[self._key("win", plan.dest, key)],
                    args=[self._ttl_ms, self._key("round", plan.dest, key) + ":", backdate],
                )
            return self._budget(plan.dest, None)
        (key,) = keys
        slot = (plan.dest, key)
        win = self._key("win", plan.dest, key)
        prefix = self._key("round", plan.dest, key) + ":"
        rnd = self._rounds.get(slot)
        if rnd is None:
            bodies = [a.to_json() for a in alerts]
            opened, number, age_ms, start_ms = self._call(
                self._enter, keys=[win], args=[self._ttl_ms, prefix, 0, *bodies]
            )
            rnd = _Round(number=int(number), start_ms=_text(start_ms))
            if opened:
                # From now, not from the step's start: Redis and this host agree on the wait.
                rnd.gather_until = self.clock() + self.gather
            elif int(age_ms) / 1000.0 < self.gather:
                # The host that opened the window is gathering: its message will cover these.
                return Admission(await_key=self._done_key(plan.dest, key, rnd))
            self._rounds[slot] = rnd
        now = self.clock()
        if now < rnd.gather_until:
            return Admission(wait=rnd.gather_until - now)
        if not rnd.taken:
            items = self._call(
                self._close, keys=[win], args=[str(rnd.number), prefix, rnd.start_ms]
            )
            if items is None or items is False:
                del self._rounds[slot]
                return Admission(await_key=self._done_key(plan.dest, key, rnd))
            if not isinstance(items, list):  # 'gone': the window vanished, send them here
                del self._rounds[slot]
                return self._budget(plan.dest, None)
            local_ids = {a.alert_id for a in alerts}
            seen: set[str] = set()
            for raw in items:
                remote = Alert.from_json(raw.decode() if isinstance(raw, bytes) else raw)
                if remote.alert_id not in local_ids and remote.alert_id not in seen:
                    seen.add(remote.alert_id)
                    rnd.remote.append(remote)
            rnd.taken = True
        done_key = self._done_key(plan.dest, key, rnd)
        # While this host holds the round (retrying through an outage), the hosts whose copies
        # it took keep waiting instead of sending them themselves.
        self._call(self.client.set, _lease(done_key), "1", px=LEASE_MS)
        return self._budget(plan.dest, done_key, tuple(rnd.remote))

    def _done_key(self, dest: str, key: str, rnd: _Round) -> str:
        return self._key("done", dest, key, rnd.start_ms, str(rnd.number))

    def _budget(self, dest: str, done_key: str | None, remote: tuple[Alert, ...] = ()) -> Admission:
        wait_ms = self._call(
            self._acquire,
            keys=[self._key("bucket", dest), self._key("block", dest)],
            args=[self.rate, self.burst, 3_600_000],
        )
        if int(wait_ms) > 0:
            return Admission(wait=int(wait_ms) / 1000.0, remote=remote, done_key=done_key)
        return Admission(remote=remote, done_key=done_key)

    def delivered(self, plan: Plan, admission: Admission, ts: str) -> None:
        for key in plan.dedup_keys:
            self._rounds.pop((plan.dest, key), None)
        if admission.done_key is None:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.set(admission.done_key, ts, px=self._ttl_ms)
            pipe.delete(_lease(admission.done_key))
            self._call(pipe.execute)
        except _Unavailable:
            return

    def rate_limited(self, dest: str, retry_after: float) -> None:
        try:
            ms = max(1, int(retry_after * 1000))  # PX 0 is an error, not "no wait"
            self._call(self._block, keys=[self._key("block", dest)], args=[ms])
        except _Unavailable:
            return

    def hold(self, refs: list[PendingRef], await_key: str, now: float) -> None:
        """Another host's message will cover these alerts: wait for it to be announced."""
        deadline = now + self._await_grace()
        held, _ = self._awaiting.get(await_key, ([], deadline))
        self._awaiting[await_key] = (held + refs, deadline)

    def settle(self, now: float) -> Settled:
        """Alerts whose covering message is announced (done), and alerts to take back because
        the host that took them stopped renewing its lease (it died: fail open)."""
        if not self._awaiting:
            return _NOTHING
        announced = self.announced(list(self._awaiting))
        done: list[tuple[list[str], str]] = []
        back: list[PendingRef] = []
        for key in list(self._awaiting):
            refs, deadline = self._awaiting[key]
            ts = announced.get(key)
            if ts:
                done.append(([r.alert_id for r in refs], f"remote:{ts}"))
                del self._awaiting[key]
            elif key in announced:  # not sent yet, but its sender is alive and still trying
                self._awaiting[key] = (refs, max(deadline, now + self._await_grace()))
            elif now > deadline or now > deadline - self._await_grace() + NO_LEASE_GRACE:
                # Past the deadline, or nobody took the round (no lease) well after the opener's
                # gather: the window was lost (a flushed Redis); send them here.
                back.extend(refs)
                del self._awaiting[key]
        return Settled(tuple(done), tuple(back))

    def _await_grace(self) -> float:
        return self.window + self.quiet + 30.0

    def announced(self, keys: Sequence[str]) -> dict[str, str]:
        """Rounds another host has sent (``{done key: message ts}``) or is still sending
        (``{done key: ""}``: its lease is alive)."""
        if not keys:
            return {}
        try:
            values = self._call(self.client.mget, [*keys, *map(_lease, keys)])
        except _Unavailable:
            return {}
        done, leased = values[: len(keys)], values[len(keys) :]
        out: dict[str, str] = {}
        for k, ts, lease in zip(keys, done, leased, strict=True):
            if ts is not None:
                out[k] = _text(ts)
            elif lease is not None:
                out[k] = ""
        return out

    def thread_ts(self, dest: str, thread_key: str) -> str | None:
        try:
            value = self._call(self.client.get, self._key("thread", dest, thread_key))
        except _Unavailable:
            return self.fallback.thread_ts(dest, thread_key)
        if value is None:
            return self.fallback.thread_ts(dest, thread_key)
        return value.decode() if isinstance(value, bytes) else str(value)

    def remember_thread(self, dest: str, thread_key: str, ts: str, ttl: float) -> None:
        self.fallback.remember_thread(dest, thread_key, ts, ttl)
        try:
            self._call(
                self.client.set,
                self._key("thread", dest, thread_key),
                ts,
                nx=True,
                px=int(ttl * 1000),
            )
        except _Unavailable:
            return

    def shared_claim(self, key: str, value: str, ttl: float) -> bool | None:
        """``SET key value NX PX ttl`` under the namespace: True if this call set it; None
        while Redis does not answer."""
        try:
            done = self._call(self.client.set, self._key(key), value, nx=True, px=int(ttl * 1000))
        except _Unavailable:
            return None
        return bool(done)

    def shared_get(self, key: str) -> str | None:
        """The value of ``key``; None if absent or while Redis does not answer."""
        try:
            value = self._call(self.client.get, self._key(key))
        except _Unavailable:
            return None
        return None if value is None else _text(value)

    def shared_put(self, key: str, value: str, ttl: float) -> None:
        """``SET key value PX ttl``; skipped while Redis does not answer."""
        with contextlib.suppress(_Unavailable):
            self._call(self.client.set, self._key(key), value, px=int(ttl * 1000))

    def shared_push(self, items: dict[str, list[str]], ttl: float) -> bool:
        """Append values to lists (``RPUSH`` each key, then expire it); False while Redis
        does not answer."""
        try:
            pipe = self.client.pipeline(transaction=False)
            for key, values in items.items():
                pipe.rpush(self._key(key), *values)
                pipe.pexpire(self._key(key), int(ttl * 1000))
            self._call(pipe.execute)
        except _Unavailable:
            return False
        return True

    def shared_lists(self, keys: Sequence[str]) -> list[str] | None:
        """Every value of the lists ``keys``; None while Redis does not answer."""
        try:
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.lrange(self._key(key), 0, -1)
            found = self._call(pipe.execute)
        except _Unavailable:
            return None
        return [_text(v) for values in found for v in values]

    def live_entry(self, key: str) -> Any:
        """``live:<dest>:<dedup key>`` as the last host to change it saved it (JSON); None
        when absent, unreadable, or while Redis does not answer."""
        text = self.shared_get(key)
        if text is None:
            return None
        try:
            return json.loads(text)
        except ValueError:
            return None

    def save_live_entry(self, key: str, value: Any, ttl: float) -> None:
        self.shared_put(key, json.dumps(value), ttl)

    def reset_after_fork(self) -> None:
        """The parent's rounds (and the copies it took) are the parent's to send."""
        self._rounds = {}
        self._awaiting = {}

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing a client that never connected
            self.client.close()


_NOTHING = Settled()

#: How long an awaited round may show neither a message nor a live sender before we take it back.
NO_LEASE_GRACE = 15.0

LEASE_MS = 150_000  # longer than the longest retry backoff (60 s × 1.5)


def _lease(done_key: str) -> str:
    return done_key.replace(":done:", ":lease:", 1)


def _text(value: Any) -> str:
    # Bytes that are not UTF-8 (written by something else under our namespace) read as text
    # that fails to parse where it is used, never as an exception out of a read.
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class _Unavailable(Exception):
    """Redis did not answer; the caller falls back to local coordination."""


def _keys(alerts: Sequence[Alert]) -> list[str]:
    return sorted({a.dedup_key for a in alerts})
