"""WSGI entry point (gunicorn config.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Torch's OpenMP threads (libgomp) spin after every parallel region, waiting for more: 300,000 turns by default,
# milliseconds. After a prediction the next work here is Django's, the database's, the client's and the other
# workers', and the spinning thread holds the core they need (on 2 cores it doubled what the API adds around the
# model, docs/benchmarks.md). A short spin still carries a forward pass from one region to the next. Read once,
# when torch loads: set before it is imported; an operator's own value in the environment wins.
os.environ.setdefault("GOMP_SPINCOUNT", "10000")
application = get_wsgi_application()

from django.conf import settings  # noqa: E402  (after set-up: settings are read from the environment)

if settings.DOCKET_WARM_MODELS:
    # Every project's active model is loaded now, in the background, so no request pays a cold load;
    # /readyz answers 503 until it is done.
    from operations.warmup import warm_up_in_background  # noqa: E402

    warm_up_in_background()
