"""The shared cache's Redis backend reuses one client per connection pool and still behaves as Django's."""

import uuid

import pytest
from django.core.cache import cache


@pytest.fixture
def redis_cache(settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "operations.cache.RedisCache",
            "LOCATION": settings.CELERY_BROKER_URL,
            "KEY_PREFIX": f"test-cache-{uuid.uuid4().hex}",
        }
    }
    yield cache
    client = cache._cache.get_client(write=True)
    for name in client.scan_iter(f"{settings.CACHES['default']['KEY_PREFIX']}:*"):
        client.delete(name)


def test_operations_share_one_client(redis_cache):
    assert redis_cache._cache.get_client("a") is redis_cache._cache.get_client("b", write=True)


def test_values_round_trip_as_with_djangos_backend(redis_cache):
    assert redis_cache.add("count", 1, timeout=60)
    assert redis_cache.incr("count") == 2
    redis_cache.set("times", [1.5, 2.5], 60)
    assert (redis_cache.get("count"), redis_cache.get("times"), redis_cache.get("absent", "none")) == (
        2,
        [1.5, 2.5],
        "none",
    )
