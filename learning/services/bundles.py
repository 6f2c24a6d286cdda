"""Model bundles of a project's versions: what `manage.py export_model` writes and the API hands out."""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from annotation.models import Project
from annotation.services.audit import audit_record
from learning import selectors
from learning.exceptions import BundleUnavailable
from learning.ml.bundle import bundle_write
from learning.models import ModelVersion

EXPORTABLE = (ModelVersion.Status.ACTIVE, ModelVersion.Status.READY, ModelVersion.Status.RETIRED)


def bundle_version(*, project: Project, number: int | None) -> ModelVersion:
    """The version to export: `number`, or the active one; refused unless it trained and its files are kept."""
    version = (
        selectors.active_model_version(project)
        if number is None
        else selectors.model_version_by_number(project, number)
    )
    if version is None:
        what = "no active model yet" if number is None else f"no model version {number}"
        raise BundleUnavailable(f"Project {project.name!r} has {what}.")
    if version.status not in EXPORTABLE:
        raise BundleUnavailable(f"Model version {version.number} is {version.get_status_display().lower()}.")
    if version.pruned_at is not None or version.artifact_dir is None or not version.artifact_dir.is_dir():
        raise BundleUnavailable(f"The files of model version {version.number} are no longer in artifact storage.")
    return version


def model_bundle_export(*, version: ModelVersion, out_dir: Path, actor: AbstractBaseUser | None = None) -> Path:
    """Write `version` as a bundle to `out_dir` (learning/ml/bundle.py) and audit it."""
    project = version.project
    path = bundle_write(
        model_dir=version.artifact_dir,
        out_dir=out_dir,
        project={"id": project.pk, "name": project.name},
        model_version=version.number,
        taxonomy_version=version.taxonomy_version,
        labels=_label_map(version),
        extra={
            "kind": version.kind,
            "macro_f1": version.macro_f1,
            "train_label_count": version.train_label_count,
            "trained_at": version.finished_at.isoformat() if version.finished_at else None,
            "exported_at": timezone.now().isoformat(),
        },
    )
    audit_record(
        action="model.exported", actor=actor, project=project, target=version, after={"number": version.number}
    )
    return path


def model_bundle_zip(*, version: ModelVersion, actor: AbstractBaseUser | None = None):
    """The bundle as an open, already unlinked zip file (for a download): it vanishes once closed."""
    with tempfile.TemporaryDirectory(prefix="docket-bundle-") as scratch:
        directory = model_bundle_export(version=version, out_dir=Path(scratch) / "bundle", actor=actor)
        archive = tempfile.TemporaryFile(prefix="docket-bundle-", suffix=".zip")
        # Stored, not deflated: safetensors weights barely compress, and the download should not wait on a CPU.
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zipped:
            for path in sorted(p for p in directory.rglob("*") if p.is_file()):
                zipped.write(path, f"{bundle_name(version)}/{path.relative_to(directory).as_posix()}")
    archive.seek(0)
    return archive


def _label_map(version: ModelVersion) -> list[dict[str, str]]:
    """The model's outputs with the names they had when it trained (versions from before names were kept: keys)."""
    names = {label["key"]: label.get("name") or label["key"] for label in version.labels}
    return [{"key": key, "name": names.get(key, key)} for key in version.label_keys]


def bundle_name(version: ModelVersion) -> str:
    return f"docket-project-{version.project_id}-model-v{version.number}"
