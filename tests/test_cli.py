"""The slack-logging command, in-process with capsys, against the fake Slack on loopback."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from helpers import alert_ids

from slack_logging import _flush
from slack_logging._alert import Alert, new_alert_id
from slack_logging._outbox import Outbox
from slack_logging.cli import handler_options, main, parse_field
from slack_logging.testing import FAKE_TOKEN, FAKE_WEBHOOK_PATH, FakeSlack

REPO = Path(__file__).resolve().parent.parent
WEBHOOK_SECRET = FAKE_WEBHOOK_PATH.rsplit("/", 1)[1]
TOKEN_SECRET = FAKE_TOKEN.split("-", 1)[1]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def check(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``slack-logging check`` accepting the fake Slack's loopback webhook host."""
    return run(capsys, "check", "--allow-host", "127.0.0.1", *argv)


@pytest.fixture
def webhook_env(
    monkeypatch: pytest.MonkeyPatch, fake_slack: FakeSlack, alerts_dir: Path
) -> FakeSlack:
    monkeypatch.setenv("SLACK_WEBHOOK_URL", fake_slack.webhook_url)
    monkeypatch.setenv("SLACK_ALERTS_DIR", str(alerts_dir))
    return fake_slack


@pytest.fixture
def chat_env(monkeypatch: pytest.MonkeyPatch, fake_slack: FakeSlack, alerts_dir: Path) -> FakeSlack:
    monkeypatch.setenv("SLACK_BOT_TOKEN", FAKE_TOKEN)
    monkeypatch.setenv("SLACK_CHANNEL_ID", "C0ALERTS01")
    monkeypatch.setenv("SLACK_API_URL", fake_slack.api_url)
    monkeypatch.setenv("SLACK_ALERTS_DIR", str(alerts_dir))
    return fake_slack


#: A service: three alerts through the handler, then it runs (holding sender.lock) until
#: its stdin closes.
SERVICE = """
import logging, sys
from slack_logging import SlackAlertHandler
handler = SlackAlertHandler(webhook_url=sys.argv[1], alerts_dir=sys.argv[2], service="svc")
log = logging.getLogger("svc")
log.addHandler(handler)
for i in range(3):
    log.error("card declined %d", i, extra={"alert": "payment_fail", "order_id": f"ORD-{i}"})
print("logged 3", flush=True)
sys.stdin.read()
handler.close()
"""


def wait_pending(alerts_dir: Path, n: int) -> None:
    """Until the outbox holds ``n`` pending alerts (another process stores them)."""
    outbox = Outbox(alerts_dir, origin="test")
    try:
        deadline = time.monotonic() + 60
        while outbox.counts()["pending"] < n:
            assert time.monotonic() < deadline, outbox.counts()
            time.sleep(0.01)
    finally:
        outbox.close()


def write_yaml(path: Path, handler: str, form: str = "class") -> Path:
    path.write_text(
        "version: 1\n"
        "handlers:\n"
        "  console:\n"
        "    class: logging.StreamHandler\n"
        "  slack:\n"
        f"    {form}: slack_logging.SlackAlertHandler\n"
        "    level: INFO\n"
        f"{handler}"
        "root:\n"
        "  handlers: [console, slack]\n",
        encoding="utf-8",
    )
    return path


def no_secret(*texts: str) -> None:
    for text in texts:
        assert WEBHOOK_SECRET not in text
        assert TOKEN_SECRET not in text


class TestCheck:
    def test_all_good_with_webhook(
        self, capsys: pytest.CaptureFixture[str], webhook_env: FakeSlack, alerts_dir: Path
    ) -> None:
        """Webhook set, directory creatable: exit 0, one [ok] line per check, no secret."""
        code, out, err = check(capsys, "--create")
        assert code == 0, out
        assert "[ok]   destination: incoming webhook http://127.0.0.1:" in out
        assert "webhook URL points at 127.0.0.1, a test host you allowed" in out
        assert "delivery is enabled" in out
        assert f"alerts directory {alerts_dir.absolute()} is writable (created it)" in out
        assert "[FAIL]" not in out
        assert alerts_dir.is_dir()
        assert list(alerts_dir.iterdir()) == []  # the probe file is gone
        assert webhook_env.requests == []  # no --send: no network
        no_secret(out, err)

    def test_send_posts_a_test_message(
        self, capsys: pytest.CaptureFixture[str], webhook_env: FakeSlack
    ) -> None:
        """--send posts one rendered test message and prints Slack's answer."""
        code, out, err = check(capsys, "--send")
        assert code == 0, out
        (msg,) = webhook_env.messages
        assert "slack-logging check" in msg.payload["text"]
        assert msg.payload["metadata"]["event_payload"]["category"] == "check"
        assert "Slack answered HTTP 200 ok" in out
        no_secret(out, err)

    def test_bot_token_mode(self, capsys: pytest.CaptureFixture[str], chat_env: FakeSlack) -> None:
        """Bot-token mode names the channel, masks the token and reports the ts."""
        code, out, err = check(capsys, "--send")
        assert code == 0, out
        assert "bot token xoxb-… to channel C0ALERTS01" in out
        (msg,) = chat_env.messages
        assert msg.channel == "C0ALERTS01"
        assert f"ts {msg.ts}" in out
        no_secret(out, err)

    def test_routes_get_their_own_test_message(
        self,
        capsys: pytest.CaptureFixture[str],
        chat_env: FakeSlack,
        tmp_path: Path,
        alerts_dir: Path,
    ) -> None:
        """Each routed channel is listed and gets its own test message."""
        config = write_yaml(
            tmp_path / "logging.yaml",
            f"    alerts_dir: {alerts_dir}\n"
            "    categories:\n"
            "      report_fail:\n"
            "        channel: C0REPORTS1\n",
        )
        code, out, _ = check(capsys, "--send", "--config", str(config))
        assert code == 0, out
        assert "route: report_fail to channel C0REPORTS1" in out
        assert sorted(m.channel or "" for m in chat_env.messages) == ["C0ALERTS01", "C0REPORTS1"]

    def test_nothing_configured(
        self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, alerts_dir: Path
    ) -> None:
        """No destination: exit 1 naming the env vars to set."""
        monkeypatch.setenv("SLACK_ALERTS_DIR", str(alerts_dir))
        code, out, _ = check(capsys)
        assert code == 1
        assert "[FAIL] destination: none configured" in out
        assert "SLACK_WEBHOOK_URL" in out
        assert "1 check(s) failed" in out

    def test_kill_switch_fails(
        self,
        capsys: pytest.CaptureFixture[str],
        webhook_env: FakeSlack,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """SLACK_ENABLED=false is reported as a failure with the fix; --send sends nothing."""
        monkeypatch.setenv("SLACK_ENABLED", "false")
        code, out, _ = check(capsys, "--send")
        assert code == 1
        assert "[FAIL] delivery is switched off" in out
        assert "SLACK_ENABLED=true" in out
        assert webhook_env.requests == []

    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            (
                "http://hooks.slack.com/services/T0/B0/supersecretvalue",
                "[FAIL] webhook URL to hooks.slack.com uses http, not https://",
            ),
            (
                "https://hooks.slack.com/hooks/supersecretvalue",
                "[FAIL] webhook URL to hooks.slack.com lacks the /services/T…/B…/… part",
            ),
            (
                "https://example.com/services/T0/B0/supersecretvalue",
                "[FAIL] webhook URL points at example.com, not at Slack's webhook host",
            ),
            (
                "hooks.slack.com/services/T0/B0/supersecretvalue",
                "[FAIL] webhook URL has no scheme: it starts with hooks.slack.com\n"
                "       fix: put https:// in front of it",
            ),
            ("supersecretvalue", "[FAIL] webhook URL is not a URL"),
            (
                '"https://hooks.slack.com/services/T0/B0/supersecretvalue"',
                "[FAIL] webhook URL contains spaces, quotes or angle brackets",
            ),
            ("https://hooks.slack.com:99999/services/T0/B0/supersecretvalue", "a bad port"),
        ],
    )
    def test_malformed_url(
        self,
        url: str,
        expected: str,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
        alerts_dir: Path,
    ) -> None:
        """A malformed or foreign webhook URL fails in plain words, never printing the URL
        (mangled or whole) or its secret, and the other checks still run."""
        monkeypatch.setenv("SLACK_WEBHOOK_URL", url)
        monkeypatch.setenv("SLACK_ALERTS_DIR", str(alerts_dir))
        code, out, err = run(capsys, "check", "--send")
        assert code == 1
        assert expected in out
        assert "supersecretvalue" not in out + err
        assert "://?" not in out
        assert out.count("[FAIL]") == 2, out  # the URL, and the test message it did not send
        assert "alerts directory" in out

    def test_malformed_category_webhook_is_explained(
        self,
        capsys: pytest.CaptureFixture[str],
        webhook_env: FakeSlack,
        tmp_path: Path,
        alerts_dir: Path,
    ) -> None:
        """A category's own webhook URL gets the same plain explanation, naming the setting,
        and no test message goes anywhere."""
        config = write_yaml(
            tmp_path / "l.yaml",
            f"    webhook_url: {webhook_env.webhook_url}\n"
            f"    alerts_dir: {alerts_dir}\n"
            "    categories:\n"
            "      payment_fail:\n"
            "        webhook_url: hooks.slack.com/services/T0/B0/supersecretvalue\n",
        )
        code, out, err = check(capsys, "--send", "--config", str(config))
        assert code == 1
        assert (
            "[FAIL] categories.payment_fail.webhook_url has no scheme: it starts with "
            "hooks.slack.com" in out
        )
        assert "supersecretvalue" not in out + err
        assert "://?" not in out
        assert "configuration:" not in out
        assert webhook_env.requests == []

    def test_test_host_needs_allow_host(
        self, capsys: pytest.CaptureFixture[str], webhook_env: FakeSlack
    ) -> None:
        """A webhook on a non-Slack host is refused (and not posted to) without --allow-host,
        whose name the fix gives."""
        code, out, _ = run(capsys, "check", "--send")
        assert code == 1
        assert "[FAIL] webhook URL points at 127.0.0.1" in out
        assert "pass --allow-host 127.0.0.1" in out
        assert webhook_env.requests == []

    def test_api_url_allows_its_host(
        self,
        capsys: pytest.CaptureFixture[str],
        webhook_env: FakeSlack,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """An explicit SLACK_API_URL on a test host allows webhooks on that host too."""
        monkeypatch.setenv("SLACK_API_URL", webhook_env.api_url)
        code, out, _ = run(capsys, "check", "--send")
        assert code == 0, out
        assert len(webhook_env.messages) == 1

    def test_changes_nothing_without_create(
        self, capsys: pytest.CaptureFixture[str], webhook_env: FakeSlack, alerts_dir: Path
    ) -> None:
        """Without --create, a missing directory is reported (the service makes it) and the
        filesystem is left exactly as it was."""
        before = sorted(alerts_dir.parent.iterdir())
        code, out, _ = check(capsys)
        assert code == 0, out
        assert f"[warn] alerts directory {alerts_dir} does not exist yet" in out
        assert "slack-logging check --create" in out
        assert sorted(alerts_dir.parent.iterdir()) == before

    def test_missing_directory_in_unwritable_parent_fails(
        self,
        capsys: pytest.CaptureFixture[str],
        webhook_env: FakeSlack,
        monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path,
    ) -> None:
        """A directory the service could not create either is a failure naming the parent."""
        monkeypatch.setenv("SLACK_ALERTS_DIR", str(tmp_path / "ro" / "alerts"))
        (tmp_path / "ro").mkdir()
        real_access = os.access
        # Works the same as root, for whom a chmod 500 directory is still writable.
        monkeypatch.setattr(
            os, "access", lambda p, m: False if Path(p) == tmp_path / "ro" else real_access(p, m)
        )
        code, out, _ = check(capsys)
        assert code == 1
        assert f"{tmp_path / 'ro'} is not writable, so the service cannot create it" in out
        assert not (tmp_path / "ro" / "alerts").exists()

    @pytest.mark.parametrize(
        ("fault", "expected", "remedy"),
        [
            ("revoke", "HTTP 404 no_service", "Regenerate the incoming webhook"),
            ("403", "HTTP 403 action_prohibited", "Invite the bot"),
            ("reset", "no answer (ConnectionError)", "firewall"),
        ],
    )
    def test_send_failure_shows_cause_and_remedy(
        self,
        fault: str,
        expected: str,
        remedy: str,
        capsys: pytest.CaptureFixture[str],
        webhook_env: FakeSlack,
    ) -> None:
        """A refused test message exits 1 with Slack's answer and the fix."""
        if fault == "revoke":
            webhook_env.revoke()
        elif fault == "403":
            webhook_env.fail_next(403)
        else:
            webhook_env.reset_next()
        code, out, err = check(capsys, "--send")
        assert code == 1
        assert "[FAIL] test message to webhook http://127.0.0.1:" in out
        assert expected in out
        assert remedy in out
        no_secret(out, err)

    def test_not_in_channel(self, capsys: pytest.CaptureFixture[str], chat_env: FakeSlack) -> None:
        """A bot outside the channel: exit 1, invite the bot."""
        chat_env.channels.add("C0SOMEOTHER")
        code, out, _ = check(capsys, "--send")
        assert code == 1
        assert "not_in_channel" in out
        assert "Invite the bot to the channel" in out

    def test_timeout(
        self,
        capsys: pytest.CaptureFixture[str],
        fake_slack: FakeSlack,
        tmp_path: Path,
        alerts_dir: Path,
    ) -> None:
        """Slack not answering in read_timeout: exit 1, check the firewall or the timeout."""
        config = write_yaml(
            tmp_path / "logging.yaml",
            f"    webhook_url: {fake_slack.webhook_url}\n"
            f"    alerts_dir: {alerts_dir}\n"
            "    read_timeout: 0.2\n",
        )
        fake_slack.hang_next(10)
        code, out, _ = check(capsys, "--send", "--config", str(config))
        assert code == 1
        assert "no answer (ReadTimeout)" in out
        assert "raise the timeout" in out

    def test_unreachable(
        self,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
        alerts_dir: Path,
    ) -> None:
        """Nothing listening: exit 1 with the network remedy, naming the host and port tried."""
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        monkeypatch.setenv("SLACK_WEBHOOK_URL", f"http://127.0.0.1:{port}/services/T0/B0/x")
        monkeypatch.setenv("SLACK_ALERTS_DIR", str(alerts_dir))
        code, out, _ = check(capsys, "--send")
        assert code == 1
        assert "no answer (ConnectionError)" in out
        assert "firewall" in out
        # The URL is http://: the remedy says HTTP, to the host and port really tried.
        assert f"outbound HTTP to 127.0.0.1:{port} is allowed" in out
        assert "slack.com:443" not in out

    def test_directory_not_creatable(
        self,
        capsys: pytest.CaptureFixture[str],
        webhook_env: FakeSlack,
        monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path,
    ) -> None:
        """An alerts directory that cannot be created fails with the permissions fix."""
        blocker = tmp_path / "file"
        blocker.write_text("not a directory")
        monkeypatch.setenv("SLACK_ALERTS_DIR", str(blocker / "alerts"))
        code, out, _ = check(capsys, "--create")
        assert code == 1
        assert f"[FAIL] alerts directory {blocker / 'alerts'}: cannot create it" in out
        assert "chown" in out
        assert "로그 파일 저장 실패" in out

    def test_directory_not_writable(
        self,
        capsys: pytest.CaptureFixture[str],
        webhook_env: FakeSlack,
        alerts_dir: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """An existing directory that refuses the probe file fails with the permissions fix."""
        alerts_dir.mkdir()
        real_open = os.open

        def refuse_probe(path: Any, *args: Any, **kwargs: Any) -> int:
            # Works the same as root, who can write into a chmod 500 directory.
            if Path(path).name.startswith(".check-"):
                raise PermissionError(13, "Permission denied")
            return real_open(path, *args, **kwargs)

        monkeypatch.setattr(os, "open", refuse_probe)
        code, out, _ = check(capsys, "--create")
        assert code == 1
        assert f"[FAIL] alerts directory {alerts_dir}: not writable (Permission denied)" in out
        assert "chown" in out

    def test_reports_dead_letters(
        self, capsys: pytest.CaptureFixture[str], webhook_env: FakeSlack, alerts_dir: Path
    ) -> None:
        """An existing outbox is summarised; dead letters are a warning pointing at replay."""
        alerts_dir.mkdir()
        outbox = Outbox(alerts_dir)
        alert = Alert(new_alert_id(), "payment_fail", "error", "x", time.time())
        outbox.add([(alert, "webhook:old")])
        outbox.mark_dead([alert.alert_id], "HTTP 404 no_service")
        outbox.close()
        code, out, _ = check(capsys)
        assert code == 0  # a warning, not a failure: the configuration may be fixed already
        assert "[info] outbox: 0 pending, 0 delivered, 1 dead" in out
        assert "[warn] 1 alert(s) were rejected by Slack" in out
        assert "slack-logging replay" in out

    def test_reports_an_old_backlog(
        self, capsys: pytest.CaptureFixture[str], webhook_env: FakeSlack, alerts_dir: Path
    ) -> None:
        """A pending alert older than five minutes is a warning with its age in plain units."""
        store(alerts_dir, 1, age=612)
        code, out, _ = check(capsys)
        assert code == 0
        assert "[warn] the oldest pending alert has waited 10 m 1" in out  # 10 m 12 s or so
        assert "slack-logging flush" in out


class TestConfigFile:
    @pytest.mark.parametrize("form", ["class", "()"])
    def test_handler_found_in_both_forms(self, form: str, tmp_path: Path) -> None:
        """The handler is found by class: or (): and dictConfig keys are dropped."""
        config = write_yaml(tmp_path / "l.yaml", "    rate_limit: 2\n", form)
        name, options = handler_options(config)
        assert (name, options) == ("slack", {"rate_limit": 2})

    def test_env_is_expanded(self, tmp_path: Path, alerts_dir: Path) -> None:
        """${VAR:-default} is expanded like configure() does."""
        config = write_yaml(
            tmp_path / "l.yaml", "    alerts_dir: ${MY_DIR:-/x}\n    service: ${NOPE:-pay}\n"
        )
        _, options = handler_options(config, env={"MY_DIR": str(alerts_dir)})
        assert options == {"alerts_dir": str(alerts_dir), "service": "pay"}

    def test_repo_logging_yaml(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """The shipped logging.yaml is understood without applying it."""
        monkeypatch.setenv("SLACK_ALERTS_DIR", str(tmp_path))
        name, options = handler_options(REPO / "logging.yaml")
        assert name == "slack"
        assert options["alerts_dir"] == str(tmp_path)
        assert "refund_fail" in options["categories"]

    def test_no_handler(self, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
        """A config without our handler is a usage error on stderr."""
        path = tmp_path / "l.yaml"
        path.write_text("version: 1\nhandlers: {}\n")
        code, _, err = check(capsys, "--config", str(path))
        assert code == 2
        assert "no handler with class slack_logging.SlackAlertHandler" in err

    def test_yaml_error_does_not_quote_the_file(
        self, capsys: pytest.CaptureFixture[str], tmp_path: Path
    ) -> None:
        """A YAML syntax error names the line, never the text (it may hold the webhook)."""
        path = tmp_path / "l.yaml"
        path.write_text(
            "handlers:\n  slack:\n    webhook_url: https://hooks.slack.com/services/T/B/sekret\n"
            "    bad: [unclosed\n"
        )
        code, out, err = check(capsys, "--config", str(path))
        assert code == 2
        assert "invalid YAML at line" in err
        assert "sekret" not in out + err

    def test_missing_file(self, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
        """A missing config file: exit 2 with the OS error."""
        code, _, err = run(capsys, "preview", "payment_fail", "--config", str(tmp_path / "no"))
        assert code == 2
        assert "No such file" in err


class TestSend:
    def test_delivered(self, capsys: pytest.CaptureFixture[str], webhook_env: FakeSlack) -> None:
        """An alert from the shell arrives with typed fields; exit 0."""
        code, out, err = run(
            capsys,
            "send",
            "report_fail",
            "야간 리포트 실패",
            "--field",
            "report_id=00123",
            "-f",
            "rows=15000",
            "-f",
            "ratio=0.5",
        )
        assert code == 0, err
        assert "delivered" in out
        (msg,) = webhook_env.messages
        body = json.dumps(msg.payload, ensure_ascii=False)
        assert "야간 리포트 실패" in body
        assert "리포트 생성 실패" in body
        assert "00123" in body
        assert "15,000" in body or "15000" in body
        context = msg.payload["attachments"][0]["blocks"][-1]["elements"][0]["text"]
        assert context.endswith("· at slack-logging send")
        assert "cli.py" not in body
        assert "site-packages" not in body

    def test_rejected(self, capsys: pytest.CaptureFixture[str], webhook_env: FakeSlack) -> None:
        """A revoked webhook: exit 1 with the cause and the fix."""
        webhook_env.revoke()
        code, _, err = run(capsys, "send", "payment_fail", "x")
        assert code == 1
        assert "rejected by Slack: HTTP 404 no_service" in err
        assert "Regenerate the incoming webhook" in err
        no_secret(err)

    def test_slack_down_is_queued(
        self, capsys: pytest.CaptureFixture[str], webhook_env: FakeSlack, alerts_dir: Path
    ) -> None:
        """Slack down past --timeout: exit 3, the alert stays in the outbox for later."""
        webhook_env.set_down(503)
        code, _, err = run(capsys, "send", "payment_fail", "x", "--timeout", "0.3")
        assert code == 3
        assert "stored in" in err
        outbox = Outbox(alerts_dir)
        try:
            assert outbox.counts()["pending"] == 1
        finally:
            outbox.close()

    def test_not_configured(
        self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, alerts_dir: Path
    ) -> None:
        """Without a destination nothing is sent: exit 1, the mirror keeps it."""
        monkeypatch.setenv("SLACK_ALERTS_DIR", str(alerts_dir))
        code, _, err = run(capsys, "send", "payment_fail", "x")
        assert code == 1
        assert "not sent: no destination configured" in err
        assert "payment_fail" in (alerts_dir / "alerts.jsonl").read_text(encoding="utf-8")

    def test_unknown_category_is_sent_with_a_note(
        self, capsys: pytest.CaptureFixture[str], webhook_env: FakeSlack
    ) -> None:
        """A category outside the catalog still goes out, with a note on stderr."""
        code, _, err = run(capsys, "send", "disk_full", "디스크 부족")
        assert code == 0
        assert "'disk_full' is not in the catalog" in err
        assert "Unknown alert: disk_full" in webhook_env.messages[0].payload["text"]

    def test_custom_category_from_config(
        self,
        capsys: pytest.CaptureFixture[str],
        fake_slack: FakeSlack,
        tmp_path: Path,
        alerts_dir: Path,
    ) -> None:
        """--config brings the file's categories: a custom one has its title."""
        config = write_yaml(
            tmp_path / "logging.yaml",
            f"    webhook_url: {fake_slack.webhook_url}\n"
            f"    alerts_dir: {alerts_dir}\n"
            "    categories:\n"
            "      refund_fail:\n"
            "        title: 환불 실패\n",
        )
        code, _, err = run(capsys, "send", "refund_fail", "x", "--config", str(config))
        assert code == 0, err
        assert "note:" not in err
        assert "환불 실패" in fake_slack.messages[0].payload["text"]

    def test_thread_key_field_threads_in_bot_mode(
        self, capsys: pytest.CaptureFixture[str], chat_env: FakeSlack
    ) -> None:
        """Two sends with the same thread_key field: the second replies in the first's thread."""
        assert run(capsys, "send", "payment_start", "시작", "-f", "thread_key=ORD-9")[0] == 0
        assert run(capsys, "send", "payment_fail", "실패", "-f", "thread_key=ORD-9")[0] == 0
        first, second = chat_env.messages
        assert second.thread_ts == first.ts

    def test_thread_key_is_never_a_field_in_webhook_mode(
        self, capsys: pytest.CaptureFixture[str], webhook_env: FakeSlack
    ) -> None:
        """A webhook cannot thread: thread_key steers nothing there and is not shown either,
        while the alert's own fields are."""
        assert (
            run(capsys, "send", "payment_fail", "실패", "-f", "thread_key=ORD-9", "-f", "n=1")[0]
            == 0
        )
        [message] = webhook_env.messages
        shown = json.dumps(message.payload, ensure_ascii=False)
        assert "thread_key" not in shown
        assert "*n*" in shown
        assert "thread_key" not in message.preview()

    @pytest.mark.parametrize("argv", [["send", "bad name", "x"], ["send", "x", "y", "-f", "nokey"]])
    def test_usage_errors(self, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
        """A bad category or field is an argparse error: exit 2, message on stderr."""
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 2
        assert "error:" in capsys.readouterr().err


class TestPreview:
    def test_prints_payload_without_network(
        self, capsys: pytest.CaptureFixture[str], webhook_env: FakeSlack
    ) -> None:
        """preview prints the Block Kit JSON and sends nothing."""
        code, out, _ = run(
            capsys, "preview", "payment_fail", "카드 한도 초과", "-f", "order_id=ORD-1", "--json"
        )
        assert code == 0
        payload = json.loads(out)
        assert payload["text"] == ":x: 결제 실패: 카드 한도 초과"
        assert payload["metadata"]["event_payload"]["category"] == "payment_fail"
        assert "ORD-1" in json.dumps(payload)
        assert webhook_env.requests == []

    def test_sample_fields_without_any(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Without fields and message, the key fields show as placeholders."""
        code, out, _ = run(capsys, "preview", "api_timeout", "--json")
        assert code == 0
        body = json.dumps(json.loads(out), ensure_ascii=False)
        for name in ("service", "endpoint", "elapsed_ms"):
            assert f"<{name}>" in body.replace("&lt;", "<").replace("&gt;", ">")
        assert "Preview of the API 타임아웃 alert" in body

    def test_redaction_applies(self, capsys: pytest.CaptureFixture[str]) -> None:
        """The preview shows what redaction leaves: a card number is masked."""
        code, out, _ = run(capsys, "preview", "payment_fail", "card 4111 1111 1111 1111")
        assert code == 0
        assert "4111 1111 1111 1111" not in out

    def test_chat_mode_shows_channel(
        self, capsys: pytest.CaptureFixture[str], chat_env: FakeSlack
    ) -> None:
        """In bot-token mode the payload names the channel it would go to."""
        code, out, _ = run(capsys, "preview", "report_fail", "--json")
        assert code == 0
        assert json.loads(out)["channel"] == "C0ALERTS01"
        code, out, _ = run(capsys, "preview", "report_fail")
        assert out.startswith("to #C0ALERTS01:\n")

    def test_unknown_category(self, capsys: pytest.CaptureFixture[str]) -> None:
        """An unknown category previews as the visible stand-in."""
        code, out, _ = run(capsys, "preview", "disk_full", "x", "--json")
        assert code == 0
        assert "Unknown alert: disk_full" in json.loads(out)["text"]

    def test_draws_the_message_as_slack_shows_it(
        self, capsys: pytest.CaptureFixture[str], webhook_env: FakeSlack
    ) -> None:
        """Without --json: emoji drawn, the title once, fields in two columns, the context
        line naming the command; no ANSI codes when not a terminal."""
        code, out, _ = run(
            capsys,
            "preview",
            "net_cancel_fail",
            "망취소 실패: 수동 환불이 필요합니다",
            "-f",
            "order_id=ORD-1",
            "-f",
            "amount=15000",
        )
        assert code == 0
        lines = out.splitlines()
        assert lines[:2] == ["🚨 망취소 실패", "수동 환불이 필요합니다"]
        assert lines[2].startswith("▌ order_id ") and lines[2].endswith(" amount")
        assert lines[3].startswith("▌ ORD-1 ") and lines[3].endswith(" 15,000")
        assert lines[-1].endswith("at slack-logging preview")
        assert "\x1b[" not in out
        assert webhook_env.requests == []

    def test_count_previews_the_digest_of_a_burst(self, capsys: pytest.CaptureFixture[str]) -> None:
        """--count 40 shows the one message a burst of 40 such alerts becomes."""
        code, out, _ = run(
            capsys,
            "preview",
            "payment_fail",
            "카드 한도 초과",
            "-f",
            "order_id=ORD-1",
            "--count",
            "40",
        )
        assert code == 0
        lines = out.splitlines()
        assert lines[0] == "❌ 결제 실패 ×40"
        assert lines[1].startswith("40 alerts between ")
        assert lines[1].endswith(" UTC (9.8 s)")
        assert "`ORD-1` ×40" in out  # the headline says 카드 한도 초과 once
        code, out, _ = run(capsys, "preview", "payment_fail", "--json", "--count", "40")
        assert json.loads(out)["metadata"]["event_payload"]["count"] == 40

    @pytest.mark.parametrize("count", ["0", "1001", "many"])
    def test_count_out_of_range_is_a_usage_error(
        self, count: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A burst size outside 1..1000 is refused by argparse (exit 2)."""
        with pytest.raises(SystemExit) as exited:
            main(["preview", "payment_fail", "--count", count])
        assert exited.value.code == 2
        assert "expected a count from 1 to 1000" in capsys.readouterr().err

    def test_color_and_builder_link(self, capsys: pytest.CaptureFixture[str]) -> None:
        """--color forces ANSI styling; --builder adds a Block Kit Builder link holding the
        blocks, URL-encoded."""
        code, out, _ = run(capsys, "preview", "payment_fail", "x", "--color", "--builder")
        assert code == 0
        assert "\x1b[1m" in out  # the header in bold
        assert "\x1b[38;2;" in out  # the colour bar
        link = out.strip().splitlines()[-1].split(": ", 1)[1]
        assert link.startswith("https://app.slack.com/block-kit-builder/#%7B%22blocks%22")
        shown = json.loads(urllib.parse.unquote(link.split("#", 1)[1]))
        assert shown["blocks"][0]["type"] == "header"


def store(
    alerts_dir: Path,
    n: int,
    *,
    dead: str | None = None,
    age: float = 0.0,
    categories: tuple[str, ...] = ("payment_fail",),
) -> list[str]:
    """Put ``n`` pending alerts (or dead letters) in the outbox, as a crashed service would."""
    alerts_dir.mkdir(exist_ok=True)
    outbox = Outbox(alerts_dir, origin="old-host:1")
    created = time.time() - age
    alerts = [
        Alert(
            new_alert_id(created),
            categories[i % len(categories)],
            "error",
            f"카드 한도 초과 {i}",
            created + i,
        )
        for i in range(n)
    ]
    outbox.add([(a, "webhook:old") for a in alerts])
    if dead:
        outbox.mark_dead([a.alert_id for a in alerts], dead)
    outbox.close()
    return [a.alert_id for a in alerts]


class TestStatusReplay:
    @pytest.mark.parametrize("command", ["status", "replay", "flush"])
    def test_missing_directory_is_an_error_creating_nothing(
        self,
        command: str,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path,
    ) -> None:
        """A typo in the directory exits 2, names the absolute path read, creates nothing."""
        monkeypatch.chdir(tmp_path)
        code, _, err = run(capsys, command, "--alerts-dir", "slack_alrets")
        assert code == 2
        assert f"no alerts directory at {tmp_path / 'slack_alrets'} (from --alerts-dir)" in err
        assert list(tmp_path.iterdir()) == []

    @pytest.mark.parametrize("command", ["status", "replay", "flush"])
    def test_directory_without_outbox_is_an_error(
        self,
        command: str,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path,
    ) -> None:
        """The default ./slack_alerts read from the wrong working directory: exit 2, saying
        where it looked and how the directory was chosen; no outbox is created."""
        monkeypatch.delenv("SLACK_ALERTS_DIR", raising=False)
        monkeypatch.chdir(tmp_path)
        (tmp_path / "slack_alerts").mkdir()
        code, _, err = run(capsys, command)
        assert code == 2
        assert f"no outbox in {tmp_path / 'slack_alerts'} (from the default ./slack_alerts)" in err
        assert list((tmp_path / "slack_alerts").iterdir()) == []

    def test_status_shows_oldest_age_and_last_error(
        self, capsys: pytest.CaptureFixture[str], alerts_dir: Path
    ) -> None:
        """Pending alerts show how long the oldest waits; the last failure shows with its fix."""
        ids = store(alerts_dir, 3, age=192.4)
        outbox = Outbox(alerts_dir)
        outbox.reschedule(ids[:1], time.time() + 60, "HTTP 404 no_service")
        outbox.close()
        code, out, _ = run(capsys, "status", "--alerts-dir", str(alerts_dir))
        assert code == 0
        assert f"alerts directory: {alerts_dir}" in out
        assert "   pending: 3 (the oldest has waited 3 m 1" in out  # 3 m 12 s or so
        assert "last error: HTTP 404 no_service (just now, an alert still pending)" in out
        assert "Regenerate the incoming webhook" in out
        assert "slack-logging flush" in out
        code, out, _ = run(capsys, "status", "--alerts-dir", str(alerts_dir), "--json")
        report = json.loads(out)
        assert report["pending"] == 3
        assert 192 <= report["oldest_pending_age_s"] < 300
        assert report["last_error"]["error"] == "HTTP 404 no_service"
        assert report["last_error"]["state"] == "pending"

    def test_status_remedy_names_the_host_the_service_tries(
        self,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
        alerts_dir: Path,
    ) -> None:
        """A connection error's fix names the configured webhook's host and port, not
        slack.com:443, and never the webhook's secret path."""
        ids = store(alerts_dir, 1)
        outbox = Outbox(alerts_dir)
        outbox.reschedule(ids, time.time() + 60, "ConnectionError")
        outbox.close()
        monkeypatch.setenv("SLACK_WEBHOOK_URL", "http://127.0.0.1:8098/services/T0/B0/secretXYZ")
        code, out, _ = run(capsys, "status", "--alerts-dir", str(alerts_dir))
        assert code == 0
        assert "last error: ConnectionError" in out
        assert "outbound HTTP to 127.0.0.1:8098 is allowed" in out
        assert "slack.com:443" not in out
        assert "secretXYZ" not in out

    def test_send_rejection_remedy_names_the_host(
        self, capsys: pytest.CaptureFixture[str], webhook_env: FakeSlack
    ) -> None:
        """send's fix for a refused webhook names the host it posted to."""
        webhook_env.revoke()
        code, _, err = run(capsys, "send", "payment_fail", "x", "--timeout", "10")
        assert code == 1
        host = webhook_env.url.removeprefix("http://")
        assert "rejected by Slack: HTTP 404 no_service. Regenerate" in err
        assert f"(tried {host})" in err

    def test_status_reads_alerts_dir_from_config(
        self, capsys: pytest.CaptureFixture[str], tmp_path: Path, alerts_dir: Path
    ) -> None:
        """--config gives status the alerts directory of the handler."""
        store(alerts_dir, 1)
        config = write_yaml(tmp_path / "l.yaml", f"    alerts_dir: {alerts_dir}\n")
        code, out, _ = run(capsys, "status", "--config", str(config), "--json")
        assert code == 0
        assert json.loads(out)["alerts_dir"] == str(alerts_dir)

    def test_replay_queues_without_sending(
        self, capsys: pytest.CaptureFixture[str], webhook_env: FakeSlack, alerts_dir: Path
    ) -> None:
        """replay alone re-queues dead letters, says how to send them now, and sends nothing."""
        store(alerts_dir, 2, dead="HTTP 404 no_service")
        code, out, _ = run(capsys, "replay", "--alerts-dir", str(alerts_dir))
        assert code == 0
        assert "2 dead letter(s) queued again" in out
        assert "slack-logging flush" in out
        assert webhook_env.requests == []
        outbox = Outbox(alerts_dir)
        assert outbox.counts()["pending"] == 2
        outbox.close()

    def test_replay_send_delivers_them(
        self, capsys: pytest.CaptureFixture[str], webhook_env: FakeSlack, alerts_dir: Path
    ) -> None:
        """replay --send re-queues and delivers every dead letter now: exit 0, all counted."""
        store(alerts_dir, 4, dead="HTTP 404 no_service")
        code, out, _ = run(capsys, "replay", "--send", "--alerts-dir", str(alerts_dir))
        assert code == 0, out
        assert webhook_env.alerts_covered == 4
        assert "done: nothing left to send" in out


class TestFlush:
    def test_delivers_what_is_pending(
        self, capsys: pytest.CaptureFixture[str], webhook_env: FakeSlack, alerts_dir: Path
    ) -> None:
        """Alerts left by a dead process go out now, within Slack's rate (a fake allowing one
        message a second after a burst of four answers 429 to anything faster), with a
        progress line per message; exit 0 and every alert counted."""
        kinds = ("payment_fail", "report_fail", "api_timeout", "network_error", "net_cancel_fail")
        store(alerts_dir, 25, categories=kinds)
        # The flush paces itself at 1/s after a burst of 3. The fake allows one more: it takes
        # its token when the request arrives, not when it was planned, so a stalled machine
        # would otherwise see a 429 that is scheduling jitter. Unpaced, all 5 would go at once.
        webhook_env.set_rate_limit(1.0, burst=4)
        code, out, err = run(capsys, "flush", "--alerts-dir", str(alerts_dir))
        assert code == 0, out + err
        assert f"delivering the pending alerts of {alerts_dir} at most 1 message(s)/s" in out
        assert "sent 1 message(s) covering 5 alert(s); 20 pending" in out
        assert "sent 5 message(s) covering 25 alert(s); 0 pending" in out
        assert "done: nothing left to send" in out
        assert len(webhook_env.messages) == 5
        assert webhook_env.alerts_covered == 25
        assert webhook_env.rate_limited == 0
        outbox = Outbox(alerts_dir)
        assert outbox.counts() == {"pending": 0, "delivered": 25, "dead": 0}
        outbox.close()

    def test_slack_down_leaves_them_pending(
        self, capsys: pytest.CaptureFixture[str], webhook_env: FakeSlack, alerts_dir: Path
    ) -> None:
        """Slack answering 503 until the timeout: exit 1, the alerts stay pending, the error
        is said."""
        store(alerts_dir, 3)
        webhook_env.set_down(503)
        code, out, err = run(capsys, "flush", "--alerts-dir", str(alerts_dir), "--timeout", "0.5")
        assert code == 1
        assert "3 alert(s) still pending after 0.5 s (HTTP 503" in err
        assert "last error: HTTP 503" in out
        outbox = Outbox(alerts_dir)
        assert outbox.counts()["pending"] == 3
        outbox.close()

    def test_rejected_alerts_exit_1(
        self, capsys: pytest.CaptureFixture[str], webhook_env: FakeSlack, alerts_dir: Path
    ) -> None:
        """A revoked webhook turns the alerts into dead letters: exit 1, replay named."""
        store(alerts_dir, 1)
        webhook_env.revoke()
        code, _, err = run(capsys, "flush", "--alerts-dir", str(alerts_dir), "--timeout", "30")
        assert code == 1
        assert "1 alert(s) rejected by Slack" in err
        assert "replay --send" in err

    def test_waits_for_a_running_sender_and_never_sends_beside_it(
        self,
        capsys: pytest.CaptureFixture[str],
        webhook_env: FakeSlack,
        alerts_dir: Path,
    ) -> None:
        """While a live process holds sender.lock, flush sends nothing itself and says so."""
        store(alerts_dir, 2)
        fd = os.open(alerts_dir / "sender.lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            code, out, err = run(
                capsys, "flush", "--alerts-dir", str(alerts_dir), "--timeout", "0.3"
            )
        finally:
            os.close(fd)
        assert code == 1
        assert f"a running sender holds {alerts_dir / 'sender.lock'}" in out
        # A stopped holder (SIGSTOP, a frozen container) is taken over: the line says when.
        assert "waiting for it (2 pending); taken over if it stops beating for " in out
        assert "the process holding sender.lock delivered none of them" in err
        assert webhook_env.requests == []

    def test_the_same_backlog_twice_gives_the_same_messages(
        self,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path,
    ) -> None:
        """1,000 identical-looking alerts of three categories, flushed from two identical
        outboxes: the same messages, payload for payload, every alert counted once."""
        created = time.time() - 300
        runs = []
        for run_no in range(2):
            directory = tmp_path / f"run{run_no}"
            directory.mkdir()
            outbox = Outbox(directory, origin="old-host:1")
            outbox.add(
                [
                    (
                        Alert(
                            f"{i:024d}",
                            ("payment_fail", "api_timeout", "report_fail")[i % 3],
                            "error",
                            "카드 한도 초과",
                            created + i * 0.1,
                            fields={"order_id": f"ORD-{i % 7}"},
                        ),
                        "webhook:old",
                    )
                    for i in range(1000)
                ]
            )
            outbox.close()
            with FakeSlack() as fake:
                monkeypatch.setenv("SLACK_WEBHOOK_URL", fake.webhook_url)
                code, out, err = run(capsys, "flush", "--alerts-dir", str(directory))
                assert code == 0, out + err
                assert fake.alerts_covered == 1000
                runs.append([m.payload for m in fake.messages])
        assert runs[0] == runs[1]
        assert len(runs[0]) == 3

    @pytest.mark.subprocess
    def test_a_running_service_keeps_sending_and_flush_never_sends_beside_it(
        self,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
        fake_slack: FakeSlack,
        alerts_dir: Path,
    ) -> None:
        """A real service process holds sender.lock with alerts pending (Slack was down).
        flush, pointed at another webhook path, waits for it: every alert reaches Slack once,
        all through the service's webhook, none through flush's, and flush exits 0."""
        fake_slack.set_down(503)
        service_url = fake_slack.url + "/services/T0SERVICE/B0SERVICE/serviceSecret"
        flush_url = fake_slack.url + "/services/T0FLUSH/B0FLUSH/flushSecret"
        with subprocess.Popen(
            [sys.executable, "-c", SERVICE, service_url, str(alerts_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        ) as service:
            try:
                assert service.stdout is not None and service.stdin is not None
                assert service.stdout.readline().strip() == "logged 3"
                fake_slack.wait_for_requests(1, timeout=60)  # it leads, and Slack refused
                real_sleep = _flush._sleep
                seen: list[float] = []

                def slack_comes_back(seconds: float) -> None:
                    if not seen:
                        fake_slack.set_up()
                    seen.append(seconds)
                    real_sleep(seconds)

                monkeypatch.setattr(_flush, "_sleep", slack_comes_back)
                monkeypatch.setenv("SLACK_WEBHOOK_URL", flush_url)
                code, out, err = run(
                    capsys, "flush", "--alerts-dir", str(alerts_dir), "--timeout", "120"
                )
            finally:
                if service.stdin is not None:
                    service.stdin.close()
                service.wait(timeout=60)
        assert code == 0, out + err
        assert f"a running sender holds {alerts_dir / 'sender.lock'}" in out
        assert "waiting for it (3 pending)" in out
        assert "done: nothing left to send" in out
        assert seen  # flush waited for the service at least once
        paths = {r.path for r in fake_slack.requests}
        assert paths == {urllib.parse.urlsplit(service_url).path}
        ids = alert_ids(fake_slack)
        assert len(ids) == len(set(ids)) == 3
        assert service.returncode == 0

    @pytest.mark.subprocess
    def test_a_stopped_service_is_taken_over(
        self,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
        fake_slack: FakeSlack,
        tmp_path: Path,
    ) -> None:
        """The service holding sender.lock is frozen (SIGSTOP, a paused container) with alerts
        pending. flush waits one lease without a heartbeat, takes over and delivers each of
        them once, and exits 0."""
        alerts_dir = tmp_path / "alerts"
        alerts_dir.mkdir()
        fake_slack.set_down(503)
        config = write_yaml(
            tmp_path / "logging.yaml",
            f"    webhook_url: {fake_slack.webhook_url}\n"
            "    connect_timeout: 0.5\n"
            "    read_timeout: 0.5\n",
        )
        with subprocess.Popen(
            [sys.executable, "-c", SERVICE, fake_slack.webhook_url, str(alerts_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        ) as service:
            try:
                assert service.stdout is not None and service.stdin is not None
                assert service.stdout.readline().strip() == "logged 3"
                fake_slack.wait_for_requests(1, timeout=60)
                wait_pending(alerts_dir, 3)  # all three stored, not only queued in memory
                os.kill(service.pid, signal.SIGSTOP)
                os.waitpid(service.pid, os.WUNTRACED)  # returns once it is really stopped
                # A request it sent just before stopping is answered (503) while still down:
                # none can be taken by Slack behind the outbox's back (the at-least-once window).
                deadline = time.monotonic() + 60
                while not all(r.answered for r in fake_slack.requests):
                    assert time.monotonic() < deadline, fake_slack.requests
                    time.sleep(0.01)
                fake_slack.set_up()
                code, out, err = run(
                    capsys,
                    "flush",
                    "--config",
                    str(config),
                    "--alerts-dir",
                    str(alerts_dir),
                    "--timeout",
                    "120",
                )
            finally:
                service.kill()  # stopped or not; SIGKILL ends it either way
                service.wait(timeout=60)
        assert code == 0, out + err
        assert "waiting for it (3 pending); taken over if it stops beating for 11 s" in out
        assert "done: nothing left to send" in out
        ids = alert_ids(fake_slack)
        assert len(ids) == len(set(ids)) == 3

    def test_exits_0_when_the_running_sender_delivers_everything(
        self,
        capsys: pytest.CaptureFixture[str],
        webhook_env: FakeSlack,
        alerts_dir: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """The lock holder delivers one alert per wait; flush reports it and ends at 0 left,
        having sent nothing itself."""
        ids = store(alerts_dir, 3)
        fd = os.open(alerts_dir / "sender.lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        other = Outbox(alerts_dir)

        def other_sender_delivers(seconds: float) -> None:
            other.mark_delivered([ids.pop()], "1714536200.000100")

        monkeypatch.setattr(_flush, "_sleep", other_sender_delivers)
        try:
            code, out, _ = run(capsys, "flush", "--alerts-dir", str(alerts_dir))
        finally:
            other.close()
            os.close(fd)
        assert code == 0, out
        assert "waiting for it (3 pending)" in out
        assert "waiting for it (1 pending)" in out
        assert "done: nothing left to send" in out
        assert webhook_env.requests == []

    def test_takes_over_when_the_running_sender_goes(
        self,
        capsys: pytest.CaptureFixture[str],
        webhook_env: FakeSlack,
        alerts_dir: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """When the lock holder exits, flush takes the lock and delivers everything itself."""
        store(alerts_dir, 3)
        fd = os.open(alerts_dir / "sender.lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        waits: list[float] = []

        def holder_exits(seconds: float) -> None:
            if not waits:
                os.close(fd)  # the running service exits while flush waits for it
            waits.append(seconds)

        monkeypatch.setattr(_flush, "_sleep", holder_exits)
        code, out, _ = run(capsys, "flush", "--alerts-dir", str(alerts_dir))
        assert code == 0, out
        assert "a running sender holds" in out
        assert webhook_env.alerts_covered == 3

    def test_unreadable_outbox_is_a_clear_error(
        self, capsys: pytest.CaptureFixture[str], alerts_dir: Path
    ) -> None:
        """A file that is not an SQLite database: exit 2 with a sentence, not a traceback."""
        alerts_dir.mkdir()
        (alerts_dir / "outbox.sqlite3").write_bytes(b"this is not a database" * 100)
        code, _, err = run(capsys, "status", "--alerts-dir", str(alerts_dir))
        assert code == 2
        assert f"cannot read the outbox in {alerts_dir}" in err
        assert "Traceback" not in err

    def test_no_destination_is_a_usage_error(
        self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, alerts_dir: Path
    ) -> None:
        """Without a destination there is nothing to flush to: exit 2, pointing at check."""
        for name in ("SLACK_WEBHOOK_URL", "SLACK_BOT_TOKEN"):
            monkeypatch.delenv(name, raising=False)
        store(alerts_dir, 1)
        code, _, err = run(capsys, "flush", "--alerts-dir", str(alerts_dir))
        assert code == 2
        assert "no destination configured" in err
        assert "slack-logging check" in err

    def test_replay_send_without_destination_changes_nothing(
        self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, alerts_dir: Path
    ) -> None:
        """replay --send with nowhere to send: exit 2 before any dead letter is queued again."""
        for name in ("SLACK_WEBHOOK_URL", "SLACK_BOT_TOKEN"):
            monkeypatch.delenv(name, raising=False)
        store(alerts_dir, 2, dead="HTTP 404 no_service")
        code, out, err = run(capsys, "replay", "--send", "--alerts-dir", str(alerts_dir))
        assert code == 2
        assert "no destination configured" in err
        assert "queued again" not in out
        outbox = Outbox(alerts_dir)
        assert outbox.counts()["dead"] == 2
        outbox.close()


class TestDirectoryNames:
    @pytest.mark.parametrize("command", ["status", "flush", "replay", "summary"])
    def test_a_relative_path_is_named_where_it_leads(
        self,
        command: str,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path,
    ) -> None:
        """SLACK_ALERTS_DIR=../slack_alerts from the wrong directory: the message names the
        absolute, normalised directory it read, with no ".." left in it."""
        (tmp_path / "app").mkdir()
        monkeypatch.chdir(tmp_path / "app")
        monkeypatch.setenv("SLACK_ALERTS_DIR", "../slack_alerts")
        code, _, err = run(capsys, command)
        assert code == 2
        assert f"no alerts directory at {tmp_path / 'slack_alerts'} (from SLACK_ALERTS_DIR)" in err
        assert ".." not in err

    def test_a_file_is_not_an_alerts_directory(
        self, capsys: pytest.CaptureFixture[str], tmp_path: Path
    ) -> None:
        """--alerts-dir naming a file says it is a file, not that nothing is there."""
        (tmp_path / "outbox.sqlite3").write_bytes(b"")
        code, _, err = run(capsys, "status", "--alerts-dir", str(tmp_path / "outbox.sqlite3"))
        assert code == 2
        assert f"{tmp_path / 'outbox.sqlite3'} (from --alerts-dir) is a file" in err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("amount=15000", ("amount", 15000)),
        ("delta=-3", ("delta", -3)),
        ("ratio=12.5", ("ratio", 12.5)),
        ("order_id=00123", ("order_id", "00123")),
        ("n=1e3", ("n", "1e3")),
        ("n=1_000", ("n", "1_000")),
        ("flag=true", ("flag", "true")),
        ("note=a=b", ("note", "a=b")),
        ("empty=", ("empty", "")),
        ("reason=카드 한도 초과", ("reason", "카드 한도 초과")),
    ],
)
def test_parse_field(text: str, expected: tuple[str, Any]) -> None:
    """Plain integers and decimals become numbers; everything else keeps its spelling."""
    assert parse_field(text) == expected


@pytest.mark.subprocess
def test_python_m_smoke(tmp_path: Path) -> None:
    """python -m slack_logging preview runs in a fresh interpreter and prints JSON."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLACK_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "slack_logging",
            "preview",
            "net_cancel_fail",
            "망취소 실패",
            "--json",
        ],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["text"] == ":rotating_light: 망취소 실패"
