"""Health for load balancers and service managers: /healthz (the process answers), /readyz (it can serve).

Both are cheap (a query, a cache round trip, a broker connection) and need no login, so a probe can call them
every few seconds. They say nothing about projects beyond counts.
"""

from __future__ import annotations

import time
import uuid

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from operations import warmup

BROKER_TIMEOUT_SECONDS = 2.0


@never_cache
@require_GET
def healthz(request):
    """The process is alive and answers requests; nothing else is checked."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request):
    """200 when the database, the cache and the broker answer and the active models are loaded; else 503."""
    checks = {
        "database": _check(_database),
        "cache": _check(_cache),
        "broker": _check(_broker),
        "models": _check(_models),
    }
    ready = all(check["ok"] for check in checks.values())
    return JsonResponse({"status": "ready" if ready else "not ready", "checks": checks}, status=200 if ready else 503)


def _check(probe) -> dict:
    started = time.perf_counter()
    try:
        detail = probe()
        ok = True
    except Exception as error:  # a probe reports what failed; it never raises
        ok, detail = False, f"{type(error).__name__}: {error}"
    result = {"ok": ok, "ms": round((time.perf_counter() - started) * 1000, 1)}
    if detail:
        result["detail"] = detail
    return result


def _database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return ""


def _cache() -> str:
    key, value = "docket:readyz", uuid.uuid4().hex
    cache.set(key, value, timeout=30)
    if cache.get(key) != value:
        raise RuntimeError("the cache did not return what was just stored")
    return ""


def _broker() -> str:
    from config.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_SECONDS)
    return ""


def _models() -> str:
    """Every active model is in this process's memory; a newly promoted one is loaded in the background."""
    if not settings.DOCKET_WARM_MODELS:
        return "not preloaded (DOCKET_WARM_MODELS is off)"
    from learning import serving
    from learning.models import ModelVersion

    if not warmup.state["started"]:
        warmup.warm_up_in_background()
    if not warmup.state["done"]:
        raise RuntimeError("the active models are still loading")
    active = dict(ModelVersion.objects.filter(status=ModelVersion.Status.ACTIVE).values_list("project_id", "number"))
    loaded = serving.models.loaded_versions()
    missing = sorted(p for p in active if p not in loaded and p not in warmup.state["failed"])
    if missing:
        raise RuntimeError(f"no model in memory for project(s) {missing}")
    if any(loaded.get(p) != n for p, n in active.items() if p in loaded):
        warmup.warm_up_in_background()  # a promotion elsewhere: the old model serves until the new one is in
    return f"{len(loaded)} loaded"
