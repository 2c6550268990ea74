"""Content fingerprints, for near-duplicate pages (issue 31): a 64-bit SimHash over a text's
word shingles, and an index answering "is this near a page already seen?" (Hamming distance
within `max_distance`). Pure: no I/O; the crawl's wiring (a fingerprint per page kept in the
store with its outcome, marking, counting and not following duplicates) builds on these.

SimHash (Charikar): every 3-word shingle of the text is hashed to 64 bits; a bit of the
fingerprint is set where more shingles have it set than not. Texts that share most of their
shingles differ in few bits. The per-bit counts are summed as wide integers (a shingle's hash
spread over 64 fields of 32 bits, one table lookup per byte), not bit by bit in Python.
"""

from __future__ import annotations

import hashlib
import re

_WORD = re.compile(r"\w+")
#: Shingle length in words.
SHINGLE = 3
_FIELD = 32  # bits per counter
#: _SPREAD[byte]: the byte's 8 bits, each in a field of its own (bit 0 in the lowest).
_SPREAD = [sum(((b >> i) & 1) << (_FIELD * i) for i in range(8)) for b in range(256)]
_MASK = (1 << _FIELD) - 1


def simhash(text: str) -> int:
    """The 64-bit SimHash of `text`'s words (case-folded) in shingles of three; 0 for a text
    without words."""
    words = _WORD.findall(text.casefold())
    if not words:
        return 0
    if len(words) < SHINGLE:
        shingles = [" ".join(words)]
    else:
        shingles = [" ".join(words[i : i + SHINGLE]) for i in range(len(words) - SHINGLE + 1)]
    sums = [0] * 8  # per byte of the hash: 8 counters of 32 bits
    spread = _SPREAD
    for shingle in shingles:
        digest = hashlib.blake2b(shingle.encode(), digest_size=8).digest()
        for k in range(8):
            sums[k] += spread[digest[k]]
    half = len(shingles) / 2
    fingerprint = 0
    for k in range(8):
        counts = sums[k]
        for i in range(8):
            if (counts >> (_FIELD * i)) & _MASK > half:
                fingerprint |= 1 << (8 * k + i)
    return fingerprint


def distance(a: int, b: int) -> int:
    """How many bits two fingerprints differ in."""
    return (a ^ b).bit_count()


class NearDuplicates:
    """Fingerprints seen, each with a key (a URL), answering which one a new fingerprint is
    within `max_distance` bits of. Fingerprints are filed under each of `max_distance + 1`
    bands of their bits: two within the distance agree on at least one band whole, so a look
    compares only the fingerprints sharing a band."""

    def __init__(self, max_distance: int = 3) -> None:
        if not 0 <= max_distance < 16:
            raise ValueError("max_distance must be 0 to 15")
        self.max_distance = max_distance
        bands = max_distance + 1
        self._width = 64 // bands
        self._bands = [(i * self._width, (1 << self._width) - 1) for i in range(bands)]
        self._tables: list[dict[int, list[tuple[int, str]]]] = [{} for _ in range(bands)]

    def find(self, fingerprint: int) -> str | None:
        """The key of a fingerprint seen within the distance (the first filed), or None."""
        for (shift, mask), table in zip(self._bands, self._tables, strict=True):
            for seen, key in table.get((fingerprint >> shift) & mask, ()):
                if (seen ^ fingerprint).bit_count() <= self.max_distance:
                    return key
        return None

    def add(self, fingerprint: int, key: str) -> None:
        """File `fingerprint` under `key`."""
        for (shift, mask), table in zip(self._bands, self._tables, strict=True):
            table.setdefault((fingerprint >> shift) & mask, []).append((fingerprint, key))


def body_hash(body: bytes) -> str:
    """A body's hash, for exact duplicates (BLAKE2b, 128 bits, hex)."""
    return hashlib.blake2b(body, digest_size=16).hexdigest()
