"""SQL that both SQL backends run, written once: each supplies its dialect pieces (how a query
names its parameters, how a number is cut to an integer) and a function that runs a query.

What is here reads the requests table, whose columns both schemas share.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..records import (
    LATENCY_BOUNDS,
    Counts,
    HostState,
    Summary,
    WorkerInfo,
    host_summaries,
)
from .shared import bucket_seconds

#: Runs a query with its parameters; the rows.
Fetch = Callable[[str, Sequence[Any]], Awaitable[Sequence[Any]]]


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between the backends' SQL."""

    #: The n-th (from 1) parameter of a query.
    placeholder: Callable[[int], str]
    #: The integer part of a non-negative number.
    integer: Callable[[str], str]


SQLITE = Dialect(placeholder=lambda n: "?", integer=lambda x: f"CAST({x} AS INTEGER)")
POSTGRES = Dialect(placeholder=lambda n: f"${n}", integer=lambda x: f"floor({x})::int")

_FINISHED = "state >= 2"


async def summary(
    fetch: Fetch,
    dialect: Dialect,
    *,
    counts: Counts,
    totals: dict[str, Counts],
    politeness: Sequence[HostState],
    counters: dict[str, int],
    workers: list[WorkerInfo],
) -> Summary:
    """The crawl's summary from its rows (reads every row: seconds for millions), with what
    the store keeps beside them: its `counts`, per-host `totals`, `politeness` states,
    `counters` and `workers`."""
    measured = {
        host: (int(size), mean, top)
        for host, size, mean, top in await fetch(
            "SELECT host, COALESCE(SUM(size), 0), AVG(latency), MAX(latency) FROM requests"
            f" WHERE {_FINISHED} GROUP BY host",
            (),
        )
    }
    hosts = host_summaries(totals, measured, {state.host: state for state in politeness})
    cases = " ".join(f"WHEN latency < {b} THEN {i}" for i, b in enumerate(LATENCY_BOUNDS))
    histogram = await _grouped(
        fetch,
        f"SELECT CASE {cases} ELSE {len(LATENCY_BOUNDS)} END, COUNT(*) FROM requests"
        " WHERE latency IS NOT NULL GROUP BY 1",
    )
    ((first, last),) = await fetch(
        f"SELECT MIN(updated), MAX(updated) FROM requests WHERE {_FINISHED}", ()
    )
    bucket = bucket_seconds((last or 0) - (first or 0))
    p1, p2 = dialect.placeholder(1), dialect.placeholder(2)
    timeline = [
        (first + n * bucket, int(done), int(failed))
        for n, done, failed in await fetch(
            f"SELECT {dialect.integer(f'(updated - {p1}) / {p2}')},"
            " SUM(CASE WHEN state = 2 THEN 1 ELSE 0 END),"
            " SUM(CASE WHEN state = 3 THEN 1 ELSE 0 END) FROM requests"
            # rows failed as they were found (a trap, an invalid URL) were never updated
            f" WHERE {_FINISHED} AND updated IS NOT NULL GROUP BY 1 ORDER BY 1",
            (first or 0.0, bucket),
        )
    ]
    return Summary(
        counts=counts,
        hosts=hosts,
        statuses=await _grouped(
            fetch,
            "SELECT status, COUNT(*) FROM requests WHERE status IS NOT NULL"
            f" AND {_FINISHED} GROUP BY status ORDER BY status",
        ),
        errors=await _grouped(
            fetch,
            "SELECT error, COUNT(*) FROM requests WHERE state = 3"
            " GROUP BY error ORDER BY 2 DESC, 1",
        ),
        depths=await _grouped(
            fetch,
            f"SELECT depth, COUNT(*) FROM requests WHERE {_FINISHED} GROUP BY depth ORDER BY depth",
        ),
        latencies=[histogram.get(i, 0) for i in range(len(LATENCY_BOUNDS) + 1)],
        timeline=timeline,
        bucket=bucket,
        first=first,
        last=last,
        bytes=sum(h.bytes for h in hosts),
        workers=workers,
        counters=counters,
    )


async def _grouped(fetch: Fetch, sql: str) -> dict[Any, int]:
    return {key: int(n) for key, n in await fetch(sql, ())}
