"""The structured event log (`run --events FILE`): one JSON object per line, for other tools.

Every line has `event` and `time` (epoch seconds). Events: `start` (spider, store, queued),
`page` (a page done: url, host, status, latency, bytes, items, links, depth), `retry` and
`failed` (url, host, error, message, attempts, status), `end` (how the run ended, totals).
Page events are written once their outcome is committed, so the log never reports a page the
store does not have; a crash can lose the last few lines. The file is appended to, so one log
can span a crawl's runs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import IO, Any

from ..errors import ConfigError
from ..records import Outcome, State


class EventLog:
    def __init__(self, path: str | Path) -> None:
        try:
            self._file: IO[str] = open(path, "a", encoding="utf-8")  # noqa: SIM115 - see close
        except OSError as exc:
            raise ConfigError(f"cannot write the event log {path}: {exc.strerror}") from None

    def emit(self, event: str, **fields: Any) -> None:
        self._file.write(json.dumps({"event": event, "time": time.time(), **fields}) + "\n")

    def committed(self, outcomes: list[Outcome]) -> None:
        now = time.time()
        lines = []
        for o in outcomes:
            r = o.request
            if o.state is State.DONE:
                fields: dict[str, Any] = {
                    "event": "page",
                    "url": r.url,
                    "host": r.host,
                    "status": o.status,
                    "latency": o.latency,
                    "bytes": o.size,
                    "items": len(o.items),
                    "links": len(o.links),
                    "depth": r.depth,
                }
            else:
                fields = {
                    "event": "retry" if o.state is State.QUEUED else "failed",
                    "url": r.url,
                    "host": r.host,
                    "status": o.status,
                    "error": o.error,
                    "message": o.message,
                    "attempts": o.attempts,
                    "latency": o.latency,
                }
            fields["time"] = now
            lines.append(json.dumps(fields))
        if lines:
            self._file.write("\n".join(lines) + "\n")
            self._file.flush()

    def close(self) -> None:
        self._file.close()
