"""Prometheus metrics at /metrics: django-prometheus's request and database figures plus Docket's own.

Docket's figures are read when Prometheus scrapes, from the database and the broker, so every web process
reports the same values whichever one is asked: queue depth per Celery queue, labels stored in the last
minute, training runs by kind and outcome. Prediction latency by model version is a histogram that each
process observes (learning.serving); with several gunicorn workers set PROMETHEUS_MULTIPROC_DIR so they are
summed (docs/deploy.md).
"""

from __future__ import annotations

import hmac
import logging
import os
from datetime import timedelta

import prometheus_client
from django.conf import settings
from django.http import HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)


def celery_queues() -> list[str]:
    """The queues Docket's tasks go to: the default one, the fast loop's and the fine-tunes'."""
    return sorted({"celery", settings.DOCKET_FAST_QUEUE, settings.DOCKET_SLOW_TRAINING_QUEUE})


def queue_depths() -> dict[str, int]:
    """Messages waiting in each queue (not those a worker holds); a queue nobody declared yet counts 0."""
    from config.celery import app

    depths: dict[str, int] = {}
    with app.connection_for_read() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
        for name in celery_queues():
            channel = conn.channel()
            try:
                depths[name] = int(channel.queue_declare(queue=name, passive=True).message_count)
            except Exception:  # the queue does not exist yet: nothing waits in it
                depths[name] = 0
            finally:
                try:
                    channel.close()
                except Exception:  # a broker that closed the channel after a 404 already released it
                    logger.debug("channel already closed")
    return depths


class DocketCollector(Collector):
    """Figures read at scrape time from the database and the broker."""

    def collect(self):
        from annotation.models import AnnotationRevision
        from learning.models import TrainingRun

        depth = GaugeMetricFamily("docket_queue_depth", "Celery messages waiting per queue.", labels=["queue"])
        try:
            for name, count in queue_depths().items():
                depth.add_metric([name], count)
        except Exception as error:  # the broker is down: /readyz says so; metrics still answer
            logger.warning("Queue depth unavailable: %s", error)
        yield depth

        since = timezone.now() - timedelta(minutes=1)
        labels = GaugeMetricFamily(
            "docket_labels_last_minute", "Answers stored or changed in the last minute, by project.", labels=["project"]
        )
        rows = (
            AnnotationRevision.objects.filter(changed_at__gte=since)
            .values_list("annotation__document__project_id")
            .order_by()
        )
        counts: dict[int, int] = {}
        for (project_id,) in rows:
            counts[project_id] = counts.get(project_id, 0) + 1
        for project_id, count in sorted(counts.items()):
            labels.add_metric([str(project_id)], count)
        yield labels

        runs = GaugeMetricFamily(
            "docket_training_runs",
            "Training runs by kind and outcome (queued, running, succeeded, ...).",
            labels=["kind", "status"],
        )
        from django.db.models import Count

        for row in TrainingRun.objects.values("kind", "status").annotate(n=Count("id")).order_by("kind", "status"):
            runs.add_metric([row["kind"], row["status"]], row["n"])
        yield runs


_docket_registry = prometheus_client.CollectorRegistry(auto_describe=False)
_docket_registry.register(DocketCollector())


@never_cache
def metrics(request):
    """Prometheus text format; with DOCKET_METRICS_TOKEN set, only for `Authorization: Bearer <token>`."""
    token = settings.DOCKET_METRICS_TOKEN
    if token:
        offered = request.META.get("HTTP_AUTHORIZATION", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(offered.encode(), token.encode()):
            return HttpResponse("metrics need the bearer token\n", status=401, content_type="text/plain")
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        process_registry = prometheus_client.CollectorRegistry()
        multiprocess.MultiProcessCollector(process_registry)
    else:
        process_registry = prometheus_client.REGISTRY
    body = prometheus_client.generate_latest(process_registry) + prometheus_client.generate_latest(_docket_registry)
    return HttpResponse(body, content_type=prometheus_client.CONTENT_TYPE_LATEST)
