"""SQLite files in the field: what failed, how to open one that may be corrupt or unwritable, how
to close one that was made immutable, and how to make a row any SQLite will take.

Used by :mod:`slack_logging._outbox`; stdlib only.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

__all__ = [
    "Unwritable",
    "clean_json",
    "clean_number",
    "clean_text",
    "describe_fault",
    "discard",
    "fault_kind",
    "fault_remedy",
    "is_corrupt",
    "is_storage_fault",
    "move_aside",
    "side_files",
    "unwritable_file",
]

# SQLITE_CORRUPT and SQLITE_NOTADB (primary codes); the texts are for Python 3.10, which has no
# ``sqlite_errorcode``.
_CORRUPT_CODES = frozenset({11, 26})
_CORRUPT_TEXTS = ("malformed", "not a database", "file is encrypted")
_SURROGATE = re.compile("[\ud800-\udfff]")


class Unwritable(OSError):
    """The outbox (or its WAL files) exists but this process may not write it."""


def is_storage_fault(exc: BaseException) -> bool:
    """The storage, not the row, failed: locked, full, read-only, gone, corrupt or closed."""
    if isinstance(exc, (sqlite3.OperationalError, OSError)):
        return True
    if type(exc) is sqlite3.DatabaseError:  # corrupt or not a database
        return True
    return isinstance(exc, sqlite3.ProgrammingError) and "closed" in str(exc)


def is_corrupt(exc: BaseException) -> bool:
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return (code & 0xFF) in _CORRUPT_CODES
    text = str(exc).lower()
    return any(hint in text for hint in _CORRUPT_TEXTS)


def side_files(path: Path) -> list[Path]:
    return [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm")]


def unwritable_file(path: Path | str) -> str | None:
    """The first of the database and its WAL files that exists but cannot be written.

    SQLite maps the ``-shm`` file into memory; writing a page of it once the file is immutable
    kills the process with SIGBUS, so such files must never be opened, or used again once seen.
    Runs before every use of the file, so it works on strings, not Path objects.
    """
    base = os.fspath(path)
    for p in (base, base + "-wal", base + "-shm"):
        if not _writable(p):
            return p
    return None


def _writable(path: str) -> bool:
    """Writable, or absent. Unwritable only when three asks in a row find it there and not
    writable: another process may create the file (or remove its WAL files on close) between
    ``access`` and ``lexists``."""
    return any(os.access(path, os.W_OK) or not os.path.lexists(path) for _ in range(3))


def move_aside(path: Path) -> Path:
    """Rename a corrupt database (and its WAL) to ``<name>.corrupt-<UTC time>``; the shared
    memory index is rebuilt by SQLite, so it is removed. Returns the new name."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
        n += 1
    os.replace(path, target)
    wal, shm = side_files(path)
    with contextlib.suppress(FileNotFoundError):
        os.replace(wal, target.with_name(target.name + "-wal"))
    with contextlib.suppress(FileNotFoundError):
        shm.unlink()
    return target


_KEPT: list[sqlite3.Connection] = []


def discard(conn: sqlite3.Connection, *, unsafe: bool) -> None:
    """Close ``conn``, never raising. ``unsafe``: its files were made unwritable, so the
    checkpoint SQLite runs on close would write the mapped ``-shm`` and die of SIGBUS; close
    without it, or (Python < 3.12) keep the connection alive for the life of the process."""
    if unsafe:
        setconfig = getattr(conn, "setconfig", None)
        no_ckpt = getattr(sqlite3, "SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE", None)
        if setconfig is None or no_ckpt is None:
            _KEPT.append(conn)
            # An extra reference: not even interpreter teardown will finalize it.
            ctypes.pythonapi.Py_IncRef(ctypes.py_object(conn))
            return
        try:
            setconfig(no_ckpt, True)
        except Exception:
            _KEPT.append(conn)
            ctypes.pythonapi.Py_IncRef(ctypes.py_object(conn))
            return
    with contextlib.suppress(Exception):  # a broken file cannot stop us from letting go of it
        conn.close()


def clean_text(value: Any) -> str:
    """``value`` as text SQLite can encode: lone surrogates (from ``surrogateescape`` file names
    and the like) become visible ``\\udcxx`` escapes instead of failing the insert."""
    text = value if isinstance(value, str) else _text_of(value)
    if text.isascii():
        return text
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def clean_json(text: str) -> str:
    """A JSON document with raw lone surrogates made into escaped text (still valid JSON)."""
    if text.isascii():
        return text
    return _SURROGATE.sub(lambda m: f"\\\\u{ord(m.group()):04x}", text)


def clean_number(value: Any, default: float) -> float:
    try:
        number = float(value)
    except BaseException:
        return default
    return number if math.isfinite(number) else default


def _text_of(value: Any) -> str:
    try:
        return str(value)
    except BaseException:
        return f"<unprintable {type(value).__name__}>"


def fault_kind(exc: BaseException) -> str:
    if is_corrupt(exc):
        return "corrupt"
    if isinstance(exc, (Unwritable, PermissionError)):
        return "permission"
    if isinstance(exc, FileNotFoundError):
        return "missing"
    text = str(exc).lower()
    for kind in ("locked", "full", "readonly", "i/o"):
        if kind in text:
            return kind
    return type(exc).__name__


def describe_fault(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return f"{type(exc).__name__}: {exc}"[:200]


def fault_remedy(exc: BaseException, path: Path | None) -> str:
    kind = fault_kind(exc)
    if kind in {"permission", "readonly"}:
        return (
            f"Check the owner and mode of {path} and its -wal/-shm files (chown them to the app's "
            "user; lsattr shows an immutable flag)."
        )
    if kind == "locked":
        return "Another process holds the outbox's write lock (stopped or stuck?)."
    if kind == "full":
        return "Free space on that disk."
    if kind == "missing":
        return "The alerts directory was removed or renamed; it is created again."
    return ""
