"""The shared cache's Redis backend: Django's, with one Redis client per connection pool instead of one per call.

Django's backend makes a `redis.Redis` for every cache operation; redis-py 8 fills a table of some 170 response
callbacks in each, which cost more CPU than the round trip itself (the API's throttle and invalid-key checks
make two on every request, a reviewer's session one). A client shares its pool's connections and is safe to
use from several threads, so each pool keeps one.
"""

import threading

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient


class _ReusedClients(RedisCacheClient):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, object] = {}
        self._lock = threading.Lock()

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            with self._lock:
                client = self._clients.setdefault(id(pool), self._client(connection_pool=pool))
        return client


class RedisCache(DjangoRedisCache):
    def __init__(self, server, params) -> None:
        super().__init__(server, params)
        self._class = _ReusedClients
