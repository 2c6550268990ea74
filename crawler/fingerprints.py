"""Content fingerprints, for near-duplicate pages: a MinHash signature of a text's word
shingles, the index answering "is this near a page already seen?", and body hashes for exact
duplicates. Pure: no I/O (the crawl's side is page/duplicates.py).

A signature estimates the Jaccard similarity of two texts' sets of 3-word shingles: the share
of its 64 slots two signatures agree on. One hash per shingle (one-permutation MinHash): the
hash's top 6 bits pick a slot, which keeps the smallest of its low 32 bits; an empty slot
(a text of few shingles) borrows from the next filled one, shifted by how far it looked, so
that two texts agree on it only when they agree on the slot it borrowed.

Why MinHash, not SimHash: measured on the Rust documentation's pages (benchmarks/duplicates.py),
a 64-bit SimHash of unweighted shingles moved 0-11 bits (median 4) for one word changed in a
100-word page, while pages of one site that share nothing but their template came within 6 bits
of each other: no distance told the two apart. MinHash's estimate has a spread of
sqrt(J(1-J)/64) (0.04 at J = 0.9), so a threshold of 0.9 parts them.
"""

from __future__ import annotations

import hashlib
import operator
import re
import sys
from array import array
from collections.abc import Iterable

_WORD = re.compile(r"\w+")
#: Shingle length in words.
SHINGLE = 3
#: Slots in a signature (each 32 bits: a signature is 256 bytes).
SLOTS = 64
_EMPTY = 1 << 32
_LOW = (1 << 32) - 1
_STEP = 0x9E3779B1  # how a borrowed value is shifted per slot looked past (odd: a bijection)
#: Signatures filed under one band's value at most: a band that many pages share says little
#: (short pages of one template, e.g. "Redirecting to ..."), and a longer list would make every
#: look compare them all. The pages are still found by their other bands.
BUCKET = 32


def signature(text: str) -> bytes | None:
    """The MinHash signature of `text`'s words (case-folded) in shingles of three (one
    shingle when it has fewer words); None for a text without words."""
    words = _WORD.findall(text.casefold())
    if not words:
        return None
    # the distinct shingles first (tuples, hashed by the set in C), then each hashed stably
    shingles = (
        set(zip(words, words[1:], words[2:], strict=False))
        if len(words) > SHINGLE
        else {tuple(words)}
    )
    mins = [_EMPTY] * SLOTS
    blake2b = hashlib.blake2b
    for shingle in shingles:
        h = int.from_bytes(blake2b(" ".join(shingle).encode(), digest_size=8).digest())
        slot = h >> 58
        low = h & _LOW
        if low < mins[slot]:
            mins[slot] = low
    if _EMPTY in mins:
        filled = [i for i, v in enumerate(mins) if v != _EMPTY]
        dense = list(mins)
        for i in range(SLOTS):
            if mins[i] == _EMPTY:
                # the next filled slot, circularly
                j = next((f for f in filled if f > i), filled[0])
                dense[i] = (mins[j] + ((j - i) % SLOTS) * _STEP) & _LOW
        mins = dense
    packed = array("I", mins)
    if sys.byteorder != "little":
        packed.byteswap()  # the same bytes on every machine: signatures are stored
    return packed.tobytes()


def similarity(a: bytes, b: bytes) -> float:
    """The estimated Jaccard similarity of the texts of two signatures (0.0 to 1.0)."""
    same: int = sum(map(operator.eq, memoryview(a).cast("I"), memoryview(b).cast("I")))
    return same / SLOTS


def _rows_for(threshold: float) -> int:
    """Slots per band: the most (the fewest pairs compared) that still find a pair at the
    threshold with a chance of 98% or more (any band of `rows` slots agreeing whole)."""
    for rows in (8, 4, 2, 1):
        if 1 - (1 - threshold**rows) ** (SLOTS // rows) >= 0.98:
            return rows
    return 1


class NearDuplicates:
    """Signatures seen, each with a key (a URL), answering which one a new signature is at
    least `threshold` similar to. Signatures are filed under bands of their slots (locality
    sensitive hashing): a look compares only those agreeing with it on a band whole."""

    def __init__(self, threshold: float = 0.9) -> None:
        if not 0.5 <= threshold <= 1.0:
            raise ValueError("threshold must be 0.5 to 1.0")
        self.threshold = threshold
        bands = SLOTS // _rows_for(threshold)
        #: Band b holds the slots b, b + bands, b + 2 * bands...: spread over the signature,
        #: not a run of neighbours (a short text's empty slots borrow from one filled slot).
        #: A band's value -> the signature filed under it (its number), or a list of them.
        self._tables: list[dict[int, int | list[int]]] = [{} for _ in range(bands)]
        self._signatures: list[bytes] = []
        self._keys: list[str] = []

    def __len__(self) -> int:
        return len(self._keys)

    def find(self, sig: bytes, besides: str | None = None) -> str | None:
        """The key of the most similar signature seen at the threshold or above (but the
        key `besides`: a page is no duplicate of itself), or None."""
        best, best_key = self.threshold, None
        tried: set[int] = set()
        for band, table in zip(self._bands(sig), self._tables, strict=True):
            filed = table.get(band)
            if filed is None:
                continue
            for n in (filed,) if isinstance(filed, int) else filed:
                if n in tried:
                    continue
                tried.add(n)
                score = similarity(sig, self._signatures[n])
                if score >= best and self._keys[n] != besides:
                    if score == 1.0:
                        return self._keys[n]
                    best, best_key = score, self._keys[n]
        return best_key

    def add(self, sig: bytes, key: str) -> None:
        """File `sig` under `key`."""
        n = len(self._keys)
        self._signatures.append(sig)
        self._keys.append(key)
        for band, table in zip(self._bands(sig), self._tables, strict=True):
            filed = table.get(band)
            if filed is None:
                table[band] = n  # most bands are one page's: no list for them
            elif isinstance(filed, int):
                table[band] = [filed, n]
            elif len(filed) < BUCKET:
                filed.append(n)

    def _bands(self, sig: bytes) -> Iterable[int]:
        slots = memoryview(sig).cast("I")
        bands = len(self._tables)
        return (hash(slots[b::bands].tobytes()) for b in range(bands))


def body_hash(body: bytes) -> bytes:
    """A body's hash, for exact duplicates (BLAKE2b, 128 bits)."""
    return hashlib.blake2b(body, digest_size=16).digest()
