"""infra_alert: which failures alert, what the alert carries, and that errors always propagate."""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import socket
import sys
import threading
import types
import urllib.error
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import urllib3.exceptions

from slack_logging import _infra
from slack_logging._alert_logger import AlertLogger
from slack_logging._infra import DEFAULT_LOGGER, classify, infra_alert


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(autouse=True)
def no_outage_seen() -> Iterator[None]:
    """Each test starts with no failure seen (the set is per process, like an outage)."""
    _infra._failing.clear()
    yield
    _infra._failing.clear()


@pytest.fixture
def records(logger: logging.Logger) -> Iterator[list[logging.LogRecord]]:
    collect = Collect()
    logger.addHandler(collect)
    yield collect.records


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """A fake perf_counter: each call pops the next value, so elapsed_ms is exact."""
    ticks: list[float] = []
    monkeypatch.setattr(_infra, "_now", lambda: ticks.pop(0))
    return ticks


TIMEOUTS: list[BaseException] = [
    TimeoutError("timed out"),
    socket.timeout("timed out"),  # noqa: UP041 - the spelling callers use
    asyncio.TimeoutError(),
    concurrent.futures.TimeoutError(),
    requests.Timeout(),
    requests.ReadTimeout(),
    requests.ConnectTimeout(),  # both a ConnectionError and a Timeout: a timeout
    urllib3.exceptions.ReadTimeoutError(None, "/v1", "read timed out"),  # type: ignore[arg-type]
    urllib3.exceptions.ConnectTimeoutError(),
    urllib.error.URLError(TimeoutError("timed out")),
    urllib3.exceptions.MaxRetryError(None, "/v1", urllib3.exceptions.ConnectTimeoutError()),  # type: ignore[arg-type]
]
NETWORK: list[BaseException] = [
    ConnectionRefusedError(111, "Connection refused"),
    ConnectionResetError(104, "Connection reset by peer"),
    BrokenPipeError(),
    socket.gaierror(-2, "Name or service not known"),
    requests.ConnectionError(),
    urllib3.exceptions.NewConnectionError(None, "refused"),  # type: ignore[arg-type]
    urllib3.exceptions.NameResolutionError("pg.example", None, socket.gaierror()),  # type: ignore[arg-type]
    urllib3.exceptions.ProtocolError("Connection aborted."),
    urllib.error.URLError(socket.gaierror(-2, "Name or service not known")),
    urllib3.exceptions.MaxRetryError(
        None,  # type: ignore[arg-type]
        "/v1",
        urllib3.exceptions.NewConnectionError(None, "refused"),  # type: ignore[arg-type]
    ),
]
OTHERS: list[BaseException] = [
    ValueError("bad amount"),
    KeyError("order_id"),
    FileNotFoundError(2, "No such file"),
    requests.HTTPError("500 Server Error"),
    urllib.error.URLError("unknown url type"),
]


def _name(exc: BaseException) -> str:
    return type(exc).__name__


class TestClassify:
    @pytest.mark.parametrize("exc", TIMEOUTS, ids=_name)
    def test_timeouts(self, exc: BaseException) -> None:
        """Timeouts of the stdlib, requests and urllib3 are api_timeout."""
        assert classify(exc) == "api_timeout"

    @pytest.mark.parametrize("exc", NETWORK, ids=_name)
    def test_connection_errors(self, exc: BaseException) -> None:
        """Refused, reset, DNS failures and their requests/urllib3 forms are network_error."""
        assert classify(exc) == "network_error"

    @pytest.mark.parametrize("exc", OTHERS, ids=_name)
    def test_other_errors(self, exc: BaseException) -> None:
        """Anything else is not an infrastructure alert."""
        assert classify(exc) is None

    @pytest.mark.parametrize("exc", [KeyboardInterrupt(), asyncio.CancelledError()], ids=_name)
    def test_interrupts_are_not_outages(self, exc: BaseException) -> None:
        """Ctrl-C and task cancellation never alert."""
        assert classify(exc) is None

    @pytest.mark.parametrize(
        ("name", "expected"),
        [
            ("ReadTimeout", "api_timeout"),
            ("PoolTimeout", "api_timeout"),
            ("ConnectError", "network_error"),
            ("RemoteProtocolError", "network_error"),
            ("HTTPStatusError", None),
        ],
    )
    def test_httpx_when_loaded(
        self, name: str, expected: str | None, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """httpx's exceptions are recognised when httpx is imported (never imported by us)."""
        fake = types.ModuleType("httpx")
        fake.HTTPError = type("HTTPError", (Exception,), {})  # type: ignore[attr-defined]
        fake.TransportError = type("TransportError", (fake.HTTPError,), {})  # type: ignore[attr-defined]
        fake.TimeoutException = type("TimeoutException", (fake.TransportError,), {})  # type: ignore[attr-defined]
        fake.NetworkError = type("NetworkError", (fake.TransportError,), {})  # type: ignore[attr-defined]
        fake.RemoteProtocolError = type("RemoteProtocolError", (fake.TransportError,), {})  # type: ignore[attr-defined]
        bases = {
            "ReadTimeout": fake.TimeoutException,  # type: ignore[attr-defined]
            "PoolTimeout": fake.TimeoutException,  # type: ignore[attr-defined]
            "ConnectError": fake.NetworkError,  # type: ignore[attr-defined]
            "RemoteProtocolError": fake.RemoteProtocolError,  # type: ignore[attr-defined]
            "HTTPStatusError": fake.HTTPError,  # type: ignore[attr-defined]
        }
        exc_type = bases[name] if name == "RemoteProtocolError" else type(name, (bases[name],), {})
        assert classify(exc_type("boom")) is None  # httpx not imported: unknown
        monkeypatch.setitem(sys.modules, "httpx", fake)
        assert classify(exc_type("boom")) == expected

    def test_optional_libraries_are_never_imported(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Classifying does not import httpx or aiohttp."""
        monkeypatch.delitem(sys.modules, "httpx", raising=False)
        monkeypatch.delitem(sys.modules, "aiohttp", raising=False)
        classify(ValueError())
        classify(TimeoutError())
        assert "httpx" not in sys.modules
        assert "aiohttp" not in sys.modules


class TestContextManager:
    def test_timeout_alert_carries_service_endpoint_elapsed(
        self, logger: logging.Logger, records: list[logging.LogRecord], clock: list[float]
    ) -> None:
        """A timeout inside the block logs api_timeout with the fields and the exception."""
        clock.extend([100.0, 101.5])
        with (
            pytest.raises(requests.ReadTimeout),
            infra_alert(
                service="toss", endpoint="POST /v1/confirm", logger=logger, order_id="ORD-1"
            ),
        ):
            raise requests.ReadTimeout("read timed out")
        (record,) = records
        assert record.__dict__["alert"] == "api_timeout"
        assert record.levelno == logging.ERROR
        fields = {k: record.__dict__[k] for k in ("service", "endpoint", "elapsed_ms", "order_id")}
        assert fields == {
            "service": "toss",
            "endpoint": "POST /v1/confirm",
            "elapsed_ms": 1500,
            "order_id": "ORD-1",
        }
        assert record.exc_info is not None
        assert isinstance(record.exc_info[1], requests.ReadTimeout)
        assert record.getMessage() == "toss POST /v1/confirm timed out after 1.5 s (ReadTimeout)"

    def test_connection_error_alert(
        self, logger: logging.Logger, records: list[logging.LogRecord]
    ) -> None:
        """A refused connection logs network_error and is re-raised unchanged."""
        error = ConnectionRefusedError(111, "Connection refused")
        with (
            pytest.raises(ConnectionRefusedError) as raised,
            infra_alert(service="report-api", endpoint="/reports", logger=logger),
        ):
            raise error
        assert raised.value is error
        (record,) = records
        assert record.__dict__["alert"] == "network_error"
        assert isinstance(record.__dict__["elapsed_ms"], int)

    @pytest.mark.parametrize("exc", OTHERS, ids=_name)
    def test_other_errors_propagate_without_alert(
        self, exc: BaseException, logger: logging.Logger, records: list[logging.LogRecord]
    ) -> None:
        """Any other exception goes through untouched and logs nothing."""
        with (
            pytest.raises(type(exc)),
            infra_alert(service="pg", endpoint="/approve", logger=logger),
        ):
            raise exc
        assert records == []

    def test_success_logs_nothing(
        self, logger: logging.Logger, records: list[logging.LogRecord]
    ) -> None:
        """A block that finishes logs nothing."""
        with infra_alert(service="pg", endpoint="/approve", logger=logger):
            pass
        assert records == []

    def test_record_points_at_the_with_block(
        self, logger: logging.Logger, records: list[logging.LogRecord]
    ) -> None:
        """The record's file is the caller's, not slack_logging's."""
        with (
            pytest.raises(TimeoutError),
            infra_alert(service="pg", endpoint="/approve", logger=logger),
        ):
            raise TimeoutError
        (record,) = records
        assert record.pathname == __file__
        assert record.funcName == "test_record_points_at_the_with_block"

    def test_nested_and_reused_instance_keeps_each_start(
        self, logger: logging.Logger, records: list[logging.LogRecord], clock: list[float]
    ) -> None:
        """One instance entered twice (nested) measures each entry from its own start."""
        guard = infra_alert(service="pg", endpoint="/approve", logger=logger)
        clock.extend([0.0, 1.0, 1.25, 3.0])  # outer in, inner in, inner out, outer out
        with pytest.raises(TimeoutError), guard, guard:
            raise TimeoutError
        assert [r.__dict__["elapsed_ms"] for r in records] == [250, 3000]

    def test_shared_instance_across_threads(
        self, logger: logging.Logger, records: list[logging.LogRecord]
    ) -> None:
        """Threads sharing one instance each get their own alert."""
        guard = infra_alert(service="pg", endpoint="/approve", logger=logger)
        barrier = threading.Barrier(4)

        def call() -> None:
            try:
                with guard:
                    barrier.wait(5)
                    raise TimeoutError
            except TimeoutError:
                pass

        threads = [threading.Thread(target=call) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(5)
        assert len(records) == 4

    def test_failing_logger_never_hides_the_error(self, capsys: pytest.CaptureFixture[str]) -> None:
        """If logging the alert fails, the caller still gets the original exception."""

        class Broken(logging.Logger):
            def log(self, *args: Any, **kwargs: Any) -> None:
                raise RuntimeError("logging is broken")

            def isEnabledFor(self, level: int) -> bool:
                return True

        with (
            pytest.raises(TimeoutError),
            infra_alert(service="pg", endpoint="/approve", logger=Broken("broken")),
        ):
            raise TimeoutError
        assert "infra_alert could not log TimeoutError" in capsys.readouterr().err

    def test_default_logger_is_infra(self, records: list[logging.LogRecord]) -> None:
        """Without logger=, alerts go to logging.getLogger("infra"), which the handler accepts."""
        infra_logger = logging.getLogger(DEFAULT_LOGGER)
        collect = Collect()
        infra_logger.addHandler(collect)
        try:
            with pytest.raises(TimeoutError), infra_alert(service="pg", endpoint="/approve"):
                raise TimeoutError
        finally:
            infra_logger.removeHandler(collect)
        (record,) = collect.records
        assert record.name == "infra"
        assert not record.name.startswith("slack_logging")

    @pytest.mark.parametrize("kind", ["name", "alert_logger"])
    def test_logger_forms(
        self, kind: str, logger: logging.Logger, records: list[logging.LogRecord]
    ) -> None:
        """logger= also takes a logger name or an AlertLogger."""
        target: Any = logger.name if kind == "name" else AlertLogger(logger)
        with pytest.raises(TimeoutError), infra_alert(service="s", endpoint="e", logger=target):
            raise TimeoutError
        assert len(records) == 1

    def test_reserved_field_names_are_safe(
        self, logger: logging.Logger, records: list[logging.LogRecord]
    ) -> None:
        """An extra field named like a record attribute is prefixed, not a crash."""
        with (
            pytest.raises(TimeoutError),
            infra_alert(service="s", endpoint="e", logger=logger, name="x", message="y"),
        ):
            raise TimeoutError
        (record,) = records
        assert (record.__dict__["field_name"], record.__dict__["field_message"]) == ("x", "y")


class TestDecorator:
    def test_sync_function(self, logger: logging.Logger, records: list[logging.LogRecord]) -> None:
        """A decorated function alerts on a timeout, re-raises, and keeps its name."""

        @infra_alert(service="pg", endpoint="/approve", logger=logger)
        def approve(order_id: str) -> str:
            if order_id == "slow":
                raise socket.timeout("timed out")  # noqa: UP041
            return f"approved {order_id}"

        assert approve("ORD-1") == "approved ORD-1"
        with pytest.raises(socket.timeout):
            approve("slow")
        assert approve.__name__ == "approve"
        (record,) = records
        assert record.__dict__["alert"] == "api_timeout"

    def test_async_function(self, logger: logging.Logger, records: list[logging.LogRecord]) -> None:
        """An async def stays a coroutine function and alerts when awaited and failing."""

        @infra_alert(service="report-api", endpoint="/reports", logger=logger)
        async def make_report(fail: bool) -> str:
            if fail:
                raise ConnectionResetError(104, "reset")
            return "ok"

        assert inspect.iscoroutinefunction(make_report)
        assert asyncio.run(make_report(False)) == "ok"
        with pytest.raises(ConnectionResetError):
            asyncio.run(make_report(True))
        (record,) = records
        assert record.__dict__["alert"] == "network_error"
        assert record.__dict__["endpoint"] == "/reports"

    def test_async_wait_for_timeout(
        self, logger: logging.Logger, records: list[logging.LogRecord]
    ) -> None:
        """asyncio.wait_for's timeout inside a decorated coroutine is an api_timeout."""

        @infra_alert(service="pg", endpoint="/approve", logger=logger)
        async def approve() -> None:
            await asyncio.wait_for(asyncio.Event().wait(), timeout=0.01)

        with pytest.raises(asyncio.TimeoutError):
            asyncio.run(approve())
        assert [r.__dict__["alert"] for r in records] == ["api_timeout"]

    def test_async_with(self, logger: logging.Logger, records: list[logging.LogRecord]) -> None:
        """async with works like with."""

        async def call() -> None:
            async with infra_alert(service="pg", endpoint="/approve", logger=logger):
                raise TimeoutError

        with pytest.raises(TimeoutError):
            asyncio.run(call())
        (record,) = records
        assert record.__dict__["alert"] == "api_timeout"
        assert record.pathname == __file__

    def test_cancellation_is_not_an_alert(
        self, logger: logging.Logger, records: list[logging.LogRecord]
    ) -> None:
        """A cancelled task propagates CancelledError without an alert."""

        @infra_alert(service="pg", endpoint="/approve", logger=logger)
        async def wait_forever() -> None:
            await asyncio.Event().wait()

        async def main() -> None:
            task = asyncio.ensure_future(wait_forever())
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(main())
        assert records == []

    @pytest.mark.parametrize("kind", ["generator", "async_generator"])
    def test_generators_are_refused(self, kind: str) -> None:
        """Decorating a generator would time only its creation: refused with a hint."""

        def gen() -> Iterator[int]:
            yield 1

        async def agen() -> Any:
            yield 1

        with pytest.raises(TypeError, match="generator"):
            infra_alert(service="s", endpoint="e")(gen if kind == "generator" else agen)


class TestRecovery:
    def test_first_success_after_a_failure_logs_one_resolution(
        self, logger: logging.Logger, records: list[logging.LogRecord]
    ) -> None:
        """Fail, succeed, succeed: one alert and one resolution (untagged, never an alert)."""
        calls = infra_alert(service="toss", endpoint="/confirm", logger=logger)
        with pytest.raises(TimeoutError), calls:
            raise TimeoutError
        with calls:
            pass
        with calls:
            pass
        alert, resolution = records
        assert alert.__dict__["alert"] == "api_timeout"
        assert "alert" not in resolution.__dict__
        assert resolution.levelno == logging.INFO
        assert resolution.__dict__["_slack_logging_resolve"] == {
            "scope": "infra",
            "labels": {"service": "toss", "endpoint": "/confirm"},
        }
        assert resolution.filename == "test_infra.py"  # points at the caller's `with`

    def test_healthy_calls_stay_silent(
        self, logger: logging.Logger, records: list[logging.LogRecord]
    ) -> None:
        """A service that never failed in this process logs nothing on success."""
        calls = infra_alert(service="toss", endpoint="/confirm", logger=logger)
        for _ in range(3):
            with calls:
                pass
        assert records == []

    def test_other_endpoint_not_resolved(
        self, logger: logging.Logger, records: list[logging.LogRecord]
    ) -> None:
        """Only the endpoint that failed is resolved by its own success."""
        with pytest.raises(ConnectionError), infra_alert(service="s", endpoint="/a", logger=logger):
            raise ConnectionError
        with infra_alert(service="s", endpoint="/b", logger=logger):
            pass
        assert len(records) == 1

    def test_decorated_function_success_resolves(
        self, logger: logging.Logger, records: list[logging.LogRecord]
    ) -> None:
        """The decorator form resolves too, sync and async."""

        @infra_alert(service="pg", endpoint="/approve", logger=logger)
        def approve(fail: bool) -> str:
            if fail:
                raise TimeoutError
            return "ok"

        @infra_alert(service="pg", endpoint="/refund", logger=logger)
        async def refund(fail: bool) -> str:
            if fail:
                raise ConnectionResetError
            return "ok"

        for call in (approve, lambda fail: asyncio.run(refund(fail))):
            with pytest.raises((TimeoutError, ConnectionResetError)):
                call(True)
            assert call(False) == "ok"
        resolved = [r for r in records if "_slack_logging_resolve" in r.__dict__]
        assert [r.__dict__["_slack_logging_resolve"]["labels"]["endpoint"] for r in resolved] == [
            "/approve",
            "/refund",
        ]
