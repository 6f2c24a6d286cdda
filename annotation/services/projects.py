"""Creating projects with their taxonomy and first admin."""

import json
from pathlib import Path
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from annotation.models import Label, Membership, Project, Taxonomy
from annotation.services.audit import audit_record

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "demo"
# Taxonomy templates offered when a project starts; the file holds labels with guidelines and shortcuts.
TAXONOMY_TEMPLATES = {"opp115": TEMPLATES_DIR / "taxonomy.json"}


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
