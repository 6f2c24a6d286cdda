"""Creating projects with their taxonomy and first admin, and changing their settings."""

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from annotation.models import AnnotationLabel, Label, Membership, Project, Taxonomy
from annotation.services.audit import audit_record
from annotation.services.labeling import request_queue_rescore

logger = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "demo"
# Taxonomy templates offered when a project starts; the file holds labels with guidelines and shortcuts.
TAXONOMY_TEMPLATES = {"opp115": TEMPLATES_DIR / "taxonomy.json"}

# What a project admin may change after creation (the settings page and PATCH /api/v1/projects/{id}).
# Single- or multi-label is the taxonomy's mode (the taxonomy page); overlap and gold are the quality page's.
PROJECT_SETTINGS = (
    "name",
    "description",
    "lease_ttl_seconds",
    "query_strategy",
    "fast_retrain_every",
    "slow_retrain_every",
    "eval_fraction",
    "promotion_policy",
    "reviewers_bulk_label",
)


def taxonomy_template(name: str) -> dict[str, Any]:
    return json.loads(TAXONOMY_TEMPLATES[name].read_text(encoding="utf-8"))


@transaction.atomic
def project_create(
    *,
    name: str,
    description: str = "",
    multi_label: bool = False,
    labels: list[dict[str, Any]] | None = None,
    created_by: AbstractBaseUser | None = None,
    **settings: Any,
) -> Project:
    """A project with its taxonomy; the creator becomes its first admin (explicitly, not by a signal)."""
    project = Project(name=name, description=description, multi_label=multi_label, created_by=created_by, **settings)
    project.full_clean()
    project.save()
    taxonomy = Taxonomy.objects.create(project=project)
    for order, spec in enumerate(labels or []):
        label = Label(
            taxonomy=taxonomy,
            key=spec["key"],
            name=spec.get("name", spec["key"]),
            description=spec.get("description", ""),
            guideline=spec.get("guideline", ""),
            color=spec.get("color", "#4f6d7a"),
            shortcut=spec.get("shortcut", ""),
            order=spec.get("order", order),
        )
        label.full_clean(exclude=["taxonomy"])
        label.save()
    if created_by is not None:
        Membership.objects.create(project=project, user=created_by, role=Membership.Role.ADMIN)
    audit_record(
        action="project.created",
        actor=created_by,
        project=project,
        target=project,
        after={"name": name, "multi_label": multi_label, "labels": [spec["key"] for spec in labels or []]},
    )
    return project


@transaction.atomic
def project_settings_update(*, actor: AbstractBaseUser, project: Project, **changes: Any) -> Project:
    """Change some of PROJECT_SETTINGS: validated together, one audit event with before and after, and a
    queue laid out again when the query strategy changes. Invalid values raise ValidationError and change
    nothing (the instance passed in is left as it was)."""
    unknown = set(changes) - set(PROJECT_SETTINGS)
    if unknown:
        raise ValueError(f"Not a project setting: {', '.join(sorted(unknown))}")
    current = Project.objects.select_for_update().get(pk=project.pk)
    before = {field: getattr(current, field) for field, value in changes.items() if getattr(current, field) != value}
    if not before:
        return current
    for field in before:
        setattr(current, field, changes[field])
    current.full_clean()
    current.save(update_fields=list(before))
    audit_record(
        action="project.updated",
        actor=actor,
        project=current,
        target=current,
        before=before,
        after={field: getattr(current, field) for field in before},
    )
    if "query_strategy" in before:
        project_id = current.pk
        transaction.on_commit(lambda: request_queue_rescore(project_id))
    return current


def project_delete(*, actor: AbstractBaseUser | None, project: Project) -> None:
    """Delete a project with its documents, answers, models and files.

    Its rows go in one transaction (waiting for a model switch or rescore that holds them to commit); its files
    (models, embedding caches, uploads waiting for a worker) go once that is committed. A worker still busy
    with the project stops quietly when it finds it gone, and removes what it wrote meanwhile.
    """
    from learning.selectors import project_files

    project_id = project.pk
    with transaction.atomic():
        locked = Project.objects.select_for_update().get(pk=project_id)
        audit_record(
            action="project.deleted",
            actor=actor,
            project=locked,
            target=locked,
            before={"name": locked.name, "documents": locked.documents.count()},
        )
        # Labels in use and labels with labels under them are protected one by one; with the whole project
        # going, the answers' labels and the tree go first.
        AnnotationLabel.objects.filter(label__taxonomy__project=locked).delete()
        Label.objects.filter(taxonomy__project=locked).update(parent=None)
        locked.delete()
        paths = [*project_files(project_id), Path(settings.ARTIFACT_DIR) / "uploads" / str(project_id)]
        transaction.on_commit(lambda: _files_remove(paths))


def _files_remove(paths: list[Path]) -> None:
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.unlink(missing_ok=True)
    logger.info("Removed the files of a deleted project: %s", ", ".join(str(p) for p in paths))
