"""The per-connection token bucket of client frames (pure: `registry.take_frame_token` stores it).

Every connection may send `RATE_PER_SECOND` frames a second on average and `BURST` at once.
Tokens are counted in thousandths so the stored value is an integer and compares exactly in a
DynamoDB condition.
"""

from __future__ import annotations

from dataclasses import dataclass

RATE_PER_SECOND = 10
BURST = 20
MILLI = 1000


@dataclass(frozen=True, slots=True)
class Bucket:
    milli_tokens: int  # thousandths of a token left after the last frame
    at_ms: int  # epoch ms of that frame


def take(
    bucket: Bucket | None, now_ms: int, *, rate: int | None = None, burst: int | None = None
) -> Bucket | None:
    """The bucket after one frame at `now_ms`, or None when it is empty (the frame is refused).

    A missing bucket is a full one. Tokens refill at `rate` per second up to `burst`; a clock
    that went backwards refills nothing.
    """
    rate = RATE_PER_SECOND if rate is None else rate
    burst = BURST if burst is None else burst
    if bucket is None:
        available = burst * MILLI
    else:
        elapsed = max(0, now_ms - bucket.at_ms)
        available = min(burst * MILLI, bucket.milli_tokens + elapsed * rate)  # ms x tokens/s = milli-tokens
    if available < MILLI:
        return None
    return Bucket(available - MILLI, max(now_ms, bucket.at_ms if bucket else now_ms))
