import math

import pytest

from crawler.politeness import HostSlot, TokenBucket


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
