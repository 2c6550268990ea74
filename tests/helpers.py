"""Helpers shared by test modules."""

from __future__ import annotations

from crawler.clock import Clock


class ManualClock(Clock):
    """A clock that stands still until a test moves it (`clock.t = ...`); waits are real."""

    def __init__(self, t: float) -> None:
        super().__init__()
        self.t = t

    def now(self) -> float:
        return self.t
