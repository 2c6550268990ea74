"""Content fingerprints (crawler/fingerprints.py): MinHash signatures of word shingles, the
index of near-duplicates, exact body hashes, and Response.fingerprint() on the template pages."""

from __future__ import annotations

import random

import pytest

from crawler.fingerprints import NearDuplicates, body_hash, signature, similarity
from tests.test_extract import PAGES, Request, Response, httpx, page


def words(n: int, seed: int) -> list[str]:
    rnd = random.Random(seed)
    vocabulary = [f"w{i}" for i in range(2000)]
    return [rnd.choice(vocabulary) for _ in range(n)]


def sig(text: list[str] | str) -> bytes:
    made = signature(text if isinstance(text, str) else " ".join(text))
    assert made is not None
    return made


def test_signatures_estimate_how_much_two_texts_share() -> None:
    text = words(400, 1)
    edited = list(text)
    edited[200] = "changed"  # one word of 400: 3 of ~400 shingles differ (Jaccard 0.985)
    assert similarity(sig(text), sig(edited)) >= 0.9
    assert similarity(sig(text), sig(words(400, 2))) < 0.1
    assert similarity(sig(text), sig(text)) == 1.0
    assert len(sig(text)) == 256  # 64 slots of 32 bits, the same bytes on every machine
    assert sig("Hello, WORLD  again") == sig("hello world again")  # words, case-folded
    assert signature("") is None
    assert signature("   ...   ") is None
    # a short text (fewer shingles than slots): its empty slots borrow, and still part texts
    short = words(12, 3)
    assert similarity(sig(short), sig(words(12, 4))) < 0.3
    assert similarity(sig(short), sig([*short, "more"])) >= 0.7


def test_the_index_finds_what_is_similar_enough_only() -> None:
    index = NearDuplicates(threshold=0.9)
    base = words(300, 3)
    index.add(sig(base), "https://a/")
    index.add(sig(words(300, 5)), "https://b/")
    edited = list(base)
    edited[10] = "x"
    assert index.find(sig(edited)) == "https://a/"
    assert index.find(sig(edited), besides="https://a/") is None  # a page is not its own
    half = base[:150] + words(150, 6)
    assert index.find(sig(half)) is None
    assert index.find(sig(words(300, 4))) is None
    assert len(index) == 2
    with pytest.raises(ValueError, match="threshold"):
        NearDuplicates(threshold=0.3)


def test_many_pages_of_one_template_keep_looks_short() -> None:
    # thousands of stubs that differ in one word share most bands: lists under a band are
    # capped, and each page is still found by a band of its own
    index = NearDuplicates(threshold=0.9)
    for i in range(2000):
        index.add(sig(f"Redirecting to the page number {i} of the archive"), f"https://s/{i}")
    assert index.find(sig("Redirecting to the page number 7 of the archive")) == "https://s/7"
    assert all(
        len(filed) <= 32
        for table in index._tables
        for filed in table.values()
        if isinstance(filed, list)
    )


def test_body_hashes_tell_exact_duplicates() -> None:
    assert body_hash(b"<p>a</p>") == body_hash(b"<p>a</p>")
    assert body_hash(b"<p>a</p>") != body_hash(b"<p>b</p>")
    assert len(body_hash(b"")) == 16


def test_a_pages_fingerprint_reads_what_a_reader_sees() -> None:
    article = page("article")
    assert article.fingerprint() == article.fingerprint()
    # the same page with another script and style: the same fingerprint
    html = (PAGES / "article.html").read_text()
    scripted = html.replace(
        "</body>", "<script>var tracking = 'x';</script><style>p{}</style></body>"
    )
    other = Response(
        url=article.url,
        status=200,
        headers=httpx.Headers({"content-type": "text/html"}),
        body=scripted.encode(),
        request=Request(article.url),
    )
    assert other.fingerprint() == article.fingerprint()
    docs = page("docs").fingerprint()
    assert docs is not None
    assert similarity(article.fingerprint() or b"", docs) < 0.2
