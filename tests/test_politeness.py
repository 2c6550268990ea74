import math

import pytest

from crawler.net.politeness import Breaker, Circuit, Health, HostSlot, TokenBucket, Wait


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


def test_a_host_where_nothing_succeeds_is_slowed_then_given_up_on_evidence() -> None:
    breaker = Breaker(
        threshold=4, cooldown=2, cooldown_max=30, give_up_requests=6, give_up_after=60
    )
    slot = HostSlot(concurrency=4, rate=0.0, breaker=breaker)
    for _ in range(4):
        slot.acquire(0.0)
    for _ in range(4):
        slot.release(Health.ERROR, now=1.0)  # four 5xx among its last requests: open
    assert slot.breaker.state is Circuit.OPEN
    assert slot.ready_at(1.0) == 3.0  # a first cooldown of 2 s
    at, probes = 3.0, []
    while not slot.given_up:
        probes.append(at)
        at = probe(slot, at, Health.ERROR)
    # probes 2, 4, 8, 16, 30 s apart; given up at the first failure 60 s after the first one
    assert probes == [3.0, 7.0, 15.0, 31.0, 61.0]
    assert slot.breaker.failures == 4 + 5
    assert slot.breaker.state is Circuit.GIVEN_UP
    assert slot.full
    assert slot.ready_at(1e9) == math.inf


def test_a_host_that_does_not_answer_opens_after_two_requests() -> None:
    slot = HostSlot(concurrency=1, rate=0.0, breaker=Breaker(threshold=4, cooldown=2))
    slot.acquire(0.0)
    slot.release(Health.UNANSWERED, now=0.0)  # refused: weighs two
    assert slot.breaker.state is Circuit.CLOSED
    slot.acquire(0.0)
    slot.release(Health.UNANSWERED, now=0.0)
    assert slot.breaker.state is Circuit.OPEN
    at, attempts = slot.ready_at(0.0), 2
    while not slot.given_up:
        at = probe(slot, at, Health.UNANSWERED)
        attempts += 1
    assert attempts <= 10  # a refused host costs a handful of connection attempts


def test_a_flaky_host_is_slowed_for_seconds_never_given_up() -> None:
    slot = HostSlot(concurrency=2, rate=0.0, breaker=Breaker(threshold=4, cooldown=2))
    now, longest = 0.0, 0.0
    for n in range(1000):  # a host where 3 requests in 5 fail, 10 requests a second
        ready = slot.ready_at(now)
        longest = max(longest, ready - now)
        now = max(now, ready)
        slot.acquire(now)
        slot.release(Health.OK if n % 5 < 2 else Health.ERROR, now=now)
        now += 0.1
    assert not slot.given_up
    assert longest <= 8.0  # its probes succeed soon: cooldowns stay short


def test_any_success_starts_the_evidence_over() -> None:
    breaker = Breaker(threshold=1, cooldown=10, give_up_requests=3, give_up_after=100)
    slot = HostSlot(concurrency=1, rate=0.0, breaker=breaker)
    slot.acquire(0.0)
    slot.release(Health.UNANSWERED, now=0.0)
    assert probe(slot, 10.0, Health.ERROR) == 30.0
    assert probe(slot, 30.0, Health.ERROR) == 60.0  # three failures, but only 30 s
    assert probe(slot, 60.0, Health.OK) == 60.0  # a success: closed, the count starts over
    assert slot.breaker.outage(60.0) == 0.0
    slot.acquire(60.0)
    slot.release(Health.ERROR, now=60.0)
    for at in (70.0, 90.0, 130.0):
        slot.acquire(at)
        slot.release(Health.ERROR, now=at)
    assert not slot.given_up  # 70 s of failures since the success
    slot.acquire(170.0)
    slot.release(Health.ERROR, now=170.0)
    assert slot.given_up  # 110 s and five requests without a success


def test_retries_failing_again_never_hold_the_circuit_open_but_count_toward_giving_up() -> None:
    breaker = Breaker(threshold=2, cooldown=2, give_up_requests=6, give_up_after=60)
    slot = HostSlot(concurrency=2, rate=0.0, breaker=breaker)
    for at in range(60):  # bad pages retried over and over, a second apart
        slot.acquire(float(at))
        slot.release(Health.ERROR, now=float(at), retry=True)
        assert slot.breaker.state is Circuit.CLOSED  # their own back-off paces them
    slot.acquire(60.0)
    slot.release(Health.ERROR, now=60.0, retry=True)
    assert slot.given_up  # but nothing succeeded in 61 requests and 60 s


def test_429_is_no_evidence_against_a_host() -> None:
    slot = HostSlot(concurrency=2, rate=0.0, breaker=Breaker(threshold=1, cooldown=5))
    for at in range(1000):
        slot.acquire(float(at))
        slot.release(Health.THROTTLED, now=float(at))
    assert slot.breaker.state is Circuit.CLOSED


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
    slot.release(Health.ERROR, now=6.0)  # one failure after it closed does not reopen it
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


def test_a_hosts_health_and_why_from_its_kept_state() -> None:
    from crawler.net.politeness import HostHealth, host_health
    from crawler.records import HostState

    assert host_health(None, 0.0) == (HostHealth.OK, "")
    assert host_health(HostState("a", not_before=130.0), 100.0) == (
        HostHealth.SLOWED,
        "Retry-After: 30 s left",
    )
    assert host_health(HostState("a", failures=2, silent_since=90.0), 100.0) == (
        HostHealth.SLOWED,
        "2 failed in a row over 10 s",
    )
    open_ = HostState("a", failures=5, opens=2, open_until=104.0, silent_since=80.0)
    assert host_health(open_, 100.0) == (
        HostHealth.OPEN,
        "5 failed in a row over 20 s, probe in 4 s",
    )
    given_up = HostState("a", failures=9, opens=5, open_until=math.inf, silent_since=0.0)
    assert host_health(given_up, 61.0) == (HostHealth.GIVEN_UP, "9 failed in a row over 61 s")
