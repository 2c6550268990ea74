import math

import pytest

from crawler.politeness import Breaker, HostSlot, TokenBucket


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


def test_breaker_opens_probes_and_gives_up_in_virtual_time() -> None:
    slot = HostSlot(concurrency=4, rate=0.0, breaker=Breaker(threshold=3, cooldown=10, max_opens=3))
    for _ in range(3):
        slot.acquire(0.0)
    for _ in range(3):
        slot.release(False, now=1.0)  # three consecutive failures open the circuit
    assert slot.breaker.state == "open"
    assert slot.ready_at(1.0) == 11.0  # nothing before the cooldown ends
    slot.acquire(11.0)  # the single probe
    assert slot.breaker.state == "half-open"
    assert slot.full
    assert slot.ready_at(11.0) == math.inf
    slot.release(False, now=12.0)  # the probe fails: reopen with a doubled cooldown
    assert slot.ready_at(12.0) == 32.0
    slot.acquire(32.0)
    slot.release(False, now=33.0)  # third opening: give up
    assert slot.dead
    assert slot.breaker.state == "dead"
    assert slot.ready_at(1e9) == math.inf


def test_breaker_closes_on_success_and_forgets_its_openings() -> None:
    slot = HostSlot(concurrency=2, rate=0.0, breaker=Breaker(threshold=2, cooldown=5, max_opens=2))
    for _ in range(2):
        slot.acquire(0.0)
        slot.release(False, now=0.0)
    assert slot.breaker.state == "open"
    slot.acquire(5.0)
    slot.release(True, now=5.5)
    assert slot.breaker.state == "closed"
    assert slot.ready_at(6.0) == 6.0
    slot.acquire(6.0)
    slot.release(False, now=6.0)  # one failure after a success does not reopen it
    slot.acquire(6.0)
    slot.release(None, now=6.0)  # a 429 or a robots.txt refusal says nothing about health
    assert slot.breaker.state == "closed"


def test_a_probe_that_tells_nothing_is_sent_again() -> None:
    slot = HostSlot(concurrency=2, rate=0.0, breaker=Breaker(threshold=1, cooldown=5, max_opens=3))
    slot.acquire(0.0)
    slot.release(False, now=0.0)
    slot.acquire(5.0)
    slot.release(None, now=5.0)
    assert slot.breaker.state == "open"
    assert slot.ready_at(5.0) == 5.0
