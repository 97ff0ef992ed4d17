"""AlertLogger: one-line, typed call sites for alerts, so nobody spells ``extra=`` by hand.

    from slack_logging._alert_logger import AlertLogger

    alerts = AlertLogger(__name__)
    alerts.payment_fail("카드 한도 초과", order_id="ORD-1", amount=15000, thread_key="ORD-1")
    alerts.alert("refund_fail", "환불 실패", order_id="ORD-1")  # a category of your own

is exactly ``logging.getLogger(__name__).error("카드 한도 초과", extra={"alert": "payment_fail",
"order_id": "ORD-1", ...})``: the level follows the category's severity, keyword fields become
extras, and the record points at the caller's file and line.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import TracebackType
from typing import Any, TypeAlias

from slack_logging._catalog import SEVERITY_LEVELS, Catalog
from slack_logging._config import Settings
from slack_logging._extras import RESERVED_ATTRS
from slack_logging._snapshot import category_key

__all__ = [
    "FIELD_PREFIX",
    "RESOLVE_ATTR",
    "SEVERITY_LEVELS",
    "AlertLogger",
    "ExcInfo",
    "alert_extra",
    "catalog_for",
]

ExcInfo: TypeAlias = (
    bool
    | BaseException
    | tuple[type[BaseException], BaseException, TracebackType | None]
    | tuple[None, None, None]
    | None
)
"""What ``exc_info=`` accepts, as in :meth:`logging.Logger.log`."""


FIELD_PREFIX = "field_"
"""Prepended to a field whose name a LogRecord already uses (``message`` → ``field_message``)."""

_BUILTIN = Catalog()

RESOLVE_ATTR = "_slack_logging_resolve"
"""Set on a :meth:`AlertLogger.resolve` record: a success that closes incidents, not an alert."""


def alert_extra(category: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The ``extra=`` dict for an alert: the tag plus fields, renamed where they would clash.

    ``logging`` refuses an extra named like a LogRecord attribute (``message``, ``name``,
    ``args``, ``created``...) and silently overwrites others; such a field is kept as
    ``field_<name>`` instead (``alert`` and ``alert_id`` too: they are ours).
    """
    extra: dict[str, Any] = {"alert": category}
    for name, value in fields.items():
        key = name
        while key in RESERVED_ATTRS or key in extra:
            key = FIELD_PREFIX + key
        extra[key] = value
    return extra


def catalog_for(logger: logging.Logger) -> Catalog | None:
    """The catalog of the first SlackAlertHandler this logger's records reach, if any.

    Known by its resolved :class:`Settings` rather than its class: the handler's module imports
    the whole runtime, which imports this module (an import cycle)."""
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            settings = getattr(handler, "settings", None)
            if isinstance(settings, Settings):
                return settings.catalog
        if not current.propagate:
            return None
        current = current.parent
    return None


class AlertLogger:
    """Log alerts through a standard logger, one method per built-in category.

    Args:
        logger: a :class:`logging.Logger` or a logger name (``__name__``).
        categories: the catalog that sets each category's level. Default: the catalog of the
            first :class:`~slack_logging.SlackAlertHandler` the logger's records reach (so the
            ``categories`` of ``logging.yaml`` apply), else the built-in one. A category found
            in neither is logged at ERROR.

    Each built-in method takes the message, an optional ``exc_info`` and any keyword fields; a
    field named like a LogRecord attribute is renamed ``field_<name>`` (see :func:`alert_extra`).
    Pass ``thread_key="ORD-1"`` to keep one order's alerts in one Slack thread (bot-token mode).

    Example::

        alerts = AlertLogger("payments")
        try:
            approve(order)
        except PgError:
            alerts.payment_fail("승인 거절", exc_info=True, order_id=order.id, amount=order.amount)
    """

    __slots__ = ("_categories", "logger")

    def __init__(
        self,
        logger: logging.Logger | str,
        *,
        categories: Catalog | Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.logger = logging.getLogger(logger) if isinstance(logger, str) else logger
        if categories is not None and not isinstance(categories, Catalog):
            categories = Catalog(categories)
        self._categories = categories

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.logger.name!r}>"

    def level_for(self, category: str) -> int:
        """The logging level ``category`` is logged at (ERROR when no catalog knows it)."""
        catalog = self._categories
        if catalog is None:
            catalog = catalog_for(self.logger) or _BUILTIN
        found = catalog.get(category)
        return SEVERITY_LEVELS[found.severity] if found is not None else logging.ERROR

    def alert(
        self,
        category: str,
        message: str,
        /,
        *args: object,
        exc_info: ExcInfo = None,
        stacklevel: int = 1,
        **fields: Any,
    ) -> None:
        """Log ``message % args`` as an alert of ``category``, any category (your own too).

        A ``category`` that is not a string (``["x"]``, ``5``) is turned into one (``"x"``,
        ``"5"``) and logged: a typo at a call site shows up in Slack, it does not raise.

        ``stacklevel`` works as in :meth:`logging.Logger.log`: 1 is the caller of this method;
        a helper that wraps it passes 2.
        """
        self._log(category, message, args, exc_info, fields, stacklevel)

    def _log(
        self,
        category: object,
        message: str,
        args: tuple[object, ...],
        exc_info: ExcInfo,
        fields: Mapping[str, Any],
        stacklevel: int,
    ) -> None:
        # A list or a number from a call site is a bug to show in Slack, not to raise.
        key = category if isinstance(category, str) else category_key(category)
        level = self.level_for(key)
        if not self.logger.isEnabledFor(level):
            return
        self.logger.log(
            level,
            message,
            *args,
            exc_info=exc_info,
            extra=alert_extra(key, fields),
            # + 2: this frame and the public method above it sit between logging and the caller.
            stacklevel=stacklevel + 2,
        )

    def resolve(self, category: str, /, **key_fields: Any) -> None:
        """Report that ``category``'s incident is over (a net-cancel retried successfully, a
        payment provider answering again). No Slack message now: once the success has stood
        for ``recovery_quiet_period`` (60 s), the sender posts "recovered after 3 m 12 s, 41
        failures" in the thread of the incident's message, which shows it resolved.

        ``key_fields`` narrow it to the incidents whose fields match (the category's
        ``resolve_by`` fields, e.g. ``order_id``); none closes every incident of the category.
        Logged at INFO (let INFO through to the handler) without the ``alert`` tag: it is never
        counted as an alert::

            alerts.resolve("net_cancel_fail", order_id="ORD-1")
        """
        key = category if isinstance(category, str) else category_key(category)
        self._resolution(key, key_fields, 1)

    def _resolution(self, scope: str, labels: Mapping[str, Any], stacklevel: int) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        # Not tagged "alert": filters and counters that look for the tag must not count it.
        extra = alert_extra(scope, labels)
        del extra["alert"]
        extra[RESOLVE_ATTR] = {"scope": scope, "labels": dict(labels)}
        shown = " ".join(f"{k}={v}" for k, v in labels.items())
        self.logger.info(
            "%s resolved%s",
            scope,
            f" ({shown})" if shown else "",
            extra=extra,
            stacklevel=stacklevel + 2,
        )

    def payment_start(self, message: str, /, *, exc_info: ExcInfo = None, **fields: Any) -> None:
        """결제 시작 (info): a payment began.

        Key fields: order_id, amount, user_id.
        """
        self._log("payment_start", message, (), exc_info, fields, 1)

    def payment_success(self, message: str, /, *, exc_info: ExcInfo = None, **fields: Any) -> None:
        """결제 성공 (info): a payment went through.

        Key fields: order_id, amount, user_id, next_step.
        """
        self._log("payment_success", message, (), exc_info, fields, 1)

    def payment_fail(self, message: str, /, *, exc_info: ExcInfo = None, **fields: Any) -> None:
        """결제 실패 (error): a payment was refused or failed.

        Key fields: order_id, amount, user_id, reason.
        """
        self._log("payment_fail", message, (), exc_info, fields, 1)

    def payment_abandon(self, message: str, /, *, exc_info: ExcInfo = None, **fields: Any) -> None:
        """결제 이탈 (warning): the customer left, or a duplicate payment was stopped.

        Key fields: order_id, amount, user_id, reason.
        """
        self._log("payment_abandon", message, (), exc_info, fields, 1)

    def net_cancel_success(
        self, message: str, /, *, exc_info: ExcInfo = None, **fields: Any
    ) -> None:
        """망취소 성공 (warning): an unconfirmed payment was cancelled.

        Key fields: order_id, amount, user_id.
        """
        self._log("net_cancel_success", message, (), exc_info, fields, 1)

    def net_cancel_fail(self, message: str, /, *, exc_info: ExcInfo = None, **fields: Any) -> None:
        """망취소 실패 (critical): a payment may be charged without an order.

        Key fields: order_id, amount, user_id, reason.
        """
        self._log("net_cancel_fail", message, (), exc_info, fields, 1)

    def report_success(self, message: str, /, *, exc_info: ExcInfo = None, **fields: Any) -> None:
        """리포트 생성 성공 (info): a report was generated.

        Key fields: report_id.
        """
        self._log("report_success", message, (), exc_info, fields, 1)

    def report_fail(self, message: str, /, *, exc_info: ExcInfo = None, **fields: Any) -> None:
        """리포트 생성 실패 (error): a report could not be generated.

        Key fields: report_id, reason.
        """
        self._log("report_fail", message, (), exc_info, fields, 1)

    def api_timeout(self, message: str, /, *, exc_info: ExcInfo = None, **fields: Any) -> None:
        """API 타임아웃 (error): an outside API did not answer in time.

        Key fields: service, endpoint, elapsed_ms. `infra_alert` logs it for you.
        """
        self._log("api_timeout", message, (), exc_info, fields, 1)

    def network_error(self, message: str, /, *, exc_info: ExcInfo = None, **fields: Any) -> None:
        """네트워크 에러 (error): an outside API could not be reached.

        Key fields: service, endpoint, elapsed_ms. `infra_alert` logs it for you.
        """
        self._log("network_error", message, (), exc_info, fields, 1)
