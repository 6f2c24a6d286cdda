"""A key's requests in the throttle's period, kept in the default cache: what ApiKeyRateThrottle counts.

In Redis (the deployed shared cache) the log is a sorted set of request times, trimmed, counted and added to
by one Lua script: one round trip per request, whatever the rate. In any other cache it is DRF's list of
times, read and written back whole (two round trips, which cost nothing in the local-memory cache).
Both answer the same: a sliding window of `period` seconds holding at most `limit` requests.
"""

import secrets
from dataclasses import dataclass

from django.core.cache import DEFAULT_CACHE_ALIAS, caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.redis import RedisCache
from django.utils.connection import ConnectionProxy
from redis.commands.core import Script

# KEYS[1]: the sorted set; ARGV: now, period (seconds), limit, record (1/0), a member unique to this request.
# Returns whether the request fits, the requests in the period (this one included when recorded), and the
# times of the oldest of them and of the limit-th newest (false when there are fewer).
_RECORD = """
local key, now, period, limit = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - period)
local count = redis.call('ZCARD', key)
local allowed = count < limit
if allowed and ARGV[4] == '1' then
  redis.call('ZADD', key, now, ARGV[5])
  redis.call('PEXPIRE', key, math.ceil(period * 1000))
  count = count + 1
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')[2]
local nth_newest = redis.call('ZREVRANGE', key, limit - 1, limit - 1, 'WITHSCORES')[2]
return {allowed and 1 or 0, count, oldest or false, nth_newest or false}
"""
_SCRIPT = Script(None, _RECORD.encode())  # bytes: no client needed to hash it


@dataclass(frozen=True)
class Period:
    """The log after one request: whether it fit, how many requests the period holds, and the times of the
    oldest of them and of the limit-th newest (when that one leaves the period, a slot is free)."""

    allowed: bool
    count: int
    oldest: float | None
    nth_newest: float | None


def requests_in_period(cache: BaseCache, key: str, *, now: float, period: float, limit: int, record: bool) -> Period:
    """Trim the log to the last `period` seconds and, with `record`, add this request if it fits."""
    if isinstance(cache, ConnectionProxy):  # django.core.cache.cache: the backend is behind it
        cache = caches[DEFAULT_CACHE_ALIAS]
    if isinstance(cache, RedisCache):
        return _in_redis(cache, key, now=now, period=period, limit=limit, record=record)
    return _in_cache(cache, key, now=now, period=period, limit=limit, record=record)


def _in_redis(backend: RedisCache, key: str, *, now: float, period: float, limit: int, record: bool) -> Period:
    # Its own name: the list the other kind of cache keeps under `key` is another Redis type.
    name = backend.make_and_validate_key(f"{key}:times")
    client = backend._cache.get_client(name, write=True)
    member = f"{now!r}:{secrets.token_hex(4)}"
    # EVALSHA; a Redis that has not seen the script yet (a restart) is sent it once.
    allowed, count, oldest, nth_newest = _SCRIPT(
        keys=[name], args=[repr(now), period, limit, int(record), member], client=client
    )
    return Period(
        allowed=bool(allowed),
        count=int(count),
        oldest=float(oldest) if oldest is not None else None,
        nth_newest=float(nth_newest) if nth_newest is not None else None,
    )


def _in_cache(cache: BaseCache, key: str, *, now: float, period: float, limit: int, record: bool) -> Period:
    history = [moment for moment in cache.get(key, []) if moment > now - period]  # newest first
    allowed = len(history) < limit
    if allowed and record:
        history.insert(0, now)
        cache.set(key, history, period)
    return Period(
        allowed=allowed,
        count=len(history),
        oldest=history[-1] if history else None,
        nth_newest=history[limit - 1] if len(history) >= limit else None,
    )
