"""Every configuration mistake, whatever the type given, is a ValueError naming the key;
a non-string alert category from a call site is coerced and delivered, never raised."""

from __future__ import annotations

import json
import logging
import logging.config
import math
import re
from pathlib import Path
from typing import Any

import pytest

from slack_logging import SlackAlertHandler
from slack_logging._alert_logger import AlertLogger
from slack_logging._catalog import Catalog
from slack_logging.testing import FakeSlack

HOOK = "https://hooks.slack.com/services/T0FAKEFAKE/B0FAKEFAKE/fakefakefakefakefakefake"


class Explodes:
    """A value whose every conversion raises."""

    def __str__(self) -> str:
        raise RuntimeError("no str")

    __repr__ = __str__

    def __float__(self) -> float:
        raise RuntimeError("no float")

    def __iter__(self) -> Any:
        raise RuntimeError("no iter")

    def __bool__(self) -> bool:
        raise RuntimeError("no truth value")

    def __fspath__(self) -> str:
        raise RuntimeError("no path")


# Wrong types for every option: each must be accepted or refused with a ValueError naming it.
WRONG_TYPES: list[Any] = [
    5,
    -1,
    1.5,
    math.nan,
    True,
    "LOUD",
    "",
    [1],
    ["a", 2],
    {"a": 1},
    {"a": {"b": 1}},
    ("x",),
    object(),
    Explodes(),
    b"bytes",
    math.inf,
    10**30,
    0,
    Path("/x"),
    set(),
    frozenset({"a"}),
]

OPTIONS = [
    "webhook_url",
    "token",
    "channel",
    "enabled",
    "alerts_dir",
    "api_url",
    "categories",
    "rate_limit",
    "burst",
    "dedup_window",
    "dedup_quiet",
    "max_digest",
    "untagged_level",
    "service",
    "environment",
    "connect_timeout",
    "read_timeout",
    "queue_size",
    "shutdown_timeout",
    "flush_timeout",
    "mirror",
    "mirror_max_bytes",
    "mirror_backups",
    "mirror_rotate",
    "redact",
    "thread_ttl",
    "coordination_url",
    "coordination_namespace",
    "coordination_gather",
    "ignore_loggers",
    "level",
    "trace_url",
    "runbook",
    "summary_at",
    "summary_zone",
    "recovery_quiet_period",
    "live_updates",
    "live_updates_per_minute",
    "env",
    "settings",
]


def build(tmp_path: Path, **options: Any) -> SlackAlertHandler:
    options.setdefault("alerts_dir", tmp_path / "alerts")
    options.setdefault("enabled", False)
    return SlackAlertHandler(**options)


def assert_accepted_or_named(tmp_path: Path, key: str, **options: Any) -> None:
    try:
        handler = build(tmp_path, **options)
    except ValueError as exc:
        assert re.match(rf"{re.escape(key)}\b", str(exc)), f"{key}: {exc}"
    else:
        handler.close()


@pytest.mark.parametrize("option", OPTIONS)
@pytest.mark.parametrize("value", WRONG_TYPES, ids=lambda v: type(v).__name__)
def test_every_option_every_type(tmp_path: Path, option: str, value: object) -> None:
    """Any value of any type for any option: accepted, or a ValueError starting with its name."""
    assert_accepted_or_named(tmp_path, option, **{option: value})


CATEGORY_FIELDS = [
    "title",
    "severity",
    "emoji",
    "color",
    "mention",
    "channel",
    "webhook_url",
    "key_fields",
    "links",
    "runbook",
    "trace_url",
    "delivery",
    "resolve_by",
]


@pytest.mark.parametrize("name", CATEGORY_FIELDS)
@pytest.mark.parametrize("value", WRONG_TYPES, ids=lambda v: type(v).__name__)
def test_every_category_field_every_type(tmp_path: Path, name: str, value: object) -> None:
    """``categories.refund.<field>`` of any type: accepted, or a ValueError naming the field."""
    key = f"categories.refund.{name}"
    assert_accepted_or_named(tmp_path, key, categories={"refund": {name: value}})


@pytest.mark.parametrize("name", ["enabled", "disable", "patterns", "secret_keys"])
@pytest.mark.parametrize("value", WRONG_TYPES, ids=lambda v: type(v).__name__)
def test_every_redact_key_every_type(tmp_path: Path, name: str, value: object) -> None:
    """``redact.<key>`` of any type: accepted, or a ValueError naming it."""
    assert_accepted_or_named(tmp_path, f"redact.{name}", redact={name: value})


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"categories": ["payment_fail"]}, "categories"),
        ({"categories": "payment_fail"}, "categories"),
        ({"categories": {"refund": {"key_fields": 5}}}, "categories.refund.key_fields"),
        ({"categories": {"refund": ["title"]}}, "categories.refund"),
        ({"categories": {"refund": Explodes()}}, "categories.refund"),
        ({"settings": {"webhook_url": HOOK}}, "settings"),
        ({"categories": {5: {}}}, "categories"),
        ({"ignore_loggers": 5}, "ignore_loggers"),
        ({"ignore_loggers": "noisy"}, "ignore_loggers"),
        ({"level": "LOUD"}, "level"),
        ({"level": [10]}, "level"),
        ({"untagged_level": "LOUD"}, "untagged_level"),
        ({"untagged_level": 1.5}, "untagged_level"),
        ({"redact": {"disable": 5}}, "redact.disable"),
        ({"redact": {"patterns": ["x"]}}, "redact.patterns"),
        ({"redact": {"secret_keys": 5}}, "redact.secret_keys"),
        ({"redact": {"enabled": "maybe"}}, "redact.enabled"),
        ({"redact": {"loud": 1}}, "redact.loud"),
        ({"redact": "off"}, "redact"),
        ({"mirror_rotate": ["daily"]}, "mirror_rotate"),
        ({"burst": "three"}, "burst"),
        ({"alerts_dir": 5}, "alerts_dir"),
        ({"webhook_url": 5}, "webhook_url"),
        ({"token": ["xoxb-1"]}, "token"),
        ({"coordination_namespace": ["x"]}, "coordination_namespace"),
    ],
)
def test_known_mistakes_name_their_key(tmp_path: Path, options: dict[str, Any], key: str) -> None:
    """The mistakes seen in the field each raise a ValueError that starts with the key."""
    with pytest.raises(ValueError, match=rf"^{re.escape(key)}\b"):
        build(tmp_path, **options)


def test_options_cover_every_handler_parameter() -> None:
    """The table above names every keyword SlackAlertHandler takes (a new one is tested too)."""
    import inspect

    params = set(inspect.signature(SlackAlertHandler.__init__).parameters) - {"self"}
    assert params == set(OPTIONS)


@pytest.mark.parametrize(
    "value", [5, ["x"], b"x", None, Explodes()], ids=lambda v: type(v).__name__
)
@pytest.mark.parametrize("option", ["webhook_url", "alerts_dir", "service", "enabled"])
def test_env_values_of_any_type(tmp_path: Path, option: str, value: object) -> None:
    """An ``env=`` mapping holding a non-string: accepted as unset, or refused naming the key."""
    from slack_logging._config import ENV_VARS

    try:
        handler = SlackAlertHandler(env={ENV_VARS[option]: value}, alerts_dir=tmp_path / "a")
    except ValueError as exc:
        assert str(exc).startswith(option), exc
    else:
        handler.close()


def test_catalog_refuses_a_list_naming_categories() -> None:
    """``Catalog`` built directly refuses a list with the key name, not an AttributeError."""
    with pytest.raises(ValueError, match=r"^categories"):
        Catalog(["payment_fail"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("tag", "expected"),
    [(5, "5"), (["x"], "x"), (None, "None"), (4.5, "4.5"), (("a", "b"), "a_b")],
)
def test_non_string_tags_are_delivered(tmp_path: Path, tag: object, expected: str) -> None:
    """``extra={"alert": 5}`` and friends are coerced to a category and delivered."""
    log = logging.getLogger(f"tests.tags.{tmp_path.name}")
    log.propagate = False
    with FakeSlack() as fake:
        handler = SlackAlertHandler(webhook_url=fake.webhook_url, alerts_dir=tmp_path / "a")
        log.addHandler(handler)
        try:
            log.error("odd tag", extra={"alert": tag})
            assert handler.flush(10)
        finally:
            log.removeHandler(handler)
            handler.close()
        (message,) = fake.messages
    assert message.payload["metadata"]["event_payload"]["category"] == expected


@pytest.mark.parametrize("category", [["x"], 5, None, ("a",), {"k": 1}])
def test_alert_logger_coerces_any_category(tmp_path: Path, category: Any) -> None:
    """``AlertLogger.alert(["x"], ...)`` logs an alert instead of raising into the caller."""
    log = logging.getLogger(f"tests.alertlogger.{tmp_path.name}")
    log.propagate = False
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    log.addHandler(Keep())
    AlertLogger(log).alert(category, "refund %s failed", "ORD-1", order_id="ORD-1")
    (record,) = records
    assert isinstance(record.__dict__["alert"], str)
    assert record.getMessage() == "refund ORD-1 failed"
    assert record.levelno == logging.ERROR


def test_webhook_url_error_never_shows_the_secret(tmp_path: Path) -> None:
    """A refused webhook URL is named and shown masked."""
    bad = HOOK.replace("https://", "http://")
    with pytest.raises(ValueError, match=r"^webhook_url") as info:
        build(tmp_path, webhook_url=bad)
    assert "fakefakefakefakefakefake" not in str(info.value)


def test_an_unknown_option_is_named(tmp_path: Path) -> None:
    """A misspelt option: the handler takes typed keyword parameters (mypy flags the typo), so
    Python's TypeError names it; through dictConfig, its ValueError carries that cause."""
    with pytest.raises(TypeError, match="bogus_option"):
        build(tmp_path, bogus_option=1)
    config = {
        "version": 1,
        "handlers": {
            "slack": {
                "class": "slack_logging.SlackAlertHandler",
                "alerts_dir": str(tmp_path / "alerts"),
                "enabled": False,
                "bogus_option": 1,
            }
        },
    }
    with pytest.raises(ValueError, match="slack") as caught:
        logging.config.dictConfig(config)
    assert "bogus_option" in str(caught.value.__cause__)


def test_alert_logger_delivers_any_category(tmp_path: Path) -> None:
    """Categories of any type through ``AlertLogger.alert`` reach Slack, one alert each, and
    a card number given as the category is masked there."""
    log = logging.getLogger(f"tests.alertlogger.sent.{tmp_path.name}")
    log.propagate = False
    categories: list[Any] = [["x"], 5, None, ("a",), {"k": 1}, Explodes(), 4111111111111111]
    with FakeSlack() as fake:
        handler = SlackAlertHandler(
            webhook_url=fake.webhook_url, alerts_dir=tmp_path / "a", rate_limit=100, burst=100
        )
        log.handlers[:] = [handler]
        try:
            for category in categories:
                AlertLogger(log).alert(category, "refund %s failed", "ORD-1")
            assert handler.flush(10)
        finally:
            log.handlers.clear()
            handler.close()
        assert fake.alerts_covered == len(categories)
        sent = json.dumps([m.payload for m in fake.messages], ensure_ascii=False)
    assert "41111111" not in sent
