"""Which pages repeat one already crawled (settings.duplicates): each parsed page's body hash
and the MinHash signature of its visible text, judged against the pages kept before (this run's
and, loaded from the store as the run starts, every earlier run's; on a shared store, those
other processes commit, read every few seconds). In memory; the store keeps each page's
fingerprint with its outcome, which is what makes the index survive a resume.

Only pages that duplicate none are filed: a duplicate is marked with the page it repeats,
whose fingerprint already stands for both.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from .. import parser
from ..fingerprints import NearDuplicates, body_hash
from ..models import Response
from ..records import Fingerprint
from ..stats import DUPLICATES
from ..stats import bump as add_counter

#: Reads kept fingerprints after a bookmark: (up to `limit` (URL, body hash, signature), the
#: bookmark after them) (Store.fingerprints_since).
Feed = Callable[
    [str | None, int], Awaitable[tuple[list[tuple[str, bytes, bytes | None]], str | None]]
]


class Duplicates:
    """The index of pages crawled, by body hash and by signature (`similarity`: how alike two
    visible texts must be, see fingerprints.NearDuplicates). `nofollow`: the requests a
    duplicate's callback yields are not queued."""

    def __init__(
        self,
        similarity: float,
        *,
        nofollow: bool,
        feed: Feed | None = None,
        every: float = 2.0,
    ) -> None:
        self.nofollow = nofollow
        self._bodies: dict[bytes, str] = {}
        self._near = NearDuplicates(similarity)
        #: The store's fingerprints (Store.fingerprints_since), where this index reads other
        #: processes' pages at most `every` seconds apart (None: no other process writes).
        self._feed = feed
        self._every = every
        self._cursor: str | None = None
        self._read_at = time.monotonic()
        self._reading = asyncio.Lock()

    def __len__(self) -> int:
        return len(self._bodies)

    def load(self, url: str, body: bytes, sig: bytes | None) -> None:
        """File a page kept in the store (one that duplicates none), unless it is filed."""
        if self._bodies.get(body) == url:
            return  # this process's own page, read back from the store
        self._bodies.setdefault(body, url)
        if sig is not None:
            self._near.add(sig, url)

    async def read(self, feed: Feed) -> None:
        """File every fingerprint `feed` gives after the last read (all, the first time)."""
        while True:
            kept, self._cursor = await feed(self._cursor, 5000)
            if not kept:
                break
            for url, body, sig in kept:
                self.load(url, body, sig)
        self._read_at = time.monotonic()

    async def catch_up(self) -> None:
        """Read the pages other processes committed, if the last read is `every` seconds old
        (one task reads; the others go on)."""
        if self._feed is None or time.monotonic() - self._read_at < self._every:
            return
        if self._reading.locked():
            return
        async with self._reading:
            await self.read(self._feed)

    def judge(self, response: Response) -> Fingerprint:
        """`response`'s fingerprint: the page it duplicates (not itself: a revisit is judged
        against the others), counted; a page duplicating none is filed. Only HTML gets a
        signature (JSON, feeds... are judged by their body only)."""
        url = response.url
        digest = body_hash(response.body)
        same = self._bodies.get(digest)
        if same is not None and same != url:
            add_counter(DUPLICATES + "exact")
            return Fingerprint(url, digest, None, same, exact=True)
        sig = None
        if parser.is_html(response.headers.get("content-type")):
            sig = response.fingerprint()
        near = None if sig is None else self._near.find(sig, besides=url)
        if near is not None:
            add_counter(DUPLICATES + "near")
            return Fingerprint(url, digest, sig, near)
        self.load(url, digest, sig)
        return Fingerprint(url, digest, sig)
