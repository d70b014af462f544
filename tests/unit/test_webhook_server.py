"""The receiver's server limits (deployments/webhook_server.py): the connection cap fits the open-file limit,
and repeated log lines are bounded. The slowloris behaviour itself is tested against a real server in
tests/reliability/test_webhook_slowloris.py."""

from __future__ import annotations

import logging

from deployments.webhook_server import FD_RESERVE, RateLimitedLog, ServerLimits
from tenure.settings import WebhookSettings


def test_limits_fit_the_open_file_limit() -> None:
    """Under ``ulimit -n 256`` the cap and the backlog leave the reserve free; with room, the setting wins."""
    tight = ServerLimits.from_settings(WebhookSettings(max_connections=1000), file_limit=256)
    assert tight.max_connections + tight.backlog <= 256 - FD_RESERVE
    roomy = ServerLimits.from_settings(WebhookSettings(), file_limit=20_000)
    assert roomy.max_connections == 100 and roomy.header_timeout_seconds == 10


def test_repeated_lines_are_bounded_and_counted() -> None:
    """At most ``burst`` lines per call site per interval; the next interval's first line counts the rest."""
    now = [0.0]
    limit = RateLimitedLog(burst=3, interval=10, clock=lambda: now[0])
    logger = logging.getLogger("tests.rate")

    def record(n: int) -> logging.LogRecord:
        return logger.makeRecord("tests.rate", logging.WARNING, "server.py", 7, "closed %d", (n,), None)

    passed = [r.getMessage() for r in map(record, range(100)) if limit.filter(r)]
    assert passed == ["closed 0", "closed 1", "closed 2"]
    now[0] = 10.0
    later = record(100)
    assert limit.filter(later) and later.getMessage() == "closed 100 (97 similar messages left out)"
    other_site = logger.makeRecord("tests.rate", logging.WARNING, "server.py", 8, "other", (), None)
    assert limit.filter(other_site)
