"""Settings that depend on the environment, read in a fresh interpreter as a web process would."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def setting(name: str, **environment: str) -> str:
    env = {key: value for key, value in os.environ.items() if key != "DOCKET_CACHE_URL"}
    env.update(DJANGO_SETTINGS_MODULE="config.settings", **environment)
    code = f"import django; django.setup(); from django.conf import settings; print(settings.{name})"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True
    ).stdout.strip()


@pytest.mark.parametrize(
    ("cache_url", "engine"),
    [
        # Each process would cache sessions on its own: a logout in one would not reach the others.
        ("", "django.contrib.sessions.backends.db"),
        ("redis://127.0.0.1:6379/14", "django.contrib.sessions.backends.cached_db"),
    ],
)
def test_sessions_are_cached_only_in_a_cache_every_process_shares(cache_url, engine):
    assert setting("SESSION_ENGINE", **({"DOCKET_CACHE_URL": cache_url} if cache_url else {})) == engine


def test_a_redis_cache_keeps_one_client_per_connection_pool():
    backend = setting('CACHES["default"]["BACKEND"]', DOCKET_CACHE_URL="redis://127.0.0.1:6379/14")
    assert backend == "operations.cache.RedisCache"
