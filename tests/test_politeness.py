import math

import pytest

from crawler.politeness import Breaker, Circuit, Health, HostSlot, TokenBucket, Wait


def test_token_bucket_paces_starts_in_virtual_time() -> None:
    bucket = TokenBucket(rate=2.0, now=0.0)
    assert bucket.available_at(0.0) == 0.0
    bucket.take(0.0)
    assert bucket.available_at(0.0) == pytest.approx(0.5)
    assert bucket.available_at(0.3) == pytest.approx(0.5)
    bucket.take(0.5)
    assert bucket.available_at(0.5) == pytest.approx(1.0)
    # idle time refills at most `burst` tokens
    assert bucket.available_at(10.0) == 10.0
    bucket.take(10.0)
    assert bucket.available_at(10.0) == pytest.approx(10.5)


def test_zero_rate_means_no_limit() -> None:
    bucket = TokenBucket(rate=0.0)
    for _ in range(100):
        bucket.take(0.0)
    assert bucket.available_at(0.0) == 0.0


def test_host_slot_limits_concurrency_and_honours_back_off() -> None:
    slot = HostSlot(concurrency=2, rate=0.0)
    slot.acquire(0.0)
    slot.acquire(0.0)
    assert slot.full
    assert slot.ready_at(0.0) == math.inf
    slot.release()
    assert slot.ready_at(0.0) == 0.0
    slot.back_off(30.0)
    slot.back_off(5.0)  # never shortens
    assert slot.ready_at(1.0) == 30.0
    slot.release()
    with pytest.raises(RuntimeError):
        slot.release()


def test_a_slot_says_what_its_next_request_waits_for() -> None:
    slot = HostSlot(concurrency=2, rate=1.0, breaker=Breaker(threshold=1, cooldown=30.0))
    assert slot.waiting(0.0) is None
    slot.acquire(0.0)
    assert slot.waiting(0.0) == (1.0, Wait.RATE_LIMIT)
    slot.slow_down(5.0, 0.0)  # robots.txt's Crawl-delay, stricter than the rate limit
    assert slot.waiting(0.0) == (5.0, Wait.CRAWL_DELAY)
    slot.back_off(20.0)  # Retry-After
    assert slot.waiting(0.0) == (20.0, Wait.RETRY_AFTER)
    slot.release(Health.ERROR, now=1.0)  # the circuit opens for 30 s
    assert slot.waiting(1.0) == (30.0, Wait.CIRCUIT)
    assert slot.waiting(40.0) is None


def probe(slot: HostSlot, at: float, health: Health) -> float:
    """Send the probe of an open circuit at `at` (it must be ready then) and end it with
    `health`; returns when the next request may start."""
    assert slot.ready_at(at) == at
    slot.acquire(at)
    assert slot.breaker.state is Circuit.HALF_OPEN
    assert slot.full  # one probe at a time
    slot.release(health, now=at)
    return slot.ready_at(at)


def test_a_host_that_answers_with_errors_is_slowed_down_never_given_up() -> None:
    breaker = Breaker(threshold=3, cooldown=10, cooldown_max=40, max_outage=300)
    slot = HostSlot(concurrency=4, rate=0.0, breaker=breaker)
    for _ in range(3):
        slot.acquire(0.0)
    for _ in range(3):
        slot.release(Health.ERROR, now=1.0)  # three 5xx (or 429) in a row open the circuit
    assert slot.breaker.state is Circuit.OPEN
    assert slot.ready_at(1.0) == 11.0  # nothing before the cooldown ends
    at, gaps = 11.0, []
    for _ in range(2000):  # a day of errors: the cooldown doubles up to its cap, no further
        ready = probe(slot, at, Health.ERROR)
        gaps.append(ready - at)
        at = ready
    assert gaps[:4] == [20.0, 40.0, 40.0, 40.0]
    assert set(gaps[2:]) == {40.0}
    assert not slot.given_up


def test_an_unreachable_host_is_given_up_after_max_outage_of_failed_probes() -> None:
    breaker = Breaker(threshold=5, cooldown=30, cooldown_max=60, max_outage=300)
    slot = HostSlot(concurrency=4, rate=0.0, breaker=breaker)
    for _ in range(4):
        slot.acquire(0.0)
    for _ in range(4):
        slot.release(Health.UNANSWERED, now=0.0)  # connection refused, four times
    slot.acquire(0.0)
    slot.release(Health.UNANSWERED, now=0.0)  # the fifth opens the circuit
    at, probes = slot.ready_at(0.0), []
    while not slot.given_up:
        probes.append(at)
        at = probe(slot, at, Health.UNANSWERED)
    # probes 30, 60, 60... s apart, and the host is given up at the first failed probe once
    # it has not answered for max_outage seconds
    assert probes == [30.0, 90.0, 150.0, 210.0, 270.0, 330.0]
    assert slot.breaker.state is Circuit.GIVEN_UP
    assert slot.full
    assert slot.ready_at(1e9) == math.inf


def test_an_answer_starts_the_outage_over() -> None:
    breaker = Breaker(threshold=1, cooldown=100, max_outage=300)
    slot = HostSlot(concurrency=1, rate=0.0, breaker=breaker)
    slot.acquire(0.0)
    slot.release(Health.UNANSWERED, now=0.0)
    assert probe(slot, 100.0, Health.UNANSWERED) == 200.0
    assert probe(slot, 200.0, Health.ERROR) == 300.0  # a 503: the host is alive after all
    assert probe(slot, 300.0, Health.UNANSWERED) == 400.0  # silent again, from 300 on
    assert probe(slot, 400.0, Health.UNANSWERED) == 500.0
    assert probe(slot, 500.0, Health.UNANSWERED) == 600.0
    assert not slot.given_up  # 500 s of failures, but only 200 s without an answer
    assert probe(slot, 600.0, Health.UNANSWERED) == math.inf  # 300 s: given up


def test_a_host_that_never_answers_can_be_given_up_at_once() -> None:
    slot = HostSlot(concurrency=2, rate=0.0, breaker=Breaker(threshold=2, cooldown=5, max_outage=0))
    slot.acquire(0.0)
    slot.release(Health.UNANSWERED, now=0.0)
    assert not slot.given_up
    slot.acquire(0.0)
    slot.release(Health.UNANSWERED, now=0.0)  # the circuit opens, and with no patience...
    assert slot.given_up


def test_breaker_closes_on_success_and_forgets_its_openings() -> None:
    slot = HostSlot(concurrency=2, rate=0.0, breaker=Breaker(threshold=2, cooldown=5))
    for _ in range(2):
        slot.acquire(0.0)
        slot.release(Health.UNANSWERED, now=0.0)
    assert slot.breaker.state is Circuit.OPEN
    slot.acquire(5.0)
    slot.release(Health.OK, now=5.5)
    assert slot.breaker.state is Circuit.CLOSED
    assert slot.breaker.outage(6.0) == 0.0
    assert slot.ready_at(6.0) == 6.0
    slot.acquire(6.0)
    slot.release(Health.ERROR, now=6.0)  # one failure after a success does not reopen it
    slot.acquire(6.0)
    slot.release(None, now=6.0)  # a refused request (robots.txt, blocked) says nothing
    assert slot.breaker.state is Circuit.CLOSED


def test_a_probe_that_tells_nothing_is_sent_again() -> None:
    slot = HostSlot(concurrency=2, rate=0.0, breaker=Breaker(threshold=1, cooldown=5))
    slot.acquire(0.0)
    slot.release(Health.UNANSWERED, now=0.0)
    slot.acquire(5.0)
    slot.release(None, now=5.0)
    assert slot.breaker.state is Circuit.OPEN
    assert slot.ready_at(5.0) == 5.0
