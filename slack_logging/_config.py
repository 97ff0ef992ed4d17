"""Configuration: keyword arguments, env-var fallbacks, validation, and ``configure()`` for YAML.

Everything here runs at configuration time and raises ``ValueError`` naming the key; nothing here
runs on the logging path.

About 540 lines: one check per option, read top to bottom in :meth:`Settings.resolve` with the
table of accepted types, so a reader sees every option's rule in one place. The category rules
live in :mod:`~slack_logging._catalog`, the redaction ones in :mod:`~slack_logging._redact`.
"""

from __future__ import annotations

import contextvars
import logging
import logging.config
import math
import os
import re
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from slack_logging._catalog import Catalog, LinkDefaults
from slack_logging._redact import Redactor
from slack_logging._schedule import Schedule
from slack_logging._urls import LOOPBACK, mask_url, validate_webhook_url

__all__ = [
    "ENV_VARS",
    "Settings",
    "configure",
    "expand_env",
    "load_config",
    "mask_url",
    "parse_bool",
    "validate_webhook_url",
]

#: Environment variables read when the matching keyword argument is not given.
ENV_VARS: dict[str, str] = {
    "webhook_url": "SLACK_WEBHOOK_URL",
    "token": "SLACK_BOT_TOKEN",
    "channel": "SLACK_CHANNEL_ID",
    "enabled": "SLACK_ENABLED",
    "alerts_dir": "SLACK_ALERTS_DIR",
    "api_url": "SLACK_API_URL",
    "service": "SLACK_SERVICE_NAME",
    "environment": "SLACK_ENVIRONMENT",
    "coordination_url": "SLACK_LOGGING_REDIS_URL",
    "summary_at": "SLACK_SUMMARY_AT",
    "summary_zone": "SLACK_SUMMARY_ZONE",
}

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f", ""}
_CHANNEL_RE = re.compile(r"^[CGD][A-Z0-9]{2,}$|^#[a-z0-9._-]{1,80}$")


def parse_bool(value: object, *, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if not isinstance(value, (str, int)):
        raise ValueError(f"{key}: expected true or false, got {type(value).__name__}")
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{key}: expected true or false, got {value!r}")


def _positive(value: object, *, key: str, integer: bool = False, zero_ok: bool = False) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{key}: expected a number, got {value!r}") from None
    if isinstance(value, bool) or math.isnan(number) or math.isinf(number):
        raise ValueError(f"{key}: expected a finite number, got {value!r}")
    if number < 0 or (number == 0 and not zero_ok):
        raise ValueError(f"{key}: must be {'>= 0' if zero_ok else '> 0'}, got {value!r}")
    if integer and number != int(number):
        raise ValueError(f"{key}: expected a whole number, got {value!r}")
    return number


def parse_level(value: object, *, key: str) -> int | None:
    """A logging level given as a number or a name (``"error"``); None for None or ``""``."""
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, str):
        raise ValueError(f"{key}: expected a level name or number, got {type(value).__name__}")
    level = logging.getLevelName(value.strip().upper())
    if not isinstance(level, int):
        raise ValueError(f"{key}: unknown level {value!r} (DEBUG, INFO, WARNING, ERROR, CRITICAL)")
    return level


_Types = tuple[type, ...]
_TEXT: _Types = (str,)
_NUMBER: _Types = (int, float, str)
# What each option may be given as; values of other types are refused before anything
# converts them, so a list or an object never turns into a TypeError deep inside.
_OPTION_TYPES: dict[str, tuple[_Types, str]] = {
    **dict.fromkeys(
        (
            "webhook_url",
            "token",
            "channel",
            "api_url",
            "service",
            "environment",
            "coordination_url",
            "coordination_namespace",
            "mirror_rotate",
            "trace_url",
            "runbook",
            "summary_at",
            "summary_zone",
        ),
        (_TEXT, "a string"),
    ),
    **dict.fromkeys(
        (
            "rate_limit",
            "burst",
            "dedup_window",
            "dedup_quiet",
            "max_digest",
            "connect_timeout",
            "read_timeout",
            "queue_size",
            "shutdown_timeout",
            "flush_timeout",
            "mirror_max_bytes",
            "mirror_backups",
            "thread_ttl",
            "coordination_gather",
        ),
        (_NUMBER, "a number"),
    ),
    "alerts_dir": ((str, os.PathLike), "a directory path"),
    "enabled": ((bool, str, int), "true or false"),
    "mirror": ((bool, str, int), "true or false"),
    "untagged_level": ((int, str), "a level name or number"),
    "categories": ((Mapping,), "a mapping of category name to its settings"),
    "redact": ((Mapping,), "a mapping"),
    "ignore_loggers": ((list, tuple, set, frozenset), "a list of logger names"),
    "recovery_quiet_period": (_NUMBER, "a number"),
    "live_updates": ((bool, str, int), "true or false"),
    "live_updates_per_minute": (_NUMBER, "a number"),
}


def _check_types(options: Mapping[str, Any]) -> None:
    for name, value in options.items():
        rule = _OPTION_TYPES.get(name)
        if value is None or rule is None:
            continue
        types, wanted = rule
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            # The type only: the value may be a secret (a webhook URL given as bytes).
            raise ValueError(f"{name}: expected {wanted}, got {type(value).__name__}")


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _default_service() -> str:
    """The script's name; for ``python -m pkg`` (argv[0] ends in ``__main__.py``) the package's."""
    script = Path(sys.argv[0] or "python")
    name = script.parent.name if script.stem == "__main__" else script.stem
    return name or "python"


@dataclass(frozen=True)
class Settings:
    """Resolved, validated handler settings. Build with :meth:`resolve`."""

    webhook_url: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    channel: str | None = None
    enabled: bool = False
    alerts_dir: Path = Path("slack_alerts")
    api_url: str = "https://slack.com/api"
    catalog: Catalog = field(default_factory=Catalog)
    rate_limit: float = 1.0
    burst: int = 3
    dedup_window: float = 60.0
    dedup_quiet: float = 10.0
    max_digest: int = 1000
    untagged_level: int | None = None
    service: str | None = None
    environment: str | None = None
    connect_timeout: float = 3.05
    read_timeout: float = 5.0
    queue_size: int = 10_000
    shutdown_timeout: float = 1.0
    flush_timeout: float = 5.0
    mirror: bool = True
    mirror_max_bytes: int = 10 * 1024 * 1024
    mirror_backups: int = 5
    mirror_rotate: str = "size"
    redact: Mapping[str, Any] = field(default_factory=dict)
    thread_ttl: float = 24 * 3600.0
    coordination_url: str | None = field(default=None, repr=False)
    coordination_namespace: str = "slack_logging"
    coordination_gather: float = 0.3
    ignore_loggers: tuple[str, ...] = ()
    #: Default link templates for every category (each may set its own, or null).
    trace_url: str | None = None
    runbook: str | None = None
    #: When the periodic summary runs (``"09:00"``, ``"hourly"``, ``"*:30"``) and in which
    #: IANA zone; no summary unless both are set.
    summary_at: str | None = None
    summary_zone: str | None = None

    @property
    def schedule(self) -> Schedule | None:
        """The summary schedule, or ``None`` when ``summary_at`` is not set."""
        if self.summary_at is None:
            return None
        return Schedule.parse(self.summary_at, self.summary_zone)

    #: Seconds a success must stand before "recovered after …" is posted.
    recovery_quiet_period: float = 60.0
    #: Bot mode: edit a run's first message in place instead of posting follow-ups.
    live_updates: bool = True
    #: chat.update calls a minute for all live messages (Slack's Tier 3 allows about 50).
    live_updates_per_minute: float = 40.0

    @property
    def mode(self) -> str:
        """``"chat"`` (bot token, chat.postMessage), ``"webhook"``, or ``"none"``."""
        if self.token:
            return "chat"
        if self.webhook_url:
            return "webhook"
        return "none"

    @classmethod
    def resolve(cls, env: Mapping[str, str] | None = None, **kwargs: Any) -> Settings:  # noqa: PLR0912, PLR0915 - one check per option, read top to bottom
        """Validate keyword arguments, falling back to env vars; ``ValueError`` names the key."""
        env = os.environ if env is None else env
        if not isinstance(env, Mapping):
            raise ValueError(f"env: expected a mapping, got {type(env).__name__}")
        # dictConfig loaders (uvicorn --log-config, gunicorn logconfig_dict, Django LOGGING)
        # pass logging.yaml's ${VAR:-default} through as text: expand it as configure() does
        # (once: under configure() it is done, and a value may hold "${" of its own).
        if not _EXPANDED.get():
            kwargs = {k: expand_env(v, env) for k, v in kwargs.items()}
        unknown = sorted(set(kwargs) - set(cls.__dataclass_fields__) - {"categories"})
        if unknown:
            raise ValueError(
                f"{unknown[0]}: unknown option for SlackAlertHandler "
                f"(known: {', '.join(sorted([*cls.__dataclass_fields__, 'categories']))})"
            )
        _check_types(kwargs)

        def pick(name: str) -> Any:
            value = kwargs.get(name)
            if _blank(value) and name in ENV_VARS:
                value = env.get(ENV_VARS[name])
                if value is not None and not isinstance(value, str):
                    raise ValueError(
                        f"{name}: expected a string in {ENV_VARS[name]}, got {type(value).__name__}"
                    )
            return None if _blank(value) else value

        webhook_url = pick("webhook_url")
        if webhook_url is not None:
            webhook_url = validate_webhook_url(webhook_url)
        token = pick("token")
        if token is not None:
            token = str(token).strip()
            if not re.match(r"^xox[a-z]-[A-Za-z0-9-]+$", token):
                raise ValueError("token: expected a Slack bot token (xoxb-…)")
        channel = pick("channel")
        if channel is not None:
            channel = str(channel).strip()
            if not _CHANNEL_RE.match(channel):
                raise ValueError(f"channel: expected a channel id like C0123ABCD, got {channel!r}")
        if token is not None and channel is None:
            raise ValueError("channel: a bot token needs a channel (SLACK_CHANNEL_ID)")
        has_dest = webhook_url is not None or token is not None
        enabled_raw = pick("enabled")
        enabled = has_dest if enabled_raw is None else parse_bool(enabled_raw, key="enabled")
        if enabled and not has_dest:
            raise ValueError(
                "enabled: Slack delivery is on but no destination is set: give webhook_url "
                "(SLACK_WEBHOOK_URL), or token and channel (SLACK_BOT_TOKEN, SLACK_CHANNEL_ID)"
            )
        api_url = str(pick("api_url") or "https://slack.com/api").rstrip("/")
        api_parts = urlsplit(api_url)
        if api_parts.scheme not in ("https", "http") or not api_parts.hostname:
            raise ValueError(f"api_url: expected a URL like https://slack.com/api, got {api_url!r}")
        if api_parts.scheme == "http" and api_parts.hostname not in LOOPBACK:
            raise ValueError("api_url: plain http is only allowed to loopback")

        out: dict[str, Any] = {
            "webhook_url": webhook_url,
            "token": token,
            "channel": channel,
            "enabled": enabled,
            "alerts_dir": _directory(pick("alerts_dir")),
            "api_url": api_url,
            "trace_url": kwargs.get("trace_url") or None,
            "runbook": kwargs.get("runbook") or None,
            "catalog": Catalog(
                kwargs.get("categories"),
                LinkDefaults.compile(
                    runbook=kwargs.get("runbook") or None,
                    trace_url=kwargs.get("trace_url") or None,
                ),
            ),
            "service": pick("service") or _default_service(),
            "environment": pick("environment"),
            "coordination_url": pick("coordination_url"),
            "untagged_level": parse_level(kwargs.get("untagged_level"), key="untagged_level"),
        }
        numbers: dict[str, tuple[bool, bool]] = {  # name: (integer, zero allowed)
            "rate_limit": (False, False),
            "burst": (True, False),
            "dedup_window": (False, True),
            "dedup_quiet": (False, True),
            "max_digest": (True, False),
            "connect_timeout": (False, False),
            "read_timeout": (False, False),
            "queue_size": (True, False),
            "shutdown_timeout": (False, True),
            "flush_timeout": (False, True),
            "mirror_max_bytes": (True, False),
            "mirror_backups": (True, True),
            "thread_ttl": (False, False),
            "coordination_gather": (False, True),
        }
        for name, (integer, zero_ok) in numbers.items():
            if kwargs.get(name) is not None:
                value = _positive(kwargs[name], key=name, integer=integer, zero_ok=zero_ok)
                out[name] = int(value) if integer else value
        if kwargs.get("mirror") is not None:
            out["mirror"] = parse_bool(kwargs["mirror"], key="mirror")
        rotate = kwargs.get("mirror_rotate")
        if rotate is not None:
            if rotate not in ("size", "daily"):
                raise ValueError(f"mirror_rotate: expected 'size' or 'daily', got {rotate!r}")
            out["mirror_rotate"] = rotate
        redact = kwargs.get("redact")
        if redact is not None:
            if not isinstance(redact, Mapping):
                raise ValueError("redact: expected a mapping")
            out["redact"] = dict(redact)
        coord = out["coordination_url"]
        if coord is not None:
            coord = str(coord).strip()
            if urlsplit(coord).scheme not in ("redis", "rediss", "unix"):
                raise ValueError(
                    "coordination_url: expected redis://host:port/db (or rediss://, unix://)"
                )
            try:
                import redis  # noqa: F401
            except ImportError:
                raise ValueError(
                    "coordination_url: Redis coordination needs the extra: "
                    "pip install 'slack-logging[redis]'"
                ) from None
            out["coordination_url"] = coord
        namespace = kwargs.get("coordination_namespace")
        if namespace is not None:
            if not re.match(r"^[A-Za-z0-9_.:-]{1,64}$", str(namespace)):
                raise ValueError("coordination_namespace: letters, digits and _.:- only")
            out["coordination_namespace"] = str(namespace)
        ignore = kwargs.get("ignore_loggers")
        if ignore is not None:
            if not all(isinstance(n, str) and n for n in ignore):
                raise ValueError("ignore_loggers: expected a list of logger names")
            out["ignore_loggers"] = tuple(ignore)
        out.update(_summary_settings(pick("summary_at"), pick("summary_zone")))
        _check_deliveries(
            out["catalog"], mirror=out.get("mirror", True), summary=out.get("summary_at")
        )
        _followup_options(kwargs, out)
        return cls(**out)

    @property
    def host(self) -> str:
        return socket.gethostname()

    def secrets(self) -> list[str]:
        """Our own secrets, masked wherever they would appear: webhook URLs (whole and their
        path, which is the secret part) and the bot token."""
        urls = [self.webhook_url] + [c.webhook_url for c in self.catalog.values()]
        out = [u for u in urls if u]
        out += [urlsplit(u).path for u in out if len(urlsplit(u).path) > 1]
        if self.token:
            out.append(self.token)
        return out

    def redactor(self) -> Redactor:
        """The Redactor the ``redact`` option describes; ``ValueError`` names a bad key."""
        redact = dict(self.redact)
        known = {"enabled", "disable", "patterns", "secret_keys"}
        unknown = sorted(set(redact) - known)
        if unknown:
            raise ValueError(
                f"redact.{unknown[0]}: unknown key (known: {', '.join(sorted(known))})"
            )
        return Redactor(
            enabled=parse_bool(redact.get("enabled", True), key="redact.enabled"),
            disable=_or_empty(redact.get("disable")),
            extra_patterns=redact.get("patterns"),
            secret_keys=_or_empty(redact.get("secret_keys")),
            literals=self.secrets(),
            emoji=[c.emoji for c in self.catalog.values()],
        )


def _directory(value: Any) -> Path:
    if value is None:
        return Path("slack_alerts")
    try:
        return Path(value)
    except Exception as exc:  # a PathLike whose __fspath__ fails or returns bytes
        raise ValueError(f"alerts_dir: expected a directory path ({exc})") from None


def _or_empty(value: Any) -> Any:
    """``value``, or ``()`` for None and ``""``: never the value's own truth test, which may
    raise (the Redactor names the key of a value of the wrong type)."""
    return () if value is None or (isinstance(value, str) and not value) else value


def _summary_settings(at: Any, zone: Any) -> dict[str, Any]:
    if at is None:
        if zone is not None:
            Schedule.parse("00:00", zone)  # a bad zone is still named, even unused
        return {}
    schedule = Schedule.parse(at, zone)
    return {"summary_at": str(at).strip(), "summary_zone": schedule.zone.key}


def _check_deliveries(catalog: Catalog, *, mirror: bool, summary: str | None) -> None:
    """A ``delivery`` the rest of the settings cannot honour would lose alerts silently."""
    for key, cat in catalog.items():
        if cat.delivery == "mirror" and not mirror:
            raise ValueError(
                f"categories.{key}.delivery: 'mirror' writes the alert to the mirror file only, "
                "and the mirror is off (mirror: false)"
            )
        if cat.delivery == "summary" and summary is None:
            raise ValueError(
                f"categories.{key}.delivery: 'summary' needs summary_at and summary_zone "
                "(SLACK_SUMMARY_AT, SLACK_SUMMARY_ZONE), e.g. summary_at: '09:00', "
                "summary_zone: Asia/Seoul"
            )


def _followup_options(kwargs: Mapping[str, Any], out: dict[str, Any]) -> None:
    """Live messages and recovery notices (issue 17)."""
    quiet = kwargs.get("recovery_quiet_period")
    if quiet is not None:
        out["recovery_quiet_period"] = _positive(quiet, key="recovery_quiet_period", zero_ok=True)
    if kwargs.get("live_updates") is not None:
        out["live_updates"] = parse_bool(kwargs["live_updates"], key="live_updates")
    per_minute = kwargs.get("live_updates_per_minute")
    if per_minute is not None:
        value = _positive(per_minute, key="live_updates_per_minute")
        if not 1 <= value <= 50:
            raise ValueError(
                "live_updates_per_minute: expected 1 to 50 (chat.update is Slack's Tier 3, "
                f"about 50 a minute), got {per_minute!r}"
            )
        out["live_updates_per_minute"] = value


#: Set while configure() applies a document it has expanded already.
_EXPANDED = contextvars.ContextVar("slack_logging_expanded", default=False)


_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(value: Any, env: Mapping[str, str] | None = None) -> Any:
    """Expand ``${VAR}`` and ``${VAR:-default}`` in every string of a parsed YAML document.

    Shell semantics: an unset (or, with ``:-``, empty) variable takes the default, else ``""``.
    Expanding after parsing keeps a value with quotes or colons from breaking the YAML.
    """
    env = os.environ if env is None else env
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            got = env.get(m.group(1))
            if got is None or (got == "" and m.group(2) is not None):
                return m.group(2) or ""
            return got

        return _VAR_RE.sub(sub, value)
    if isinstance(value, Mapping):
        return {k: expand_env(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, env) for v in value]
    return value


def load_config(
    path: str | os.PathLike[str], env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Read a ``logging.yaml`` and expand env vars; no logging is changed."""
    import yaml  # imported here: only configure() and the CLI need PyYAML

    text = Path(path).read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a logging dictConfig mapping at the top level")
    expanded = expand_env(data, env)
    assert isinstance(expanded, dict)
    return expanded


def configure(
    path: str | os.PathLike[str] = "logging.yaml", env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Load ``path`` (YAML, ``${VAR:-default}`` expanded) and apply it with ``dictConfig``.

    Returns the configuration dict that was applied. Example::

        import slack_logging
        slack_logging.configure("logging.yaml")
    """
    config = load_config(path, env)
    config.setdefault("version", 1)
    token = _EXPANDED.set(True)
    try:
        logging.config.dictConfig(config)
    finally:
        _EXPANDED.reset(token)
    return config
