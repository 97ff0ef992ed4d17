"""What every ``slack-logging`` command shares: where its settings and alerts directory come
from, the outbox it reads (never created by a look), and the usage error (exit 2)."""

from __future__ import annotations

import argparse
import os
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slack_logging._config import ENV_VARS, load_config
from slack_logging._outbox import DB_NAME, Outbox

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_QUEUED",
    "EXIT_USAGE",
    "Source",
    "Usage",
    "alerts_dir_of",
    "existing_outbox",
    "handler_options",
    "source_of",
]

#: How a logging config names our handler (``class:`` or ``()``).
HANDLER_CLASSES = frozenset(
    {"slack_logging.SlackAlertHandler", "slack_logging._handler.SlackAlertHandler"}
)
#: Keys of a dictConfig handler entry that belong to dictConfig, not to the handler.
_DICTCONFIG_KEYS = frozenset({"class", "()", "level", "formatter", "filters", "."})

#: Exit codes: done, failed or left over, bad usage, stored for later (``send``).
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_QUEUED = 0, 1, 2, 3


def _yaml_error(path: str, exc: Exception) -> str:
    # Only the position and the problem: YAML's own message quotes the line, secret and all.
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or type(exc).__name__
    return f"{path}: invalid YAML{where}: {problem}"


def handler_options(
    path: str | os.PathLike[str], env: Mapping[str, str] | None = None
) -> tuple[str, dict[str, Any]]:
    """The name and keyword options of the SlackAlertHandler in a ``logging.yaml``.

    ``${VAR:-default}`` is expanded; dictConfig's own keys (``class``, ``level``, ``formatter``,
    ...) are left out. Raises ``ValueError`` when the file has no such handler.
    """
    import yaml  # imported here: only --config needs PyYAML

    try:
        config = load_config(path, env)
    except yaml.YAMLError as exc:
        raise ValueError(_yaml_error(str(path), exc)) from None
    handlers = config.get("handlers") or {}
    if not isinstance(handlers, Mapping):
        raise ValueError(f"{path}: handlers: expected a mapping")
    for name, spec in handlers.items():
        if isinstance(spec, Mapping) and (
            spec.get("class") in HANDLER_CLASSES or spec.get("()") in HANDLER_CLASSES
        ):
            return str(name), {k: v for k, v in spec.items() if k not in _DICTCONFIG_KEYS}
    raise ValueError(
        f"{path}: no handler with class slack_logging.SlackAlertHandler under handlers"
    )


@dataclass(frozen=True)
class Source:
    label: str
    options: dict[str, Any]


def source_of(args: argparse.Namespace) -> Source:
    if getattr(args, "config", None):
        name, options = handler_options(args.config)
        source = Source(f"{args.config} (handler {name!r})", options)
    else:
        source = Source("environment (SLACK_* variables)", {})
    if not source.options.get("service") and not os.environ.get(ENV_VARS["service"]):
        # The handler would name the service after sys.argv[0]: "__main__" under python -m.
        source.options["service"] = "slack-logging"
    return source


def alerts_dir_of(args: argparse.Namespace) -> tuple[Path, str]:
    """The alerts directory, absolute and normalised (``../x`` named as where it leads), and
    where that choice came from (for messages)."""
    if getattr(args, "alerts_dir", None):
        return _absolute(args.alerts_dir), "--alerts-dir"
    options = source_of(args).options
    if options.get("alerts_dir"):
        return _absolute(options["alerts_dir"]), f"alerts_dir in {args.config}"
    if os.environ.get(ENV_VARS["alerts_dir"]):
        return _absolute(os.environ[ENV_VARS["alerts_dir"]]), ENV_VARS["alerts_dir"]
    return _absolute("slack_alerts"), "the default ./slack_alerts"


def _absolute(path: str | os.PathLike[str]) -> Path:
    # abspath, not resolve(): ".." goes, a symlinked directory keeps the name it was given.
    return Path(os.path.abspath(os.path.expanduser(path)))


class Usage(Exception):
    """A command cannot run as asked; the message says why. Exit 2."""


def open_outbox(directory: Path) -> Outbox | None:
    path = directory / DB_NAME
    if not path.exists():
        return None
    # Read-only probe first: the Outbox itself would move a corrupt file aside (right for a
    # service, wrong for an operator who asked to look), or fall back to an empty memory copy.
    try:
        probe = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=1.0)
        try:
            probe.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            probe.close()
    except sqlite3.Error as exc:
        raise Usage(f"cannot read the outbox in {directory}: {exc}") from None
    outbox = Outbox(directory, origin="cli")
    if outbox.fault is not None:
        outbox.close()
        raise Usage(f"cannot read the outbox in {directory}: {outbox.fault}")
    return outbox


def existing_outbox(args: argparse.Namespace) -> tuple[Path, Outbox]:
    """The outbox of the directory the command reads; ``Usage`` naming it when there is none.

    Nothing is created: a typo in the path must not look like a healthy, empty directory.
    """
    directory, why = alerts_dir_of(args)
    if directory.exists() and not directory.is_dir():
        raise Usage(
            f"{directory} (from {why}) is a file, not an alerts directory. Pass --alerts-dir "
            "with the directory the service writes to (SLACK_ALERTS_DIR)."
        )
    if not directory.is_dir():
        raise Usage(
            f"no alerts directory at {directory} (from {why}). Is this the directory the service "
            "writes to? Pass --alerts-dir, or set SLACK_ALERTS_DIR as the service has it."
        )
    outbox = open_outbox(directory)
    if outbox is None:
        raise Usage(
            f"no outbox in {directory} (from {why}): {DB_NAME} is missing, so no process has "
            "stored an alert there. Is this the directory the service writes to?"
        )
    return directory, outbox
