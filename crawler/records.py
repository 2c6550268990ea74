"""The records the rooms pass around: requests to add and leased, page outcomes, host states,
counts and summaries, and the kinds of errors a page is recorded with. Plain data, no I/O:
pure modules import these without importing a database driver."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class ErrorKind(enum.StrEnum):
    """Why a page failed, as recorded in the store and shown by `failures` and `stats`."""

    FETCH = "fetch"
    INVALID_URL = "invalid_url"
    TIMEOUT = "timeout"
    CONNECT = "connect"
    PROXY = "proxy"
    TOO_LARGE = "too_large"
    TOO_MANY_REDIRECTS = "too_many_redirects"
    REDIRECT_OUT_OF_SCOPE = "redirect_out_of_scope"
    DECODING = "decoding"
    HTTP_STATUS = "http_status"
    ROBOTS_UNAVAILABLE = "robots_unavailable"
    ROBOTS_DISALLOWED = "robots_disallowed"
    BLOCKED_ADDRESS = "blocked_address"
    HOST_UNAVAILABLE = "host_unavailable"
    TRAP = "trap"
    SPIDER = "spider"
    #: A process_request hook dropped the request.
    IGNORED = "ignored"
    #: A process_response hook asked for a retry (say, a ban page) and none was left.
    RETRY = "retry"
    #: The browser could not render the page (crashed, hung, never ready).
    RENDER = "render"


def error_kinds(text: str) -> tuple[ErrorKind, ...]:
    """Error kinds from a comma-separated list (`--error timeout,http_status`); a ValueError
    naming every kind when one is unknown."""
    kinds = []
    for word in (w.strip() for w in text.split(",")):
        try:
            kinds.append(ErrorKind(word))
        except ValueError:
            known = ", ".join(kind.value for kind in ErrorKind)
            raise ValueError(f"no error kind {word!r}: the kinds are {known}") from None
    return tuple(kinds)


@dataclass(frozen=True, slots=True)
class FailedFilter:
    """Which failed URLs `run --retry-failed` queues again: of these error kinds and hosts
    (empty: any)."""

    errors: tuple[ErrorKind, ...] = ()
    hosts: tuple[str, ...] = ()

    def pairs(self) -> list[tuple[str | None, str | None]]:
        """(host, error) pairs to requeue, None meaning any."""
        return [(h, e) for h in self.hosts or (None,) for e in self.errors or (None,)]


#: The bookmark name under which a commit keeps the spider's state (`Spider.state`).
STATE_MARK = "spider-state"

#: Errors of pages no request went out for.
NEVER_SENT = frozenset(
    {
        ErrorKind.TRAP,
        ErrorKind.INVALID_URL,
        ErrorKind.BLOCKED_ADDRESS,
        ErrorKind.ROBOTS_DISALLOWED,
        ErrorKind.ROBOTS_UNAVAILABLE,
        ErrorKind.HOST_UNAVAILABLE,
        ErrorKind.IGNORED,
    }
)


class Revisit(enum.StrEnum):
    """What a revisit of a page found (see Outcome.revisit)."""

    UNCHANGED = "unchanged"
    CHANGED = "changed"
    GONE = "gone"


#: The message of a revisit a sitemap's lastmod answered (no request went out).
UNCHANGED_BY_SITEMAP = "unchanged since its sitemap lastmod"
#: The requests table's `revisit` column: queued as a revisit, or changed by the last one.
REVISIT_QUEUED, REVISIT_CHANGED = 1, 2


def revisit_mark(outcome: Outcome) -> int:
    """The `revisit` column a committed outcome leaves: still a revisit (a retry of one),
    changed by this revisit, or nothing."""
    if outcome.state is State.QUEUED and outcome.request.revisit:
        return REVISIT_QUEUED
    return REVISIT_CHANGED if outcome.revisit is Revisit.CHANGED else 0


class Ended(enum.StrEnum):
    """How a run ended (`CrawlStats.ended`, and the reason `Spider.closed` gets). String
    values: `stats.ended == "complete"` holds as well."""

    COMPLETE = "complete"
    ALREADY_COMPLETE = "already complete"
    MAX_PAGES = "max_pages"
    STOPPED = "stopped"
    ERROR = "error"


class ScopeStrategy(enum.StrEnum):
    """Where a crawl without `allowed_domains` may go from its start URLs (`Spider.scope`):
    those hosts exactly, their registrable domains with subdomains, or anywhere."""

    SAME_HOST = "same-host"
    SAME_DOMAIN = "same-domain"
    ANY = "any"


class State(enum.IntEnum):
    QUEUED = 0
    LEASED = 1
    DONE = 2
    FAILED = 3


@dataclass(slots=True)  # not frozen: 7x faster to build (2.1 -> 0.3 us), one per new link
class NewRequest:
    """A request to add: `url` canonical, `meta` JSON text or None. Its identity (what makes
    two requests the same) is `key`, or `url` itself when `key` is None (a plain GET). A
    request with an `error` (a trap guard's "trap", or "invalid_url") is recorded as failed
    with that error and `message`, never fetched. `method` None is GET; `spec` is the JSON
    text of the rest (headers, cookies, session, allow_status, proxy), None when empty."""

    url: str
    host: str
    callback: str = "parse"
    priority: int = 0
    depth: int = 0
    meta: str | None = None
    any_content_type: bool = False
    error: ErrorKind | None = None
    message: str | None = None
    key: str | None = None
    method: str | None = None
    body: bytes | None = None
    errback: str | None = None
    spec: str | None = None
    #: When a sitemap says the page last changed (epoch seconds): a revisit queued for a page
    #: fetched since then is marked unchanged instead of fetched. Not stored.
    lastmod: float | None = None

    def row(self) -> tuple[Any, ...]:
        """Its values in the order of `NEW_REQUEST_COLUMNS` (the state: queued, or failed
        when it has an error)."""
        return (
            self.url,
            self.host,
            self.callback,
            self.priority,
            self.depth,
            self.meta,
            self.any_content_type,
            int(State.QUEUED if self.error is None else State.FAILED),
            self.error,
            self.message,
            self.key,
            self.method,
            self.body,
            self.errback,
            self.spec,
        )


#: The requests columns a new request fills, in the order of `NewRequest.row()`.
NEW_REQUEST_COLUMNS = (
    "url, host, callback, priority, depth, meta, any_content_type, state, error, message,"
    " key, method, body, errback, spec"
)


def duplicate_dict(url: str, duplicate_of: str, exact: bool) -> dict[str, Any]:
    """A duplicate page as `duplicates` lists it: its URL, the page it repeats, and how
    ("exact": the same body; "near": nearly the same text)."""
    return {"url": url, "duplicate_of": duplicate_of, "kind": "exact" if exact else "near"}


def failure_dict(
    url: str,
    error: str | None,
    status: int | None,
    attempts: int,
    message: str | None,
    method: str | None,
) -> dict[str, Any]:
    """A failed row as `failures` lists it (`method` only when not GET)."""
    failure: dict[str, Any] = {
        "url": url,
        "error": error,
        "status": status,
        "attempts": attempts,
        "message": message,
    }
    if method is not None:
        failure["method"] = method
    return failure


@dataclass(frozen=True, slots=True)
class StoredRequest:
    """A leased row, handed to a worker (see NewRequest for `method`, `body`, `spec`)."""

    id: int
    url: str
    host: str
    callback: str
    priority: int
    depth: int
    meta: str | None
    any_content_type: bool
    attempts: int
    method: str | None = None
    body: bytes | None = None
    errback: str | None = None
    spec: str | None = None
    #: The page's validators from its last fetch (ETag, Last-Modified), for a revisit.
    etag: str | None = None
    last_modified: str | None = None
    #: Queued again by a revisit (run --revisit): fetched conditionally, items replaced.
    revisit: bool = False
    #: The fencing token of the host lease it was leased under (0: a store of one process).
    fence: int = 0


@dataclass(slots=True)
class Outcome:
    """What became of one leased request, committed as one unit.

    `state` is DONE, FAILED, or QUEUED for a retry at `not_before` (epoch seconds).
    `produced` are the items the callback yielded, as it yielded them; the writer runs them
    through the pipelines into `items`, JSON texts. `links` are new requests (ignored when
    already known);
    `final_url` is the URL a redirect ended at, marked as visited too (as the request of
    identity `final_key`; None: a plain GET). `latency` is None when
    no request went out for the page (robots.txt disallowed it, its address was blocked...):
    such a page is not `fetched`, and page budgets do not count it. `jars` are the cookie jars
    the page changed, by session name (their text), kept with the outcome.
    """

    request: StoredRequest
    state: State
    attempts: int
    status: int | None = None
    error: ErrorKind | None = None
    message: str | None = None
    not_before: float = 0.0
    items: list[str] = field(default_factory=list)
    links: list[NewRequest] = field(default_factory=list)
    final_url: tuple[str, str] | None = None
    final_key: str | None = None
    latency: float | None = None  # seconds the fetch took (all hops, body included)
    size: int | None = None  # bytes of the (decoded) body
    jars: dict[str, str] | None = None
    #: The store refused it: another worker holds the host now (its lease lapsed).
    lost: bool = False
    produced: list[Any] = field(default_factory=list)
    #: Counters bumped while the page was processed (see stats.py), kept with it.
    counters: dict[str, int] | None = None
    #: The response's validators (ETag, Last-Modified), kept for a later revisit.
    etag: str | None = None
    last_modified: str | None = None
    #: What a revisit found: "unchanged" (304: the page's items stay), "changed" (its items
    #: are replaced by these), "gone" (404/410: its items are removed); None: not a revisit.
    revisit: Revisit | None = None
    #: The page's content fingerprint (when the crawl looks for duplicates), kept with it.
    fingerprint: Fingerprint | None = None
    #: The files its items name, stored (settings.files_store), kept with it.
    files: list[FileRecord] | None = None
    #: Its HTTP exchanges, when the crawl archives them (settings.warc_file): written to the
    #: archive just before the outcome commits.
    exchanges: list[Exchange] | None = None

    @property
    def fetched(self) -> bool:
        """Whether a request went out for this page (a response, a timeout or a connection
        error), which is what `max_pages` and `max_pages_per_host` count."""
        return self.latency is not None


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """What a parsed page's content was, kept with its outcome when the crawl looks for
    duplicates (settings.duplicates): the hash of its body, the MinHash signature of its
    visible text (None: not HTML, or no words), and the URL of the page crawled before that it
    duplicates (`exact`: the same body; otherwise a near-duplicate), if it does. `url` is the
    page's own (a redirect's final URL)."""

    url: str
    body_hash: bytes
    signature: bytes | None = None
    duplicate_of: str | None = None
    exact: bool = False


@dataclass(frozen=True, slots=True)
class Exchange:
    """One HTTP exchange of a fetch (a redirect hop, or the final response), as a web archive
    keeps it (crawl/warc.py): the request as the crawler sent it, the response's status line and
    headers as they came, and its body decoded (empty when it was not read: a redirect, an
    error status). `date`: when the response came (epoch seconds)."""

    method: str
    url: str
    request_headers: list[tuple[str, str]]
    request_body: bytes | None
    status: int
    reason: str
    http_version: str
    headers: list[tuple[str, str]]
    body: bytes
    date: float


@dataclass(frozen=True, slots=True)
class FileRecord:
    """A file an item linked to (its `file_urls`), stored whole (settings.files_store): where
    (`path`, relative to the files store), its SHA-256 `checksum` (hex), `size` in bytes and
    `content_type`. Kept with the outcome of every page whose items name it: a file is
    recorded only once it is stored complete."""

    url: str
    path: str
    checksum: str
    size: int
    content_type: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """What an item's `files` field holds for it."""
        return {
            "url": self.url,
            "path": self.path,
            "checksum": self.checksum,
            "size": self.size,
            "content_type": self.content_type,
        }


@dataclass(frozen=True, slots=True)
class HostState:
    """A host's politeness state worth surviving a crash and passing to the next holder of
    the host: no request before `not_before` (a Retry-After), and its health: failed requests
    since its last success, circuit openings in a row, `open_until` (inf: given up on) and
    when its failures began (`silent_since`; None while it succeeds)."""

    host: str
    not_before: float = 0.0
    failures: int = 0
    opens: int = 0
    open_until: float = 0.0
    silent_since: float | None = None


@dataclass(frozen=True, slots=True)
class Counts:
    """Rows per state, items, and pages `fetched` (done or failed after a request went out:
    what page budgets count)."""

    queued: int = 0
    leased: int = 0
    done: int = 0
    failed: int = 0
    items: int = 0
    fetched: int = 0

    @property
    def pending(self) -> int:
        return self.queued + self.leased


@dataclass(frozen=True, slots=True)
class HostSummary:
    """One host's totals, fetch measurements and politeness state."""

    host: str
    queued: int
    leased: int
    done: int
    failed: int
    items: int
    bytes: int = 0
    mean_latency: float | None = None
    max_latency: float | None = None
    politeness: HostState | None = None  # None: nothing kept (never throttled or failing)


def host_summaries(
    totals: dict[str, Counts],
    measured: dict[str, tuple[int, float | None, float | None]],
    politeness: dict[str, HostState],
) -> list[HostSummary]:
    """Per-host summaries of the hosts with any rows, busiest first: their `totals`, what was
    `measured` of their fetches (bytes, mean and max latency) and their kept `politeness`."""
    hosts = []
    for host, c in totals.items():
        if c.pending or c.done or c.failed:
            size, mean, top = measured.get(host, (0, None, None))
            hosts.append(
                HostSummary(
                    host,
                    c.queued,
                    c.leased,
                    c.done,
                    c.failed,
                    c.items,
                    size,
                    mean,
                    top,
                    politeness.get(host),
                )
            )
    hosts.sort(key=lambda h: (-(h.done + h.failed), h.host))
    return hosts


#: Upper bounds (seconds) of the latency histogram's buckets; the last one is open-ended.
LATENCY_BOUNDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True, slots=True)
class Summary:
    """What a crawl did, for `stats` and `report`: totals, per host, and over time.

    `timeline` holds (bucket start, pages done, pages failed) per `bucket` seconds from
    `first` (epoch seconds of the first finished page); `latencies` counts fetches per
    LATENCY_BOUNDS bucket (one more for slower ones)."""

    counts: Counts
    hosts: list[HostSummary]
    statuses: dict[int, int]
    errors: dict[str, int]
    depths: dict[int, int]
    latencies: list[int]
    timeline: list[tuple[float, int, int]]
    bucket: float
    first: float | None
    last: float | None
    bytes: int
    #: The processes of the crawl (a shared store only: one process keeps no such record).
    workers: list[WorkerInfo] = field(default_factory=list)
    #: The spider's own counters and its items dropped by pipelines, by reason (stats.py).
    counters: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HostLease:
    """A host granted to this process by `Store.acquire_hosts`: only its holder fetches from it,
    which makes its politeness global. `fence` grows with every grant; a commit under an older
    fence is refused. `state` is the politeness state kept for the host (None: none), `fetched`
    its pages fetched by every worker, `start_in` seconds before its next request may start
    (the rate limit of the previous holder, carried over)."""

    host: str
    fence: int = 0
    state: HostState | None = None
    fetched: int = 0
    start_in: float = 0.0


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """One process of a crawl, as its heartbeat last left it (`seen`, epoch seconds)."""

    id: str
    machine: str
    pid: int
    started: float
    seen: float
    pages: int
    rate: float
    alive: bool
