"""Which pages repeat one already crawled (settings.duplicates): each parsed page's body hash
and the MinHash signature of its visible text, judged against the pages kept before (this run's
and, loaded from the store as the run starts, every earlier run's). In memory; the store keeps
each page's fingerprint with its outcome, which is what makes the index survive a resume.

Only pages that duplicate none are filed: a duplicate is marked with the page it repeats,
whose fingerprint already stands for both.
"""

from __future__ import annotations

from .. import parser
from ..fingerprints import NearDuplicates, body_hash
from ..models import Response
from ..records import Fingerprint
from ..stats import DUPLICATES
from ..stats import bump as add_counter


class Duplicates:
    """The index of pages crawled, by body hash and by signature (`similarity`: how alike two
    visible texts must be, see fingerprints.NearDuplicates). `nofollow`: the requests a
    duplicate's callback yields are not queued."""

    def __init__(self, similarity: float, *, nofollow: bool) -> None:
        self.nofollow = nofollow
        self._bodies: dict[bytes, str] = {}
        self._near = NearDuplicates(similarity)

    def __len__(self) -> int:
        return len(self._bodies)

    def load(self, url: str, body: bytes, sig: bytes | None) -> None:
        """File a page kept in the store (one that duplicates none)."""
        self._bodies.setdefault(body, url)
        if sig is not None:
            self._near.add(sig, url)

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
