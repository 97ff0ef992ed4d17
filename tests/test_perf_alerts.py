"""The alert path's shortcuts give exactly what the general path gives: alerts built without the
dataclass constructor, cached category keys, ids from a pool of random tokens, and the outbox's
bounded copy of recent rows."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import sqlite3
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slack_logging import _alert, _extras, _snapshot
from slack_logging._alert import _FIELD_NAMES, Alert, build_alert, new_alert_id
from slack_logging._catalog import Catalog
from slack_logging._extras import extra_names, extras_of
from slack_logging._outbox import MAX_RECENT, Outbox
from slack_logging._redact import Redactor
from slack_logging._snapshot import _category_key, category_key


def uncached(rec: logging.LogRecord) -> dict[object, object]:
    """The extras as picked out with no cache: the reference for the cached ones."""
    return {name: rec.__dict__[name] for name in extra_names(rec.__dict__)}


CATALOG = Catalog()
REDACTORS = [Redactor(), Redactor(disable=["email", "phone", "card"])]

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)
tags = st.one_of(
    st.sampled_from(["payment_fail", "report_success", "no_such"]), st.text(max_size=20)
)


def _record(message: str, tag: object, extra: dict[str, object]) -> logging.LogRecord:
    rec = logging.LogRecord("pay.api", logging.ERROR, "/app/pay.py", 7, message, None, None)
    for key, value in extra.items():
        if key not in rec.__dict__:
            setattr(rec, key, value)
    rec.alert = tag
    return rec


@settings(max_examples=200)
@given(
    st.text(max_size=40),
    st.one_of(tags, values),
    st.dictionaries(st.sampled_from(["order_id", "amount", "thread_key", "email", "x"]), values),
)
def test_built_alert_is_the_dataclass_alert(
    message: str, tag: object, extra: dict[str, object]
) -> None:
    for redactor in REDACTORS:
        rec = _record(message, tag, extra)
        alert = build_alert(rec, CATALOG.lookup(category_key(tag)), redactor, host="h")
        twin = Alert(**{name: getattr(alert, name) for name in _FIELD_NAMES})
        assert alert == twin
        assert list(alert.__dict__) == list(_FIELD_NAMES)
        assert alert.to_json() == twin.to_json()
        assert Alert.from_json(alert.to_json()) == twin
        assert alert.dedup_key == twin.dedup_key


def test_built_alert_stays_frozen_and_replaceable() -> None:
    alert = build_alert(
        _record("m", "payment_fail", {}), CATALOG.lookup("payment_fail"), Redactor(), host="h"
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        alert.message = "changed"  # type: ignore[misc]
    assert dataclasses.replace(alert, message="other").message == "other"
    assert hash(alert.dedup_key)


@settings(max_examples=300)
@given(st.text(max_size=80))
def test_cached_category_key_equals_the_uncached_one(text: str) -> None:
    assert category_key(text) == _category_key(text)
    assert category_key(text) == _category_key(text)  # the second call reads the cache


def test_category_key_cache_is_bounded() -> None:
    for i in range(_snapshot.MAX_KEYS + 50):
        assert category_key(f" tag {i} ") == f"tag_{i}"
    assert 0 < len(_snapshot._keys) <= _snapshot.MAX_KEYS


def test_alert_ids_are_unique_sortable_hex() -> None:
    start = time.time()
    ids = [new_alert_id() for _ in range(5_000)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 24 and int(i, 16) >= 0 for i in ids)
    assert int(ids[0][:12], 16) >= int(start * 1000) - 1
    assert new_alert_id(1.0)[:12] == f"{1000:012x}"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_never_reuses_the_parents_tokens() -> None:
    new_alert_id()  # the pool now holds tokens the parent has not used yet
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.write(write, " ".join(new_alert_id()[12:] for _ in range(300)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = set(pipe.read().split())
    os.waitpid(pid, 0)
    parent = {new_alert_id()[12:] for _ in range(300)}
    assert len(child) == 300
    assert not child & parent


def test_outbox_keeps_the_newest_rows_for_a_failing_file(tmp_path: Path) -> None:
    """The copy of recent rows is bounded and becomes memory's pending rows if the file fails."""
    outbox = Outbox(tmp_path, origin="h:1")
    alerts = [
        Alert(new_alert_id(), "payment_fail", "error", f"m{i}", time.time())
        for i in range(MAX_RECENT + 300)
    ]
    for start in range(0, len(alerts), 256):
        outbox.add([(a, "default") for a in alerts[start : start + 256]])
    newest = [a.alert_id for a in alerts[-MAX_RECENT:]]
    assert list(outbox._recent) == newest
    outbox._degrade(sqlite3.OperationalError("disk I/O error"))
    assert outbox.fault is not None
    assert outbox._mem is not None
    rows = outbox._mem.execute(
        "SELECT alert_id, state, body FROM alerts WHERE state >= 0 ORDER BY seq"
    ).fetchall()
    assert [r[0] for r in rows] == newest
    assert {r[1] for r in rows} == {0}
    assert [Alert.from_json(r[2]) for r in rows] == alerts[-MAX_RECENT:]
    outbox.close()


def _generic_json(alert: Alert) -> dict[str, object]:
    """The body as the whole-dict encoder writes it (the path the fast body must equal)."""
    return json.loads(_alert._encode({name: getattr(alert, name) for name in _FIELD_NAMES}))


texts = st.text(max_size=30)
optional = st.one_of(st.none(), texts)


@settings(max_examples=300)
@given(
    st.builds(
        Alert,
        alert_id=texts,
        category=st.sampled_from(["payment_fail", "x"]),
        severity=st.sampled_from(["error", "info"]),
        message=texts,
        created=st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers()),
        level=st.sampled_from(["ERROR", "INFO"]),
        template=texts,
        fields=st.dictionaries(texts, st.one_of(texts, st.integers(), st.none()), max_size=3),
        traceback=optional,
        logger=texts,
        host=st.just("h"),
        pid=st.integers(0, 2**31),
        service=optional,
        environment=optional,
        exc_type=optional,
        place=texts,
        thread_key=optional,
        known=st.booleans(),
        title=texts,
        masked=st.lists(texts, max_size=2).map(tuple),
    )
)
def test_fast_body_is_the_generic_body(alert: Alert) -> None:
    body = json.loads(alert.to_json())
    generic = _generic_json(alert)
    left_out = {k for k in ("traceback", "thread_key", "masked") if generic[k] in (None, [])}
    assert body == {k: v for k, v in generic.items() if k not in left_out}
    assert Alert.from_json(alert.to_json()) == alert
    assert alert.to_json() == alert.to_json()  # the second one from the cached segment


def test_body_segments_never_mix_types() -> None:
    """1 == True == 1.0 in a dict key: such values take the whole-dict encoder instead."""
    base = Alert("a", "payment_fail", "error", "m", 1.0, pid=1, known=True)
    odd = dataclasses.replace(base, pid=True, known=1)  # type: ignore[arg-type]
    assert json.loads(base.to_json())["pid"] == 1
    assert json.loads(odd.to_json())["pid"] is True
    assert json.loads(odd.to_json())["known"] == 1
    nan = dataclasses.replace(base, created=float("nan"))
    assert json.loads(nan.to_json())["created"] == "NaN"  # the plain() fallback


def test_body_and_dedup_caches_are_bounded() -> None:
    for i in range(_alert.MAX_SEGMENTS + 20):
        alert = Alert("a", "payment_fail", "error", "m", 1.0, template=f"t{i}")
        assert json.loads(alert.to_json())["template"] == f"t{i}"
        assert alert.dedup_key == dataclasses.replace(alert, message="other").dedup_key
    assert 0 < len(_alert._segments) <= _alert.MAX_SEGMENTS
    assert 0 < len(_alert._dedup_keys) <= _alert.MAX_SEGMENTS


def test_cached_dedup_key_equals_the_hash() -> None:
    alert = Alert("a", "c", "error", "m", 1.0, template="t", place="p", thread_key="k")
    raw = "\x1f".join(("c", "t", "", "p", "k")).encode()
    expected = hashlib.blake2b(raw, digest_size=10).hexdigest()
    assert alert.dedup_key == expected
    assert alert.dedup_key == expected  # cached


@settings(max_examples=200)
@given(
    st.lists(
        st.tuples(
            st.one_of(st.sampled_from(["alert", "message", "_private", "order_id", "msg"]), texts),
            values,
        ),
        max_size=6,
    )
)
def test_cached_extras_equal_the_extras(pairs: list[tuple[str, object]]) -> None:
    rec = logging.LogRecord("pay.api", logging.ERROR, "/app/pay.py", 7, "m", None, None)
    for key, value in pairs:
        rec.__dict__[key] = value
    assert extras_of(rec.__dict__) == uncached(rec)
    assert list(extras_of(rec.__dict__)) == list(uncached(rec))  # same order, cached


def test_extras_cache_is_bounded_and_follows_the_shape() -> None:
    for i in range(_extras.MAX_SHAPES + 30):
        rec = logging.LogRecord("pay.api", logging.ERROR, "/app/pay.py", 7, "m", None, None)
        rec.__dict__[f"field_{i}"] = i
        assert extras_of(rec.__dict__) == {f"field_{i}": i}
    assert 0 < len(_extras._SHAPES) <= _extras.MAX_SHAPES
    rec.__dict__["later"] = "x"  # same record, another shape
    assert extras_of(rec.__dict__) == uncached(rec)


def test_extras_cache_never_mixes_equal_keys() -> None:
    """1 == True, and a str subclass equals its text: what the walk makes of such records'
    extras is what it makes of the uncached ones."""

    class Key(str):
        pass

    for first, second in ((1, True), ("order_id", Key("order_id"))):
        records = []
        for key in (first, second):
            rec = logging.LogRecord("pay.api", logging.ERROR, "/app/pay.py", 7, "m", None, None)
            rec.__dict__[key] = "v"
            records.append(rec)
        for rec in records:
            redactor = Redactor()
            assert redactor.value(extras_of(rec.__dict__)) == redactor.value(uncached(rec))
