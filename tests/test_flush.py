"""The engine of ``slack-logging flush`` and the sender lock it shares with running services:
a sender that lost the lock and takes it again never re-sends what another sender finished."""

from __future__ import annotations

import random
import time
from pathlib import Path

from slack_logging._alert import Alert
from slack_logging._config import Settings
from slack_logging._flush import standalone_sender
from slack_logging._outbox import Outbox
from slack_logging.testing import FakeSlack


def test_a_sender_leading_again_drops_what_another_leader_delivered(
    fake_slack: FakeSlack, alerts_dir: Path
) -> None:
    """A service's sender knows two pending alerts, then loses the lock (it was stopped and
    taken over). The new leader delivers both. When the first leads again, it sends nothing:
    the outbox says they are done, whatever it remembered."""
    alerts_dir.mkdir(exist_ok=True)
    created = time.time() - 5
    stored = Outbox(alerts_dir, origin="svc:1")
    alerts = [Alert(f"{i:024d}", "payment_fail", "error", "x", created + i) for i in range(2)]
    stored.add([(a, "webhook:default") for a in alerts])
    settings = Settings.resolve(None, webhook_url=fake_slack.webhook_url, alerts_dir=alerts_dir)
    outbox = Outbox(alerts_dir, origin="svc:1")
    sender = standalone_sender(settings, outbox, random.Random(0))
    try:
        assert sender.try_lead()
        assert sender.refresh(time.time())
        assert sender.pending_count() == 2
        sender.step_down()  # the lock went to another process
        stored.mark_delivered([a.alert_id for a in alerts], "1714536200.000100")
        assert sender.try_lead()
        while sender.step():
            pass
        assert fake_slack.requests == []
        assert sender.pending_count() == 0
    finally:
        sender.step_down()
        for transport in sender.transports.values():
            transport.close()
        outbox.close()
        stored.close()
