"""Configuration: env fallbacks, validation errors naming the key, dictConfig forms, YAML."""

from __future__ import annotations

import logging
import logging.config
from pathlib import Path
from typing import Any

import pytest

from slack_logging import SlackAlertHandler, configure
from slack_logging._config import Settings, expand_env, mask_url
from slack_logging.testing import FakeSlack

FAKE_HOOK = "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX"


class TestResolve:
    def test_env_fallbacks(self) -> None:
        """Every named env var is read when the keyword is not given."""
        s = Settings.resolve(
            {
                "SLACK_BOT_TOKEN": "xoxb-1-2-abc",
                "SLACK_CHANNEL_ID": "C0123ABCDEF",
                "SLACK_ALERTS_DIR": "/tmp/x",
                "SLACK_API_URL": "http://127.0.0.1:9/api/",
                "SLACK_ENABLED": "true",
            }
        )
        assert (s.mode, s.channel, str(s.alerts_dir), s.api_url, s.enabled) == (
            "chat",
            "C0123ABCDEF",
            "/tmp/x",
            "http://127.0.0.1:9/api",
            True,
        )

    def test_keyword_wins_over_env(self) -> None:
        """An explicit keyword beats the env var."""
        s = Settings.resolve({"SLACK_ALERTS_DIR": "/from/env"}, alerts_dir="/from/kw")
        assert str(s.alerts_dir) == "/from/kw"

    def test_enabled_defaults_to_destination_present(self) -> None:
        """No destination: off. A webhook: on."""
        assert not Settings.resolve({}).enabled
        assert Settings.resolve({"SLACK_WEBHOOK_URL": FAKE_HOOK}).enabled

    @pytest.mark.parametrize("value", ["false", "0", "no", "off", "FALSE"])
    def test_kill_switch_values(self, value: str) -> None:
        """SLACK_ENABLED accepts the usual spellings of false."""
        env = {"SLACK_WEBHOOK_URL": FAKE_HOOK, "SLACK_ENABLED": value}
        assert not Settings.resolve(env).enabled

    def test_defaults(self) -> None:
        """Sensible defaults: ./slack_alerts, 1 msg/s, burst 3, 60 s dedup, 1 s shutdown."""
        s = Settings.resolve({})
        assert (str(s.alerts_dir), s.rate_limit, s.burst, s.dedup_window, s.shutdown_timeout) == (
            "slack_alerts",
            1.0,
            3,
            60.0,
            1.0,
        )

    def test_secrets_not_in_repr(self) -> None:
        """Settings' repr shows neither the webhook path nor the token."""
        s = Settings.resolve({}, webhook_url=FAKE_HOOK)
        assert "XXXXXXXX" not in repr(s)
        t = Settings.resolve({}, token="xoxb-1-2-secretpart", channel="C0123ABCD")
        assert "secretpart" not in repr(t)


class TestErrors:
    @pytest.mark.parametrize(
        ("kwargs", "key"),
        [
            ({"webhook_url": "not a url"}, "webhook_url"),
            ({"webhook_url": "ftp://hooks.slack.com/services/T/B/X"}, "webhook_url"),
            ({"webhook_url": "http://hooks.slack.com/services/T/B/X"}, "webhook_url"),
            ({"webhook_url": "https://hooks.slack.com/oops"}, "webhook_url"),
            ({"rate_limit": 0}, "rate_limit"),
            ({"rate_limit": "fast"}, "rate_limit"),
            ({"rate_limit": float("nan")}, "rate_limit"),
            ({"burst": 1.5}, "burst"),
            ({"enabled": "maybe"}, "enabled"),
            ({"enabled": "true"}, "enabled"),
            ({"token": "xoxb-1-2-abc"}, "channel"),
            ({"token": "not-a-token", "channel": "C0123ABCD"}, "token"),
            ({"channel": "general chat", "token": "xoxb-1-2-a"}, "channel"),
            ({"categories": {"payment_fail": {"severity": "fatal"}}}, "severity"),
            ({"categories": {"payment_fail": {"colour": "#ffffff"}}}, "colour"),
            ({"categories": {"payment_fail": {"color": "red"}}}, "color"),
            ({"categories": {"payment_fail": {"mention": "<!channel>"}}}, "mention"),
            ({"categories": {"bad name!": {}}}, "categories"),
            ({"untagged_level": "LOUD"}, "untagged_level"),
            ({"mirror_rotate": "hourly"}, "mirror_rotate"),
            ({"no_such_option": 1}, "no_such_option"),
        ],
    )
    def test_bad_value_names_the_key(self, kwargs: dict[str, Any], key: str) -> None:
        """Bad configuration fails fast with a ValueError naming the key."""
        with pytest.raises(ValueError, match=key):
            Settings.resolve({}, **kwargs)

    def test_malformed_url_error_hides_secret(self) -> None:
        """The error for a bad webhook URL does not echo its secret path."""
        with pytest.raises(ValueError) as info:
            Settings.resolve({}, webhook_url="https://hooks.slack.com/oops/SECRETSECRET")
        assert "SECRETSECRET" not in str(info.value)

    def test_handler_constructor_raises_value_error(self, tmp_path: Path) -> None:
        """The handler itself raises at construction, not at the first log call."""
        with pytest.raises(ValueError, match="rate_limit"):
            SlackAlertHandler(webhook_url=FAKE_HOOK, rate_limit=-1, alerts_dir=tmp_path)

    def test_unknown_redact_key(self, tmp_path: Path) -> None:
        """An unknown key under redact is named."""
        with pytest.raises(ValueError, match=r"redact\.nope"):
            SlackAlertHandler(alerts_dir=tmp_path, redact={"nope": 1})


def test_mask_url() -> None:
    """mask_url keeps scheme, host and the first path segment only."""
    assert mask_url(FAKE_HOOK) == "https://hooks.slack.com/services/****/****"


class TestExpandEnv:
    @pytest.mark.parametrize(
        ("text", "env", "expected"),
        [
            ("${A}", {"A": "1"}, "1"),
            ("${A}", {}, ""),
            ("${A:-dflt}", {}, "dflt"),
            ("${A:-dflt}", {"A": ""}, "dflt"),
            ("${A:-dflt}", {"A": "set"}, "set"),
            ("x-${A}-${B:-b}", {"A": "a"}, "x-a-b"),
            ("no vars", {}, "no vars"),
        ],
    )
    def test_expansion(self, text: str, env: dict[str, str], expected: str) -> None:
        """${VAR} and ${VAR:-default} follow shell semantics."""
        assert expand_env(text, env) == expected

    def test_nested(self) -> None:
        """Expansion walks mappings and lists."""
        doc = {"a": ["${X}", {"b": "${Y:-2}"}], "n": 3}
        assert expand_env(doc, {"X": "1"}) == {"a": ["1", {"b": "2"}], "n": 3}


def _dict_config(form: str, fake: FakeSlack, alerts_dir: Path) -> dict[str, Any]:
    handler: dict[str, Any] = {
        "webhook_url": fake.webhook_url,
        "alerts_dir": str(alerts_dir),
        "rate_limit": 1,
        "categories": {"payment_fail": {"mention": "here"}, "refund": {"title": "환불"}},
        "level": "INFO",
    }
    handler["class" if form == "class" else "()"] = "slack_logging.SlackAlertHandler"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"slack": handler},
        "loggers": {"dictcfg": {"handlers": ["slack"], "level": "INFO", "propagate": False}},
    }


@pytest.mark.parametrize("form", ["class", "()"])
def test_dictconfig_forms(form: str, fake_slack: FakeSlack, alerts_dir: Path) -> None:
    """Both `class:` and `():` build a working handler with every key kept."""
    logging.config.dictConfig(_dict_config(form, fake_slack, alerts_dir))
    log = logging.getLogger("dictcfg")
    (h,) = log.handlers
    assert isinstance(h, SlackAlertHandler)
    try:
        assert h.settings.catalog["refund"].title == "환불"
        assert h.level == logging.INFO
        log.error("x", extra={"alert": "payment_fail"})
        assert h.flush(5)
        (msg,) = fake_slack.wait_for(1)
        assert msg.payload["text"].startswith("<!here>")
    finally:
        log.handlers.clear()
        h.close()


def test_configure_yaml_with_env(
    tmp_path: Path, fake_slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """configure() loads YAML, expands ${VAR:-default} and applies it."""
    monkeypatch.setenv("SLACK_WEBHOOK_URL", fake_slack.webhook_url)
    cfg = tmp_path / "logging.yaml"
    cfg.write_text(
        f"""
version: 1
disable_existing_loggers: false
handlers:
  slack:
    class: slack_logging.SlackAlertHandler
    webhook_url: ${{SLACK_WEBHOOK_URL}}
    enabled: ${{SLACK_ENABLED:-true}}
    alerts_dir: ${{SLACK_ALERTS_DIR:-{tmp_path / "yaml_alerts"}}}
loggers:
  yamlcfg:
    handlers: [slack]
    level: INFO
    propagate: false
""",
        encoding="utf-8",
    )
    applied = configure(cfg)
    assert applied["handlers"]["slack"]["enabled"] == "true"
    log = logging.getLogger("yamlcfg")
    (h,) = log.handlers
    try:
        log.error("yaml", extra={"alert": "report_fail"})
        assert h.flush(5)
        assert (tmp_path / "yaml_alerts" / "alerts.jsonl").exists()
        assert len(fake_slack.wait_for(1)) == 1
    finally:
        log.handlers.clear()
        h.close()


def test_configure_expands_env_once(tmp_path: Path, fake_slack: FakeSlack) -> None:
    """configure(env=...) expands the document once, with the env it was given: a value that
    holds "${...}" itself is kept as it is, and os.environ is not consulted a second time."""
    cfg = tmp_path / "logging.yaml"
    cfg.write_text(
        """
version: 1
handlers:
  slack:
    class: slack_logging.SlackAlertHandler
    webhook_url: ${HOOK}
    service: ${SVC}
    alerts_dir: ${DIR}
loggers:
  once:
    handlers: [slack]
""",
        encoding="utf-8",
    )
    env = {"HOOK": fake_slack.webhook_url, "SVC": "pay-${HOME:-x}", "DIR": str(tmp_path / "a")}
    configure(cfg, env=env)
    (h,) = logging.getLogger("once").handlers
    try:
        assert isinstance(h, SlackAlertHandler)
        assert h.settings.service == "pay-${HOME:-x}"
    finally:
        logging.getLogger("once").handlers.clear()
        h.close()


def test_shipped_logging_yaml_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The repository's logging.yaml applies with no env set (delivery off, mirror on)."""
    monkeypatch.chdir(tmp_path)
    root = Path(__file__).resolve().parent.parent
    configure(root / "logging.yaml")
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, SlackAlertHandler)] + [
        h
        for name in logging.root.manager.loggerDict
        for h in getattr(logging.getLogger(name), "handlers", [])
        if isinstance(h, SlackAlertHandler)
    ]
    assert handlers
    for h in set(handlers):
        assert not h.settings.enabled
        h.close()


def test_every_knob_reaches_the_handler(fake_slack: FakeSlack, alerts_dir: Path) -> None:
    """Pacing, dedup, digest and redaction settings from dictConfig take effect."""
    cfg = _dict_config("class", fake_slack, alerts_dir)
    cfg["handlers"]["slack"].update(
        rate_limit=2,
        burst=5,
        dedup_window=30,
        dedup_quiet=4,
        max_digest=50,
        shutdown_timeout=0.5,
        redact={"disable": ["email"], "patterns": {"order": r"ORD-\d+"}},
    )
    logging.config.dictConfig(cfg)
    log = logging.getLogger("dictcfg")
    (h,) = log.handlers
    assert isinstance(h, SlackAlertHandler)
    try:
        assert h.sender is not None
        p = h.sender.planner
        assert (p.rate, p.burst, p.dedup_window, p.dedup_quiet, p.max_digest) == (2, 5, 30, 4, 50)
        assert h.settings.shutdown_timeout == 0.5
        log.error("mail hong@example.com about ORD-123", extra={"alert": "report_fail"})
        assert h.flush(5)
        text = fake_slack.wait_for(1)[0].payload["text"]
        assert "hong@example.com" in text
        assert "ORD-123" not in text and "[REDACTED:order]" in text
        mirror = (alerts_dir / "alerts.jsonl").read_text(encoding="utf-8")
        assert "ORD-123" not in mirror and "hong@example.com" in mirror
    finally:
        log.handlers.clear()
        h.close()
