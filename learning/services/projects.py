"""What the learning side keeps for a project: its files under ARTIFACT_DIR, its base model, and how a task
stops quietly when its project is deleted under it.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.db import IntegrityError, connection

from annotation.models import Project
from learning import selectors
from learning.exceptions import RunAbandoned

logger = logging.getLogger(__name__)


def artifact_root() -> Path:
    return Path(settings.ARTIFACT_DIR)


def project_files_remove(project_id: int) -> None:
    """Delete what the learning side keeps on disk for a deleted project."""
    for path in selectors.project_files(project_id):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


@dataclass
class _Vanished:
    deleted: bool = False


@contextmanager
def project_may_vanish(project_id: int) -> Iterator[_Vanished]:
    """`with project_may_vanish(id) as gone:` a task that finds its project deleted mid-way (a row gone, a
    foreign key that no longer holds) stops quietly, sets `gone.deleted` and removes the files it wrote after
    the deletion; any other error, or the same error while the project still exists, passes on."""
    outcome = _Vanished()
    try:
        yield outcome
    except (IntegrityError, ObjectDoesNotExist, RunAbandoned):
        if connection.in_atomic_block or Project.objects.filter(pk=project_id).exists():
            raise
        project_files_remove(project_id)
        outcome.deleted = True
        logger.info("Project %s was deleted while a task worked on it; stopped quietly", project_id)


def base_model_for(project: Project) -> str | None:
    """The project's base SentenceTransformer directory, or the site default, or None for the packaged one."""
    return project.base_model or getattr(settings, "DOCKET_BASE_MODEL", "") or None
