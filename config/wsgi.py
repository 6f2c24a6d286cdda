"""WSGI entry point (gunicorn config.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()

from django.conf import settings  # noqa: E402  (after set-up: settings are read from the environment)

if settings.DOCKET_WARM_MODELS:
    # Every project's active model is loaded now, in the background, so no request pays a cold load;
    # /readyz answers 503 until it is done.
    from operations.warmup import warm_up_in_background  # noqa: E402

    warm_up_in_background()
