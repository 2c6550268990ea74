"""Near-duplicate fingerprints, calibrated on real pages: the Rust documentation installed
with rustup (48,000 HTML pages: mdBook books, rustdoc API pages). For each kind of pair, the
similarity MinHash estimates (crawler/fingerprints.py) against the Hamming distance of a 64-bit
SimHash of the same shingles (the first design, kept here to compare):

- pages a reader would call the same: the one text with 1 word, 3 words or 5% of its words
  changed (a counter, a date, an edit);
- pages of one site that share their template but not their text (pairs of pages in each
  book, pairs of API pages): what must not be called a duplicate;
- std::X and core::X, the same item documented in two crates (their text differs in every
  path it names): in between.

Also the cost per page (visible text taken out and the signature made) and the index's memory.

    python benchmarks/duplicates.py [--docs PATH] [--pages N] [--index N]
"""

from __future__ import annotations

import argparse
import hashlib
import random
import re
import statistics
import time
import tracemalloc
from pathlib import Path

from selectolax.lexbor import LexborHTMLParser

from crawler import fingerprints, parser
from crawler.page.duplicates import Duplicates

_DOCS = Path.home() / ".rustup/toolchains/stable-x86_64-unknown-linux-gnu/share/doc/rust/html"
_WORD = re.compile(r"\w+")


def simhash(text: str) -> int:
    """A 64-bit SimHash of the text's 3-word shingles (unweighted), for comparison."""
    words = _WORD.findall(text.casefold())
    shingles = {" ".join(words[i : i + 3]) for i in range(max(1, len(words) - 2))}
    counts = [0] * 64
    for shingle in shingles:
        h = int.from_bytes(hashlib.blake2b(shingle.encode(), digest_size=8).digest())
        for bit in range(64):
            counts[bit] += 1 if h >> bit & 1 else -1
    return sum(1 << bit for bit in range(64) if counts[bit] > 0)


def text_of(path: Path) -> str:
    return parser.visible_text(LexborHTMLParser(path.read_bytes()))


def edited(text: str, n: int, rnd: random.Random) -> str:
    words = text.split()
    for i in rnd.sample(range(len(words)), n):
        words[i] = f"edit{rnd.random()}"
    return " ".join(words)


def row(name: str, sims: list[float], dists: list[int]) -> None:
    def q(values: list[float] | list[int], p: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))]

    at = {t: sum(s >= t for s in sims) / len(sims) for t in (0.8, 0.9)}
    near = {d: sum(x <= d for x in dists) / len(dists) for d in (3, 6)}
    print(
        f"{name:34s} {len(sims):5d}  {q(sims, 0.05):.2f} {q(sims, 0.5):.2f} {q(sims, 0.95):.2f}"
        f"  {at[0.8]:6.1%} {at[0.9]:6.1%}   {q(dists, 0.05):3.0f} {q(dists, 0.5):3.0f}"
        f" {q(dists, 0.95):3.0f}  {near[3]:6.1%} {near[6]:6.1%}"
    )


def pairs(texts: list[str], limit: int) -> tuple[list[float], list[int]]:
    sigs = [fingerprints.signature(t) for t in texts]
    hashes = [simhash(t) for t in texts]
    sims, dists = [], []
    for i in range(len(texts)):
        for j in range(i + 1, len(texts)):
            a, b = sigs[i], sigs[j]
            if a is None or b is None or texts[i] == texts[j]:
                continue  # the same text twice (a book's redirect stubs) is no near pair
            sims.append(fingerprints.similarity(a, b))
            dists.append((hashes[i] ^ hashes[j]).bit_count())
            if len(sims) >= limit:
                return sims, dists
    return sims, dists


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=Path, default=_DOCS)
    ap.add_argument("--pages", type=int, default=120, help="pages per group")
    ap.add_argument("--index", type=int, default=10000, help="pages filed in the index")
    args = ap.parse_args()
    rnd = random.Random(1)
    docs: Path = args.docs
    print(
        f"{'pairs':34s} {'n':>5s}  MinHash similarity      share >=0.8 >=0.9"
        "   SimHash bits  share <=3  <=6\n"
        f"{'':34s} {'':5s}  p5   p50  p95"
    )
    book = sorted((docs / "book").rglob("*.html"))
    rnd.shuffle(book)
    texts = [t for t in map(text_of, book[: args.pages]) if len(t.split()) >= 60]
    for label, n in (("1 word changed", 1), ("3 words changed", 3), ("5% changed", 0)):
        sims, dists = [], []
        for text in texts:
            other = edited(text, n or len(text.split()) // 20, rnd)
            a, b = fingerprints.signature(text), fingerprints.signature(other)
            assert a is not None
            assert b is not None
            sims.append(fingerprints.similarity(a, b))
            dists.append((simhash(text) ^ simhash(other)).bit_count())
        row(f"book page, {label}", sims, dists)
    core = sorted((docs / "core").rglob("*.html"))
    rnd.shuffle(core)
    twins = [(p, docs / "std" / p.relative_to(docs / "core")) for p in core[:3000]]
    twins = [(a, b) for a, b in twins if b.exists()][: args.pages]
    sims, dists = [], []
    for a, b in twins:
        ta, tb = text_of(a), text_of(b)
        sa, sb = fingerprints.signature(ta), fingerprints.signature(tb)
        if sa is not None and sb is not None:
            sims.append(fingerprints.similarity(sa, sb))
            dists.append((simhash(ta) ^ simhash(tb)).bit_count())
    row("std::X and core::X", sims, dists)
    for section in ("book", "reference", "cargo", "rust-by-example", "core"):
        pages = sorted((docs / section).rglob("*.html"))
        rnd.shuffle(pages)
        texts = [text_of(p) for p in pages[: args.pages]]
        words = statistics.median(len(t.split()) for t in texts)
        row(f"two pages of {section} ({words:.0f} words)", *pairs(texts, 5000))

    pages = sorted(docs.rglob("*.html"))
    rnd.shuffle(pages)
    bodies = [p.read_bytes() for p in pages[: args.index]]
    started = time.perf_counter()
    sigs = [fingerprints.signature(parser.visible_text(LexborHTMLParser(b))) for b in bodies]
    parsed = time.perf_counter()
    for body in bodies[:2000]:
        parser.visible_text(LexborHTMLParser(body))
    text_only = (time.perf_counter() - parsed) / min(2000, len(bodies))
    print(
        f"\ncost per page ({len(bodies)} pages, median {statistics.median(map(len, bodies)):.0f}"
        f" bytes): parse + visible text + signature {(parsed - started) / len(bodies) * 1e3:.2f}"
        f" ms, of which parse + visible text {text_only * 1e3:.2f} ms"
    )
    kept = [
        (sig, f"https://doc.example/{p.relative_to(docs)}")
        for sig, p in zip(sigs, pages, strict=False)
    ]
    hashes = [fingerprints.body_hash(body) for body in bodies]
    del sigs, bodies
    tracemalloc.start()
    index = fingerprints.NearDuplicates(0.9)
    found = 0
    looked = time.perf_counter()
    for sig, url in kept:  # as a crawl does: look, then file the pages that are no duplicate
        if sig is None:
            continue
        if index.find(sig) is None:
            index.add(sig, url)
        else:
            found += 1
    looked = time.perf_counter() - looked
    size, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"index at 0.9: {len(index)} pages filed, {found} near-duplicates found; {size / len(index):.0f}"
        f" bytes per page filed (the index's own: signature and tables; URLs not counted);"
        f" look + file {looked / len(kept) * 1e6:.0f} us per page"
    )
    tracemalloc.start()
    crawl = Duplicates(0.9, nofollow=False)  # what a crawl holds: body hashes, URLs, the index
    for (sig, url), digest in zip(kept, hashes, strict=True):
        crawl.load(url + "?" + "q" * 20, digest, sig)  # URLs of ~80 characters
    size, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"a crawl's whole index (URLs of ~80 characters): {size / len(crawl):.0f} bytes per page")


if __name__ == "__main__":
    main()
