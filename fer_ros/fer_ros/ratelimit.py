"""Rate-limited logging: say a repeated problem once per period, with how many repeats were held back."""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

LOGGER_NAME = "fer_ros"


class RateLimiter:
    """Lets a message with a given key through at most once every `period_s` seconds (monotonic clock).

    `period_s=None` means once per key for the limiter's lifetime (until `reset(key)`)."""

    def __init__(self, period_s: float | None = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.period_s = period_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> tuple[bool, int]:
        """(whether to emit now, how many were suppressed since the last emitted one)."""
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is None or (self.period_s is not None and now - last >= self.period_s):
                self._last[key] = now
                return True, self._suppressed.pop(key, 0)
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False, 0

    def reset(self, key: str | None = None) -> None:
        """Forget one key (or all), so its next message goes through."""
        with self._lock:
            if key is None:
                self._last.clear()
                self._suppressed.clear()
            else:
                self._last.pop(key, None)
                self._suppressed.pop(key, None)

    def say(self, key: str, message: str, emit: Callable[[str], None]) -> bool:
        """Pass `message` to `emit` (any logging function) if the key is due, with how many messages of the key
        were held back since; returns whether it was passed."""
        ok, held = self.allow(key)
        if ok:
            if held:
                message = f"{message} ({held} similar message{'s' if held != 1 else ''} suppressed)"
            emit(message)
        return ok

    def log(self, logger: logging.Logger, level: int, key: str, message: str) -> bool:
        """Log `message` at `level` if the key is due; returns whether it was logged."""
        return self.say(key, message, lambda text: logger.log(level, text))

    def warning(self, key: str, message: str, logger: logging.Logger | None = None) -> bool:
        """Rate-limited warning on the "fer_ros" logger (or `logger`)."""
        return self.log(logger or logging.getLogger(LOGGER_NAME), logging.WARNING, key, message)
