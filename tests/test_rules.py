"""The page's rules, as pure functions: retries (when, and until when a host waits) and links
(how deep, too deep)."""

from __future__ import annotations

from crawler.errors import FetchTimeout, HTTPStatusError, InvalidURL
from crawler.page.rules import LinkRules, RetryRules, Verdict
from crawler.records import State
from crawler.urls import Scope, TrapGuard

RULES = RetryRules(
    max_retries=2,
    statuses=frozenset({500, 503, 429}),
    backoff=1.0,
    backoff_max=3.0,
    max_retry_after=60.0,
)


def test_a_transient_failure_is_retried_after_a_jittered_exponential_back_off() -> None:
    timeout = FetchTimeout("http://a.com/", "timed out")
    assert RULES.verdict(timeout, 1, 100.0, 0.5) == Verdict(State.QUEUED, "timed out", 100.5)
    assert RULES.verdict(timeout, 2, 100.0, 0.5).not_before == 101.0  # 2 s, half of it
    assert RULES.verdict(timeout, 2, 100.0, 0.0).not_before == 100.0  # full jitter
    # the third failure (max_retries=2 retries) fails
    assert RULES.verdict(timeout, 3, 100.0, 0.5) == Verdict(State.FAILED, "timed out")


def test_statuses_decide_for_http_errors_and_others_are_final() -> None:
    assert RULES.verdict(HTTPStatusError("u", 500), 1, 0.0, 0.5).state is State.QUEUED
    assert RULES.verdict(HTTPStatusError("u", 502), 1, 0.0, 0.5).state is State.FAILED
    assert RULES.verdict(InvalidURL("u", "bad"), 1, 0.0, 0.5).state is State.FAILED


def test_retry_after_holds_the_host_and_a_long_one_fails_the_page() -> None:
    slow_down = HTTPStatusError("u", 429, retry_after=30.0)
    assert RULES.verdict(slow_down, 1, 100.0, 0.5) == Verdict(
        State.QUEUED, "HTTP 429", 130.0, 130.0
    )
    # no retries left: failed, but the host still waits
    assert RULES.verdict(slow_down, 3, 100.0, 0.5) == Verdict(
        State.FAILED, "HTTP 429", wait_until=130.0
    )
    too_long = HTTPStatusError("u", 503, retry_after=3600.0)
    verdict = RULES.verdict(too_long, 1, 100.0, 0.5)
    assert verdict.state is State.FAILED
    assert verdict.wait_until is None
    assert "exceeds max_retry_after" in verdict.message


def test_link_depth_and_its_limit() -> None:
    rules = LinkRules(Scope(), max_depth=2, traps=TrapGuard())
    assert rules.depth(1, "parse") == 2
    assert rules.depth(1, "parse_sitemap") == 1  # a sitemap's entries are seeds
    assert not rules.too_deep(2)
    assert rules.too_deep(3)
    assert not LinkRules(Scope(), max_depth=0, traps=TrapGuard()).too_deep(1000)
