"""Log lines for floods anyone can trigger: at most one per interval."""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)


class RateLimitedWarning:
    """A warning logged at most once per interval; the line counts what it left out."""

    def __init__(self, interval_seconds: float, logger: logging.Logger = log) -> None:
        self._interval = interval_seconds
        self._logger = logger
        self._next = 0.0
        self._suppressed = 0

    def warn(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now < self._next:
            self._suppressed += 1
            return
        suppressed, self._suppressed = self._suppressed, 0
        self._next = now + self._interval
        self._logger.warning(message + " (%d more since the last line)", *args, suppressed)
