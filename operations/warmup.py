"""Load every project's active model when a web process starts, so no reviewer or system pays a cold load.

Started from config/wsgi.py in a background thread: the process answers /healthz at once and /readyz once the
models are in memory. A model promoted later is loaded when /readyz (probed every few seconds) sees it, while
the previous one keeps serving (learning.serving swaps atomically).
"""

from __future__ import annotations

import logging
import threading
import time

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_thread: threading.Thread | None = None
state: dict = {"started": False, "done": False, "loaded": {}, "failed": {}, "seconds": None}


def active_models_load() -> dict[int, int]:
    """Load the active model of every project into this process's serving cache; {project id: version}."""
    from annotation.models import Project
    from learning import serving
    from learning.models import ModelVersion

    loaded: dict[int, int] = {}
    project_ids = ModelVersion.objects.filter(status=ModelVersion.Status.ACTIVE).values_list("project_id", flat=True)
    for project in Project.objects.filter(pk__in=list(project_ids)).order_by("pk"):
        try:
            loaded[project.pk] = serving.models.active(project).number
        except Exception as error:  # one broken model must not keep the others cold
            state["failed"][project.pk] = f"{type(error).__name__}: {error}"
            logger.exception("Could not load the active model of project %s", project.pk)
    return loaded


def _run() -> None:
    from django.conf import settings
    from django.db import connection

    started = time.monotonic()
    try:
        state["loaded"].update(active_models_load())
    finally:
        connection.close()  # this thread's own connection; the request threads have theirs
        state["seconds"] = round(time.monotonic() - started, 2)
        state["done"] = True
        logger.info(
            "Active models loaded in %.1f s: %s",
            state["seconds"],
            ", ".join(f"project {p} v{n}" for p, n in sorted(state["loaded"].items())) or "none yet",
        )
    # A model promoted later (by a worker or an admin) is loaded here too, before a request asks for it.
    interval = settings.DOCKET_MODEL_POLL_SECONDS
    while interval > 0:
        time.sleep(interval)
        try:
            state["loaded"].update(active_models_load())
        except Exception:  # the database is away for a moment: try again at the next turn
            logger.warning("Could not check for newly promoted models", exc_info=True)
        finally:
            connection.close()


def warm_up_in_background() -> None:
    """Start loading the active models once per process (later calls do nothing while one load runs)."""
    global _thread
    with _lock:
        if _thread is not None and _thread.is_alive():
            return
        state["started"] = True  # `done` stays True once the first load finished: a reload never unreadies
        _thread = threading.Thread(target=_run, name="docket-model-warm-up", daemon=True)
        _thread.start()
