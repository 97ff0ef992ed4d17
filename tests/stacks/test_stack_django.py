"""Django: examples/django_settings.py's LOGGING in a small project, driven by the test client."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
from stackkit import EXAMPLES, run

from slack_logging.pytest_plugin import plain_text
from slack_logging.testing import FakeSlack

pytest.importorskip("django")

SETTINGS = f"""
import os, sys
sys.path.insert(0, {str(EXAMPLES)!r})
from django_settings import LOGGING  # the example, pasted as is

SECRET_KEY = "test-only-not-secret"
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["testserver"]
ROOT_URLCONF = "urls"
INSTALLED_APPS = []
DATABASES = {{}}
USE_TZ = True
"""

URLS = """
from django.http import JsonResponse
from django.urls import path
from slack_logging import AlertLogger

alerts = AlertLogger("shop.payments")

def pay(request):
    order_id = request.GET["order_id"]
    alerts.payment_fail("카드 승인 거절", order_id=order_id, amount=int(request.GET["amount"]))
    return JsonResponse({"error": "card declined"}, status=402)

def boom(request):
    raise RuntimeError("db connection lost")

urlpatterns = [path("pay", pay), path("boom", boom)]
"""

CLIENT = """
import logging, os, django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
django.setup()
from django.test import Client
from slack_logging import SlackAlertHandler

client = Client(raise_request_exception=False)
print(client.post("/pay?order_id=ORD-1&amount=15000").status_code)
print(client.get("/boom").status_code)
print(client.get("/nope").status_code)
handlers = [h for h in logging.getLogger().handlers if isinstance(h, SlackAlertHandler)]
assert len(handlers) == 1 and handlers[0].flush(60), handlers
"""


@pytest.fixture
def project(tmp_path: Path, stack_env: dict[str, str]) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "settings.py").write_text(textwrap.dedent(SETTINGS))
    (root / "urls.py").write_text(URLS)
    (root / "client.py").write_text(CLIENT)
    stack_env["PYTHONPATH"] = str(root)
    return root


@pytest.mark.parametrize("debug", ["0", "1"])
def test_django_requests_send_alerts(
    project: Path, stack_env: dict[str, str], fake_slack: FakeSlack, debug: str
) -> None:
    stack_env["DJANGO_DEBUG"] = debug
    done = run([sys.executable, "client.py"], env=stack_env, cwd=project)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["402", "500", "404"]
    texts = [plain_text(m.payload) for m in fake_slack.messages]
    assert fake_slack.alerts_covered == 2, texts
    [fail] = [t for t in texts if "결제 실패" in t]
    assert "order_id: ORD-1" in fail and "amount: 15,000" in fail
    # untagged_level: ERROR in the example: an unhandled 500 arrives with its traceback.
    [error] = [t for t in texts if "Internal Server Error: /boom" in t]
    assert "RuntimeError: db connection lost" in error
    # Each django.* line reaches the console once, DEBUG or not.
    assert done.stderr.count("Not Found: /nope") == 1, done.stderr
    assert done.stderr.count("Internal Server Error: /boom") == 1, done.stderr


def test_manage_check(project: Path, stack_env: dict[str, str], fake_slack: FakeSlack) -> None:
    done = run(
        [sys.executable, "-m", "django", "check", "--settings=settings"],
        env=stack_env,
        cwd=project,
    )
    assert done.returncode == 0, done.stderr
    assert "System check identified no issues" in done.stdout
    assert fake_slack.requests == []


def test_manage_check_creates_no_outbox(project: Path, stack_env: dict[str, str]) -> None:
    done = run(
        [sys.executable, "-m", "django", "check", "--settings=settings"],
        env=stack_env,
        cwd=project,
    )
    assert done.returncode == 0, done.stderr
    assert not (Path(stack_env["SLACK_ALERTS_DIR"]) / "outbox.sqlite3").exists()
