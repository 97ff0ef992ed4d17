"""infra_alert: turn timeouts and connection errors of outside calls into alerts, then re-raise.

    from slack_logging._infra import infra_alert

    with infra_alert(service="toss", endpoint="POST /v1/payments/confirm", order_id=order_id):
        response = session.post(url, json=body, timeout=(3.05, 10))

    @infra_alert(service="report-api", endpoint="/reports")
    async def make_report(...): ...

A timeout is logged as an ``api_timeout`` alert and a connection failure as a ``network_error``
alert, with ``service``, ``endpoint``, ``elapsed_ms``, your extra fields and the exception; the
exception always propagates. Anything else propagates without an alert.

After a failure, the first call of the same ``service`` and ``endpoint`` that succeeds in this
process logs a resolution (not an alert); once no failure follows for ``recovery_quiet_period``
(60 s), Slack gets "recovered after 3 m 12 s, 41 failures" in the outage's thread. A service
that never failed here stays silent.

Which exceptions count: the built-in ``TimeoutError`` (``socket.timeout``, and on 3.11+
``asyncio.TimeoutError``), ``ConnectionError`` (refused, reset, broken pipe), DNS failures
(``socket.gaierror``), ``urllib.error.URLError`` by its reason, and those of requests, urllib3,
httpx and aiohttp. Those libraries are never imported here: an exception of theirs can only exist
once they are imported, so they are looked up in ``sys.modules`` when something fails.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import inspect
import logging
import socket
import sys
import threading
import time
import urllib.error
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal, TypeVar, cast

from slack_logging._alert_logger import AlertLogger
from slack_logging._recovery import INFRA_SCOPE
from slack_logging._text import human_duration

__all__ = ["DEFAULT_LOGGER", "InfraAlert", "classify", "infra_alert"]

DEFAULT_LOGGER = "infra"
"""Logger used when none is given. Not ``slack_logging.*``: the handler ignores its own loggers."""

Kind = Literal["api_timeout", "network_error"]
F = TypeVar("F", bound=Callable[..., Any])

# (module, attribute) pairs, resolved only if the module is already imported.
_OPTIONAL_TIMEOUTS = (
    ("requests.exceptions", "Timeout"),  # ConnectTimeout, ReadTimeout
    ("urllib3.exceptions", "TimeoutError"),  # ConnectTimeoutError, ReadTimeoutError
    ("httpx", "TimeoutException"),  # Connect/Read/Write/PoolTimeout
    ("aiohttp", "ServerTimeoutError"),
)
_OPTIONAL_NETWORK = (
    ("requests.exceptions", "ConnectionError"),
    ("urllib3.exceptions", "NewConnectionError"),  # includes NameResolutionError
    ("urllib3.exceptions", "ProtocolError"),  # connection aborted or reset mid-response
    ("httpx", "NetworkError"),  # ConnectError, ReadError, WriteError, CloseError
    ("httpx", "RemoteProtocolError"),  # server disconnected without sending a response
    ("aiohttp", "ClientConnectionError"),
)
# Subclasses of a timeout type that are really connection failures: checked first.
# (urllib3's NewConnectionError subclasses ConnectTimeoutError for historical reasons.)
_OPTIONAL_NETWORK_FIRST = (("urllib3.exceptions", "NewConnectionError"),)

_BUILTIN_TIMEOUTS: tuple[type[BaseException], ...] = (
    TimeoutError,  # socket.timeout is an alias
    asyncio.TimeoutError,  # distinct from TimeoutError before 3.11
    concurrent.futures.TimeoutError,  # idem
)
_BUILTIN_NETWORK: tuple[type[BaseException], ...] = (
    ConnectionError,
    socket.gaierror,  # DNS: name or service not known
    socket.herror,
)

_now = time.perf_counter

# (service, endpoint) pairs this process saw fail since their last success: only the first
# success after a failure logs a resolution, so a healthy service's calls stay silent.
_failing: set[tuple[str, str]] = set()
_failing_lock = threading.Lock()


def _loaded(pairs: tuple[tuple[str, str], ...]) -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = []
    for module_name, attr in pairs:
        module = sys.modules.get(module_name)
        cls = getattr(module, attr, None) if module is not None else None
        if isinstance(cls, type) and issubclass(cls, BaseException):
            found.append(cls)
    return tuple(found)


def _unwrap(exc: BaseException) -> BaseException:
    """The real cause inside wrappers that carry it as ``reason`` (urllib, urllib3 retries)."""
    for _ in range(5):
        reason: object = None
        if isinstance(exc, urllib.error.URLError):
            reason = exc.reason
        else:
            max_retry = _loaded((("urllib3.exceptions", "MaxRetryError"),))
            if max_retry and isinstance(exc, max_retry):
                reason = getattr(exc, "reason", None)
        if not isinstance(reason, BaseException):
            return exc
        exc = reason
    return exc


def classify(exc: BaseException) -> Kind | None:
    """``"api_timeout"``, ``"network_error"``, or ``None`` for an exception that is neither.

    requests' ``ConnectTimeout`` is both a ``ConnectionError`` and a ``Timeout``: a timeout.
    """
    if not isinstance(exc, Exception):
        return None  # KeyboardInterrupt, SystemExit, asyncio.CancelledError: not an outage
    exc = _unwrap(exc)
    if isinstance(exc, _loaded(_OPTIONAL_NETWORK_FIRST)):
        return "network_error"
    if isinstance(exc, _BUILTIN_TIMEOUTS + _loaded(_OPTIONAL_TIMEOUTS)):
        return "api_timeout"
    if isinstance(exc, _BUILTIN_NETWORK + _loaded(_OPTIONAL_NETWORK)):
        return "network_error"
    return None


_MESSAGES: dict[Kind, str] = {
    "api_timeout": "%s %s timed out after %s (%s)",
    "network_error": "%s %s unreachable after %s (%s)",
}


class InfraAlert:
    """Context manager (``with``/``async with``) and decorator (sync or async); see the module.

    One instance may be shared by threads and tasks: each entry keeps its own start time.
    Build it with :func:`infra_alert`.
    """

    __slots__ = ("_alerts", "_starts", "endpoint", "fields", "service")

    def __init__(
        self,
        *,
        service: str,
        endpoint: str,
        logger: logging.Logger | AlertLogger | str | None = None,
        **fields: Any,
    ) -> None:
        self.service = service
        self.endpoint = endpoint
        self.fields = fields
        if isinstance(logger, AlertLogger):
            self._alerts = logger
        else:
            self._alerts = AlertLogger(DEFAULT_LOGGER if logger is None else logger)
        # A stack per thread and per asyncio task, so nesting and sharing both work.
        self._starts: contextvars.ContextVar[tuple[float, ...]] = contextvars.ContextVar(
            "infra_alert_starts", default=()
        )

    def __repr__(self) -> str:
        return f"infra_alert(service={self.service!r}, endpoint={self.endpoint!r})"

    def __enter__(self) -> InfraAlert:
        self._starts.set((*self._starts.get(), _now()))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        start = self._pop()
        if exc is not None:
            self._report(exc, start)
        else:
            self._succeeded()

    async def __aenter__(self) -> InfraAlert:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Not self.__exit__(...): the extra frame would point the record's place at us.
        start = self._pop()
        if exc is not None:
            self._report(exc, start)
        else:
            self._succeeded()

    def _pop(self) -> float:
        starts = self._starts.get()
        self._starts.set(starts[:-1])
        return starts[-1] if starts else _now()

    def __call__(self, func: F) -> F:
        if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
            raise TypeError(
                "infra_alert cannot time a generator; use `with infra_alert(...)` inside it"
            )
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                start = _now()
                try:
                    result = await func(*args, **kwargs)
                except BaseException as exc:
                    self._report(exc, start)
                    raise
                self._succeeded()
                return result

            return cast(F, async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = _now()
            try:
                result = func(*args, **kwargs)
            except BaseException as exc:
                self._report(exc, start)
                raise
            self._succeeded()
            return result

        return cast(F, wrapper)

    def _report(self, exc: BaseException, start: float) -> None:
        """Log the alert if ``exc`` is an outage. Called only from the frame the user called."""
        try:
            kind = classify(exc)
            if kind is None:
                return
            elapsed = max(0.0, _now() - start)
            elapsed_ms = round(elapsed * 1000)
            self._alerts.alert(
                kind,
                _MESSAGES[kind],
                self.service,
                self.endpoint,
                human_duration(elapsed),
                type(exc).__name__,
                exc_info=exc,
                # 1 is this frame, 2 __exit__ or the wrapper, 3 the `with` block or the caller
                # of the decorated function: the record points there, not at us.
                stacklevel=3,
                **{
                    **self.fields,
                    "service": self.service,
                    "endpoint": self.endpoint,
                    "elapsed_ms": elapsed_ms,
                },
            )
            with _failing_lock:
                _failing.add((self.service, self.endpoint))
        except Exception as report_error:
            # Never replace the caller's exception with ours; say so where operators look.
            sys.stderr.write(
                f"slack-logging: infra_alert could not log {type(exc).__name__} "
                f"({type(report_error).__name__}: {report_error})\n"
            )

    def _succeeded(self) -> None:
        """The call worked: if this process saw it fail, say the outage is over (once)."""
        key = (self.service, self.endpoint)
        if key not in _failing:  # the common case, without the lock
            return
        with _failing_lock:
            if key not in _failing:
                return
            _failing.discard(key)
        try:
            labels = {"service": self.service, "endpoint": self.endpoint}
            self._alerts._resolution(INFRA_SCOPE, labels, 2)
        except Exception as error:
            sys.stderr.write(
                f"slack-logging: infra_alert could not log a recovery "
                f"({type(error).__name__}: {error})\n"
            )


def infra_alert(
    *,
    service: str,
    endpoint: str,
    logger: logging.Logger | AlertLogger | str | None = None,
    **fields: Any,
) -> InfraAlert:
    """Alert on timeouts and connection errors of an outside call, then re-raise them.

    Args:
        service: the outside system, e.g. ``"toss-payments"``.
        endpoint: what was called, e.g. ``"POST /v1/payments/confirm"``.
        logger: a logger, logger name or :class:`~slack_logging._alert_logger.AlertLogger`; default
            ``logging.getLogger("infra")`` (configure it, or let it propagate to the root).
        **fields: extra alert fields (``order_id=...``, ``thread_key=...``).

    Works as ``with``, ``async with``, and as a decorator of plain and ``async def`` functions.
    The alert carries ``service``, ``endpoint``, ``elapsed_ms`` (int) and the exception's
    traceback. Example::

        with infra_alert(service="pg", endpoint="POST /approve", order_id="ORD-1"):
            requests.post(PG_URL, json=body, timeout=5)
    """
    return InfraAlert(service=service, endpoint=endpoint, logger=logger, **fields)
