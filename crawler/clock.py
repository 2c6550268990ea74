"""The clock politeness runs on: back-offs, cooldowns, outages and retry times. No I/O.

Times are epoch seconds (they are kept in the store). A clock may run faster than the wall
(`speed`): tests then see a 5-minute outage or a 30-second cooldown pass in milliseconds while
the crawler talks to a real server, and its waits shrink to match.
"""

from __future__ import annotations

import time


class Clock:
    """Epoch seconds, `speed` times as fast as the wall clock from the moment it is made."""

    __slots__ = ("_mono", "_wall", "speed")

    def __init__(self, speed: float = 1.0) -> None:
        if not speed > 0:
            raise ValueError(f"a clock's speed must be positive, got {speed!r}")
        self.speed = speed
        self._wall = time.time()
        self._mono = time.monotonic()

    def now(self) -> float:
        """The time, in epoch seconds."""
        if self.speed == 1.0:
            return time.time()
        return self._wall + (time.monotonic() - self._mono) * self.speed

    def real(self, seconds: float) -> float:
        """How many seconds of the wall clock `seconds` of this clock take."""
        return seconds / self.speed
