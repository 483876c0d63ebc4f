"""RateLimiter: once per period per key, with a count of what was held back."""
from __future__ import annotations


from fer_ros.ratelimit import RateLimiter


def test_once_per_period_with_suppressed_count(fer_warnings):
    now = [0.0]
    rl = RateLimiter(5.0, clock=lambda: now[0])
    assert rl.warning("bad", "bad frame")
    assert not rl.warning("bad", "bad frame")
    assert not rl.warning("bad", "bad frame")
    assert rl.warning("other", "other problem")  # keys are independent
    now[0] = 5.0
    assert rl.warning("bad", "bad frame")
    assert fer_warnings.messages == ["bad frame", "other problem", "bad frame (2 similar messages suppressed)"]


def test_once_only_and_reset():
    rl = RateLimiter(None, clock=lambda: 1e9)
    assert rl.allow("k") == (True, 0)
    assert rl.allow("k") == (False, 0)
    rl.reset("k")
    assert rl.allow("k") == (True, 0)
    rl.reset()
    assert rl.allow("k")[0]
