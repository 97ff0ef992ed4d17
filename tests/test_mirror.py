"""The JSON-lines mirror: strict, redacted lines; private, rotated, multi-process-safe files."""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import stat
import subprocess
import sys
import warnings
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from slack_logging._mirror import Mirror
from slack_logging._redact import Redactor

REPO = Path(__file__).resolve().parents[1]
MARK = "S3CRET-MARKER"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"bare {name} is not JSON")


def strict(line: str) -> dict[str, Any]:
    data = json.loads(line, parse_constant=_reject_constant)
    assert isinstance(data, dict)
    return data


def read_lines(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n")
    return [strict(line) for line in text.splitlines()]


def make_record(
    msg: object = "hello",
    *args: object,
    level: int = logging.ERROR,
    extra: dict[str, Any] | None = None,
    exc_info: Any = None,
    sinfo: str | None = None,
    created: float | None = None,
) -> logging.LogRecord:
    record = logging.getLogger("tests.mirror").makeRecord(
        "tests.mirror", level, "/srv/app/db.py", 42, msg, args, exc_info, "connect", extra, sinfo
    )
    if created is not None:
        record.created = created
    return record


def exc_info_of(error: BaseException) -> Any:
    try:
        raise error
    except BaseException:
        return sys.exc_info()


class PassThrough(Redactor):
    """Redacts nothing and leaves values as they are: exercises the mirror's own JSON safety."""

    def text(self, value: str) -> str:
        return value

    def value(self, obj: object) -> Any:
        return obj


class MarkerRedactor(Redactor):
    """Masks MARK wherever it sees it; stands in for the real patterns."""

    def text(self, value: str) -> str:
        return value.replace(MARK, "[MASKED]")

    def value(self, obj: object) -> Any:
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, dict):
            return {k: self.value(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [self.value(v) for v in obj]
        return obj


class BrokenRedactor(Redactor):
    def text(self, value: str) -> str:
        raise RuntimeError(f"redactor broke on {value!r}")

    def value(self, obj: object) -> Any:
        raise RuntimeError("redactor broke")


class Unreprable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class OnlyRepr:
    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        return "OnlyRepr()"


@pytest.fixture
def alerts(tmp_path: Path) -> Path:
    directory = tmp_path / "alerts"
    directory.mkdir()
    return directory


@pytest.fixture
def mirror(alerts: Path) -> Iterator[Mirror]:
    m = Mirror(alerts, redactor=Redactor(), host="web-1")
    yield m
    m.close()


class TestFormat:
    def test_line_is_strict_json_without_newline(self, mirror: Mirror) -> None:
        """A line parses with bare NaN/Infinity rejected and carries no newline."""
        line = mirror.format(make_record("user %s failed", "bob"))
        assert "\n" not in line
        assert strict(line)["message"] == "user bob failed"

    def test_fixed_fields(self, mirror: Mirror) -> None:
        """Level, logger, host, pid, thread and the call site are always there."""
        data = strict(mirror.format(make_record(level=logging.WARNING)))
        assert data["level"] == "WARNING"
        assert data["logger"] == "tests.mirror"
        assert data["host"] == "web-1"
        assert data["pid"] == os.getpid()
        assert data["thread"] == "MainThread"
        assert (data["module"], data["func"], data["lineno"]) == ("db", "connect", 42)

    @pytest.mark.parametrize(
        ("created", "expected"),
        [
            (1714564800.1234, "2024-05-01T12:00:00.123+00:00"),
            (1714564800.999, "2024-05-01T12:00:00.999+00:00"),
            (1714564801.5, "2024-05-01T12:00:01.500+00:00"),
            (0.0, "1970-01-01T00:00:00.000+00:00"),
            (-0.5, "1969-12-31T23:59:59.500+00:00"),
        ],
    )
    def test_timestamp_is_utc_iso8601_with_milliseconds(
        self, mirror: Mirror, created: float, expected: str
    ) -> None:
        """The timestamp is ISO-8601 in UTC with milliseconds, readable by fromisoformat (3.10)."""
        mirror.format(make_record(created=created + 7.25))  # warm the per-second cache elsewhere
        stamp = strict(mirror.format(make_record(created=created)))["timestamp"]
        assert stamp == expected
        parsed = datetime.fromisoformat(stamp)
        assert parsed.utcoffset() is not None
        assert parsed.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
        assert abs(parsed.timestamp() - created) < 0.001

    def test_untagged_record_has_no_alert_fields(self, mirror: Mirror) -> None:
        """Plain records carry neither alert nor alert_id."""
        data = strict(mirror.format(make_record()))
        assert "alert" not in data
        assert "alert_id" not in data

    def test_tagged_record_has_alert_and_alert_id(self, mirror: Mirror) -> None:
        """The category and id passed by the handler are written."""
        data = strict(mirror.format(make_record(), alert="db_down", alert_id="0123abcd"))
        assert (data["alert"], data["alert_id"]) == ("db_down", "0123abcd")

    def test_tag_on_the_record_is_kept_when_none_is_passed(self, mirror: Mirror) -> None:
        """A record tagged with extra={"alert": ...} keeps its (normalised) tag in the mirror."""
        data = strict(mirror.format(make_record(extra={"alert": "db down!"})))
        assert data["alert"] == "db_down"
        assert "alert_id" not in data

    def test_traceback_from_exc_info(self, mirror: Mirror) -> None:
        """exc_info becomes a formatted traceback, cached on the record like logging does."""
        record = make_record(exc_info=exc_info_of(ZeroDivisionError("division by zero")))
        data = strict(mirror.format(record))
        assert data["traceback"].startswith("Traceback (most recent call last):")
        assert data["traceback"].endswith("ZeroDivisionError: division by zero")
        assert record.exc_text == data["traceback"]

    def test_traceback_from_exc_text_alone(self, mirror: Mirror) -> None:
        """A record that only has exc_text (already formatted elsewhere) keeps it."""
        record = make_record()
        record.exc_text = "Traceback (most recent call last):\nValueError: x"
        assert strict(mirror.format(record))["traceback"] == record.exc_text

    def test_stack_info_is_appended(self, mirror: Mirror) -> None:
        """stack_info follows the exception traceback."""
        record = make_record(
            exc_info=exc_info_of(KeyError("k")), sinfo="Stack (most recent call last):\n  here"
        )
        tb = strict(mirror.format(record))["traceback"]
        assert "KeyError: 'k'" in tb
        assert tb.endswith("Stack (most recent call last):\n  here")

    @pytest.mark.parametrize("exc_info", [None, (None, None, None)])
    def test_no_traceback_without_an_exception(self, mirror: Mirror, exc_info: Any) -> None:
        """exc_info=True outside an except block gives (None, None, None): no traceback."""
        assert "traceback" not in strict(mirror.format(make_record(exc_info=exc_info)))

    def test_extras_at_top_level_including_nested(self, mirror: Mirror) -> None:
        """Every extra is kept at the top level, nested structures intact."""
        extra = {"order_id": "ORD-1", "amount": 15000, "ctx": {"items": [1, {"sku": "A"}]}}
        data = strict(mirror.format(make_record(extra=extra)))
        assert {k: data[k] for k in extra} == extra

    def test_private_attributes_are_skipped(self, mirror: Mirror) -> None:
        """Attributes starting with an underscore are internal, as in python-json-logger."""
        record = make_record(extra={"visible": 1})
        record._internal = "x"
        data = strict(mirror.format(record))
        assert data["visible"] == 1
        assert "_internal" not in data

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (Unreprable(), "<unrepresentable Unreprable>"),
            (OnlyRepr(), "OnlyRepr()"),
            (b"\xffab", "\\xffab"),
            ({3, 1, 2}, [1, 2, 3]),
            (math.nan, "NaN"),
            (math.inf, "Infinity"),
            (-math.inf, "-Infinity"),
            ([1.5, math.nan], [1.5, "NaN"]),
            (datetime(2024, 5, 1, 12, tzinfo=timezone.utc), "2024-05-01T12:00:00+00:00"),
            (date(2024, 5, 1), "2024-05-01"),
            (Decimal("1.10"), "1.10"),
            ({1: "a", 2: "b"}, {"1": "a", "2": "b"}),
            ({(1, 2): "t"}, {"(1, 2)": "t"}),
            (ValueError("bad"), "ValueError: bad"),
        ],
        ids=lambda v: type(v).__name__,
    )
    def test_odd_extras_are_stringified_not_dropped(
        self, alerts: Path, value: object, expected: object
    ) -> None:
        """Whatever the redactor leaves JSON-unsafe, the mirror turns into strict JSON itself."""
        m = Mirror(alerts, redactor=PassThrough())
        data = strict(m.format(make_record(extra={"odd": value, "ok": 1})))
        assert data["odd"] == expected
        assert data["ok"] == 1

    def test_odd_extras_survive_the_real_redactor(self, mirror: Mirror) -> None:
        """With the shipped Redactor, odd values are still kept and the line is strict."""
        extra = {
            "obj": Unreprable(),
            "raw": b"\x00\xff",
            "tags": {"a", "b"},
            "nan": math.nan,
            "inf": math.inf,
            "when": datetime(2024, 5, 1, tzinfo=timezone.utc),
            "price": Decimal("9.99"),
            "by_id": {1: "a"},
        }
        data = strict(mirror.format(make_record(extra=extra)))
        for key in extra:
            assert data.get(key) is not None, key

    def test_circular_extra_does_not_cost_the_line(self, alerts: Path) -> None:
        """A self-referencing value is cut at the cycle; the rest of the line stays."""
        loop: dict[str, Any] = {"name": "loop"}
        loop["self"] = loop
        data = strict(Mirror(alerts, redactor=PassThrough()).format(make_record(extra={"c": loop})))
        assert data["c"] == {"name": "loop", "self": "<recursive dict>"}
        assert data["message"] == "hello"

    def test_absurd_nesting_is_cut(self, alerts: Path) -> None:
        """Nesting deeper than the encoder can recurse is cut, not fatal."""
        deep: list[Any] = []
        for _ in range(100_000):
            deep = [deep]
        data = strict(Mirror(alerts, redactor=PassThrough()).format(make_record(extra={"d": deep})))
        assert "mirror_error" not in data
        assert "d" in data

    def test_colliding_extras_are_prefixed(self, mirror: Mirror) -> None:
        """An extra named like a fixed field is kept under an extra_ prefix, never overwriting."""
        extra = {"level": "user-level", "timestamp": "t", "host": "h", "extra_level": "x"}
        data = strict(mirror.format(make_record(extra=extra), alert="a", alert_id="id"))
        assert data["level"] == "ERROR"
        assert data["host"] == "web-1"
        assert data["timestamp"].endswith("+00:00")
        assert data["extra_timestamp"] == "t"
        assert data["extra_host"] == "h"
        assert data["extra_level"] == "x"
        assert data["extra_extra_level"] == "user-level"

    def test_dict_message_becomes_fields(self, mirror: Mirror) -> None:
        """logger.info({...}) puts the keys at the top level, as python-json-logger does."""
        record = make_record({"event": "login", 7: "seven", "level": "mine"})
        data = strict(mirror.format(record))
        assert (data["message"], data["event"], data["7"]) == ("", "login", "seven")
        assert (data["level"], data["extra_level"]) == ("ERROR", "mine")

    def test_bad_format_arguments_do_not_raise(self, mirror: Mirror) -> None:
        """A broken %-format still gives a line with the template and arguments."""
        data = strict(mirror.format(make_record("count %d", "not-a-number")))
        assert "count %d" in data["message"]
        assert "not-a-number" in data["message"]

    def test_newlines_stay_inside_one_line(self, mirror: Mirror) -> None:
        """Multi-line messages are escaped: one record, one physical line."""
        line = mirror.format(make_record("a\nb\r\nc\u2028d"))
        assert line.splitlines() == [line]
        assert strict(line)["message"] == "a\nb\r\nc\u2028d"

    def test_redactor_failure_gives_a_minimal_line(self, alerts: Path) -> None:
        """format() never raises: a failing redactor yields a valid line without the raw text."""
        m = Mirror(alerts, redactor=BrokenRedactor(), host="web-1")
        line = m.format(make_record(f"token {MARK}"), alert="a", alert_id="id")
        data = strict(line)
        assert MARK not in line
        assert data["mirror_error"] == "RuntimeError"
        withheld = "<withheld: redaction failed>"
        assert (data["level"], data["logger"], data["host"]) == (withheld, withheld, "web-1")
        assert (data["alert"], data["alert_id"], data["message"]) == (withheld,) * 3

    def test_mangled_record_still_gets_its_line(self, mirror: Mirror) -> None:
        """A record whose attributes were overwritten with junk still gets a full line."""
        record = make_record(extra={"k": 1})
        record.created = "yesterday"  # type: ignore[assignment]
        record.lineno = "x"  # type: ignore[assignment]
        record.name = Unreprable()  # type: ignore[assignment]
        data = strict(mirror.format(record))
        assert data["timestamp"].endswith("+00:00")
        assert (data["message"], data["k"], data["lineno"]) == ("hello", 1, 0)
        assert data["logger"] == "<unrepresentable Unreprable>"

    def test_redaction_covers_message_traceback_and_extras(self, alerts: Path) -> None:
        """Message, traceback, extras (nested or stringified) all pass through the redactor."""

        class Leaky:
            def __str__(self) -> str:
                return f"Leaky({MARK})"

        m = Mirror(alerts, redactor=MarkerRedactor())
        record = make_record(
            "login with %s",
            MARK,
            exc_info=exc_info_of(PermissionError(f"bad key {MARK}")),
            extra={"key": MARK, "nested": {"list": [f"x{MARK}"]}, "obj": Leaky()},
        )
        line = m.format(record)
        assert MARK not in line
        data = strict(line)
        assert data["message"] == "login with [MASKED]"
        assert "bad key [MASKED]" in data["traceback"]
        assert data["key"] == "[MASKED]"
        assert data["nested"] == {"list": ["x[MASKED]"]}
        assert data["obj"] == "Leaky([MASKED])"

    def test_non_ascii_stays_readable(self, mirror: Mirror) -> None:
        """Non-ASCII text is written as UTF-8, not as \\u escapes, so grep finds it."""
        mirror.write([mirror.format(make_record("카드 한도 초과"))])
        assert "카드 한도 초과".encode() in Path(mirror.path).read_bytes()
        assert read_lines(Path(mirror.path))[0]["message"] == "카드 한도 초과"

    def test_lone_surrogates_become_escapes(self, alerts: Path) -> None:
        """A lone surrogate (os.fsdecode of bad bytes) is escaped: the file stays valid UTF-8."""
        m = Mirror(alerts, redactor=PassThrough())
        line = m.format(make_record("bad \udcff name", extra={"raw": "\udcff"}))
        assert "\\udcff" in line
        m.write([line])
        m.close()
        (alerts / "alerts.jsonl").read_bytes().decode("utf-8")  # strict: raises if invalid
        data = read_lines(alerts / "alerts.jsonl")[0]
        assert (data["message"], data["raw"]) == ("bad \udcff name", "\udcff")


class TestWrite:
    def test_lines_are_appended_with_newlines(self, mirror: Mirror) -> None:
        """Each batch is appended after the previous one, one line per entry."""
        mirror.write([mirror.format(make_record("one")), mirror.format(make_record("two"))])
        mirror.write([mirror.format(make_record("three"))])
        lines = read_lines(Path(mirror.path))
        assert [d["message"] for d in lines] == ["one", "two", "three"]

    def test_empty_batch_touches_nothing(self, mirror: Mirror) -> None:
        """Writing nothing creates no file."""
        mirror.write([])
        assert not os.path.exists(mirror.path)

    @pytest.mark.parametrize("umask", [0, 0o022, 0o277])
    def test_created_files_are_private_whatever_the_umask(self, tmp_path: Path, umask: int) -> None:
        """Directory 0o750, log, backups and lock file 0o640, even with umask 0 or 0o277."""
        directory = tmp_path / "alerts"
        old = os.umask(umask)
        try:
            m = Mirror(directory, redactor=Redactor(), max_bytes=5)
            m.write(["{}", "{}"])
            m.write(["{}"])  # over max_bytes: rotates, which creates the lock file
            m.close()
        finally:
            os.umask(old)
        assert stat.S_IMODE(directory.stat().st_mode) == 0o750
        for name in ("alerts.jsonl", "alerts.jsonl.1", "alerts.jsonl.lock"):
            assert stat.S_IMODE((directory / name).stat().st_mode) == 0o640, name

    def test_existing_directory_mode_is_left_alone(self, alerts: Path) -> None:
        """The directory belongs to whoever made it; only files we create are ours to chmod."""
        alerts.chmod(0o755)
        m = Mirror(alerts, redactor=Redactor())
        m.write(["{}"])
        m.close()
        assert stat.S_IMODE(alerts.stat().st_mode) == 0o755

    def test_unwritable_location_raises_oserror(self, tmp_path: Path) -> None:
        """I/O failures surface as OSError for the caller to count."""
        (tmp_path / "file").write_text("")
        m = Mirror(tmp_path / "file" / "alerts", redactor=Redactor())
        with pytest.raises(OSError):
            m.write(["{}"])
        m.close()

    def test_close_is_idempotent_and_later_writes_raise(self, mirror: Mirror) -> None:
        """close() twice is fine; writing after close raises OSError instead of reopening."""
        mirror.write(["{}"])
        mirror.close()
        mirror.close()
        with pytest.raises(OSError, match="closed"):
            mirror.write(["{}"])

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"rotate": "hourly"},
            {"max_bytes": -1},
            {"backups": -1},
            {"filename": "sub/alerts.jsonl"},
            {"filename": ""},
        ],
    )
    def test_bad_options_are_rejected(self, alerts: Path, kwargs: dict[str, Any]) -> None:
        """Misconfiguration fails at construction, naming the option."""
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            Mirror(alerts, redactor=Redactor(), **kwargs)


class TestRotation:
    def test_size_rotation_creates_numbered_backups_and_keeps_n(self, alerts: Path) -> None:
        """Past max_bytes the file becomes .1, older ones shift, and only `backups` are kept."""
        m = Mirror(alerts, redactor=Redactor(), max_bytes=20, backups=2)
        for i in range(5):
            m.write([json.dumps({"i": i, "pad": "x"})])  # 21 bytes with the newline
        m.close()
        names = sorted(p.name for p in alerts.iterdir())
        assert names == ["alerts.jsonl", "alerts.jsonl.1", "alerts.jsonl.2", "alerts.jsonl.lock"]
        assert [d["i"] for d in read_lines(alerts / "alerts.jsonl")] == [4]
        assert [d["i"] for d in read_lines(alerts / "alerts.jsonl.1")] == [3]
        assert [d["i"] for d in read_lines(alerts / "alerts.jsonl.2")] == [2]

    def test_batch_larger_than_max_bytes_goes_to_a_fresh_file(self, alerts: Path) -> None:
        """A batch is never split: an oversized one lands whole in a new file."""
        m = Mirror(alerts, redactor=Redactor(), max_bytes=50)
        m.write(["{}"])
        m.write(['{"big":"' + "x" * 100 + '"}'])
        m.close()
        assert len(read_lines(alerts / "alerts.jsonl")) == 1
        assert read_lines(alerts / "alerts.jsonl.1") == [{}]

    def test_max_bytes_zero_never_rotates(self, alerts: Path) -> None:
        """max_bytes=0 turns size rotation off."""
        m = Mirror(alerts, redactor=Redactor(), max_bytes=0)
        for _ in range(10):
            m.write(["{}" * 50])
        m.close()
        assert sorted(p.name for p in alerts.iterdir()) == ["alerts.jsonl"]

    def test_zero_backups_discards_the_old_file(self, alerts: Path) -> None:
        """backups=0 keeps only the current file."""
        m = Mirror(alerts, redactor=Redactor(), max_bytes=5, backups=0)
        m.write(['"old"'])
        m.write(['"new"'])
        m.close()
        assert sorted(p.name for p in alerts.iterdir()) == ["alerts.jsonl", "alerts.jsonl.lock"]
        assert (alerts / "alerts.jsonl").read_text() == '"new"\n'

    def test_daily_rotation_archives_by_day_and_keeps_n_days(self, alerts: Path) -> None:
        """When the UTC day changes the file is archived as alerts-YYYY-MM-DD.jsonl."""
        clock = {"day": date(2024, 5, 1)}
        m = Mirror(
            alerts, redactor=Redactor(), rotate="daily", backups=2, today=lambda: clock["day"]
        )
        for day in range(1, 5):
            clock["day"] = date(2024, 5, day)
            m.write([json.dumps({"day": day})])
            m.write([json.dumps({"day": day})])
        m.close()
        names = sorted(p.name for p in alerts.iterdir() if not p.name.endswith(".lock"))
        assert names == ["alerts-2024-05-02.jsonl", "alerts-2024-05-03.jsonl", "alerts.jsonl"]
        assert read_lines(alerts / "alerts-2024-05-03.jsonl") == [{"day": 3}, {"day": 3}]
        assert read_lines(alerts / "alerts.jsonl") == [{"day": 4}, {"day": 4}]

    def test_daily_rotation_of_a_file_left_from_an_earlier_day(self, alerts: Path) -> None:
        """After a restart past midnight the old file is archived under the day it was written."""
        path = alerts / "alerts.jsonl"
        path.write_text('{"day":1}\n')
        written = datetime(2024, 5, 1, 23, 59, tzinfo=timezone.utc).timestamp()
        os.utime(path, (written, written))
        m = Mirror(alerts, redactor=Redactor(), rotate="daily", today=lambda: date(2024, 5, 2))
        m.write(['{"day":2}'])
        m.close()
        assert read_lines(alerts / "alerts-2024-05-01.jsonl") == [{"day": 1}]
        assert read_lines(path) == [{"day": 2}]

    def test_daily_archive_is_never_overwritten(self, alerts: Path) -> None:
        """If the day's archive already exists, the next one gets a numbered name."""
        (alerts / "alerts-2024-05-01.jsonl").write_text('{"first":1}\n')
        clock = {"day": date(2024, 5, 1)}
        m = Mirror(alerts, redactor=Redactor(), rotate="daily", today=lambda: clock["day"])
        m.write(['{"second":1}'])
        clock["day"] = date(2024, 5, 2)
        m.write(['{"third":1}'])
        m.close()
        assert read_lines(alerts / "alerts-2024-05-01.jsonl") == [{"first": 1}]
        assert read_lines(alerts / "alerts-2024-05-01.1.jsonl") == [{"second": 1}]

    def test_writer_follows_a_rotation_done_by_another_writer(self, alerts: Path) -> None:
        """A writer whose file was rotated away notices by inode and reopens the new file."""
        rotating = Mirror(alerts, redactor=Redactor(), max_bytes=10)
        other = Mirror(alerts, redactor=Redactor(), max_bytes=0)
        other.inode_check_interval = 0.0
        other.write(['"a"'])
        rotating.write(['"b"'])
        rotating.write(['"c"' * 4])  # past 10 bytes: rotates
        other.write(['"d"'])
        rotating.close()
        other.close()
        assert (alerts / "alerts.jsonl.1").read_text() == '"a"\n"b"\n'
        assert (alerts / "alerts.jsonl").read_text() == '"c""c""c""c"\n"d"\n'

    def test_writer_recreates_a_file_removed_under_it(self, alerts: Path) -> None:
        """If the file is moved away by hand (logrotate), the next write creates a new one."""
        m = Mirror(alerts, redactor=Redactor())
        m.inode_check_interval = 0.0
        m.write(['"before"'])
        os.rename(alerts / "alerts.jsonl", alerts / "moved.jsonl")
        m.write(['"after"'])
        m.close()
        assert (alerts / "moved.jsonl").read_text() == '"before"\n'
        assert (alerts / "alerts.jsonl").read_text() == '"after"\n'


@pytest.mark.subprocess
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
class TestFork:
    @staticmethod
    def _run_child(body: Any) -> int:
        with warnings.catch_warnings():
            # 3.12+ warns when other threads exist (a thread left by an earlier test); with
            # filterwarnings=error that would fail this test after the child already exists.
            warnings.filterwarnings("ignore", ".*multi-threaded.*fork", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                signal.alarm(20)  # a deadlocked child dies instead of hanging the suite
                code = 0 if body() else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status)

    def test_child_reopens_and_its_lines_reach_the_file(self, mirror: Mirror) -> None:
        """After fork the child opens its own descriptor; parent and child lines all land."""
        mirror.write(['"parent-1"'])

        def child() -> bool:
            mirror.write(['"child"'])
            return mirror._pid == os.getpid()

        assert self._run_child(child) == 0
        mirror.write(['"parent-2"'])
        assert Path(mirror.path).read_text() == '"parent-1"\n"child"\n"parent-2"\n'

    def test_lock_held_at_fork_does_not_deadlock_the_child(self, mirror: Mirror) -> None:
        """A write in progress in another thread at fork time cannot wedge the child's writes."""
        mirror.write(['"parent"'])

        def child() -> bool:
            mirror.write(['"child"'])
            return True

        with mirror._lock:
            code = self._run_child(child)
        assert code == 0
        assert Path(mirror.path).read_text() == '"parent"\n"child"\n'


WRITER = """
import logging, sys
from slack_logging._mirror import Mirror
from slack_logging._redact import Redactor

directory, tag, count, max_bytes, backups = sys.argv[1:6]
mirror = Mirror(directory, redactor=Redactor(), max_bytes=int(max_bytes), backups=int(backups))
logger = logging.getLogger("writer")
sys.stdin.readline()  # start together
sent, size = 0, 1
while sent < int(count):
    lines = []
    for i in range(sent, min(sent + size, int(count))):
        record = logger.makeRecord(
            "writer", logging.INFO, "writer.py", 1, "line %d of %s", (i, tag), None,
            extra={"w": tag, "i": i, "pad": "x" * 150},
        )
        lines.append(mirror.format(record))
    mirror.write(lines)
    sent += len(lines)
    size = size % 13 + 1  # batches of 1..13 lines
mirror.close()
"""


def run_writers(directory: Path, specs: list[tuple[str, int, int, int]]) -> None:
    """Start one writer process per (tag, count, max_bytes, backups), release them together."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with ExitStack() as stack:
        procs = [
            stack.enter_context(
                subprocess.Popen(
                    [sys.executable, "-c", WRITER, str(directory), *map(str, spec)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    env=env,
                )
            )
            for spec in specs
        ]
        for p in procs:
            assert p.stdin is not None
            p.stdin.write(b"go\n")
            p.stdin.flush()
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err.decode()


def collect(directory: Path) -> list[tuple[str, int]]:
    seen: list[tuple[str, int]] = []
    for path in sorted(directory.glob("alerts.jsonl*")):
        if path.suffix != ".lock":
            seen.extend((d["w"], d["i"]) for d in read_lines(path))
    return seen


@pytest.mark.subprocess
class TestProcesses:
    def test_two_processes_append_intact_lines(self, alerts: Path) -> None:
        """Two processes appending 2000 lines each give 4000 whole lines, none torn or lost."""
        run_writers(alerts, [("a", 2000, 0, 5), ("b", 2000, 0, 5)])
        seen = collect(alerts)
        assert len(seen) == 4000
        assert sorted(seen) == sorted(
            [("a", i) for i in range(2000)] + [("b", i) for i in range(2000)]
        )
        per_writer = [[i for w, i in seen if w == tag] for tag in "ab"]
        assert per_writer == [list(range(2000))] * 2  # each writer's lines stay in order

    @pytest.mark.parametrize("other_max_bytes", [32_768, 0], ids=["both-rotate", "one-rotates"])
    def test_rotation_while_another_process_writes(
        self, alerts: Path, other_max_bytes: int
    ) -> None:
        """Rotations by one process while another appends lose or tear no line."""
        run_writers(alerts, [("a", 2000, 32_768, 1000), ("b", 2000, other_max_bytes, 1000)])
        assert (alerts / "alerts.jsonl.2").exists()  # it really rotated, several times
        seen = collect(alerts)
        assert len(seen) == 4000
        assert sorted(seen) == sorted(
            [("a", i) for i in range(2000)] + [("b", i) for i in range(2000)]
        )
