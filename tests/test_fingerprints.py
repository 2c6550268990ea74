"""Content fingerprints (crawler/fingerprints.py): SimHash over word shingles, the index of
near-duplicates, exact body hashes, and Response.fingerprint() on the template pages."""

from __future__ import annotations

import random

import pytest

from crawler.fingerprints import NearDuplicates, body_hash, distance, simhash
from tests.test_extract import PAGES, page


def words(n: int, seed: int) -> list[str]:
    rnd = random.Random(seed)
    vocabulary = [f"w{i}" for i in range(2000)]
    return [rnd.choice(vocabulary) for _ in range(n)]


def test_a_small_edit_moves_few_bits_and_another_text_many() -> None:
    text = words(400, 1)
    edited = list(text)
    edited[200] = "changed"  # one word of 400: 3 of ~400 shingles differ
    # (bits whose counts sit near half flip: measured 0-8 over seeds 1-7; unrelated texts
    # differ in about half of the 64)
    assert distance(simhash(" ".join(text)), simhash(" ".join(edited))) <= 10
    assert distance(simhash(" ".join(text)), simhash(" ".join(words(400, 2)))) > 20
    assert simhash("Hello, WORLD  again") == simhash("hello world again")  # words, case-folded
    assert simhash("") == simhash("   ...   ") == 0


def test_the_index_finds_what_is_within_the_distance_only() -> None:
    index = NearDuplicates(max_distance=3)
    base = simhash(" ".join(words(300, 3)))
    index.add(base, "https://a/")
    for bits in ([0], [5, 40], [1, 17, 63]):  # spread across the bands
        near = base
        for bit in bits:
            near ^= 1 << bit
        assert index.find(near) == "https://a/"
    far = base ^ 0b1111  # four bits, all in one band
    assert index.find(far) is None
    assert index.find(simhash(" ".join(words(300, 4)))) is None
    with pytest.raises(ValueError, match="max_distance"):
        NearDuplicates(max_distance=16)


def test_body_hashes_tell_exact_duplicates() -> None:
    assert body_hash(b"<p>a</p>") == body_hash(b"<p>a</p>")
    assert body_hash(b"<p>a</p>") != body_hash(b"<p>b</p>")


def test_a_pages_fingerprint_reads_what_a_reader_sees() -> None:
    article = page("article")
    assert article.fingerprint() == article.fingerprint()
    # the same page with another script and style: the same fingerprint
    html = (PAGES / "article.html").read_text()
    scripted = html.replace(
        "</body>", "<script>var tracking = 'x';</script><style>p{}</style></body>"
    )
    from tests.test_extract import Request, Response, httpx

    other = Response(
        url=article.url,
        status=200,
        headers=httpx.Headers({"content-type": "text/html"}),
        body=scripted.encode(),
        request=Request(article.url),
    )
    assert other.fingerprint() == article.fingerprint()
    assert distance(article.fingerprint(), page("docs").fingerprint()) > 12
