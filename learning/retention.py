"""How long model files and embedding caches are kept.

Every slow run writes a new body (about 90 MB for all-MiniLM-L6-v2) and, once the pool is re-embedded, a new
embedding cache (1.5 KB a document: 150 MB at 100,000 documents). Fast versions hard-link the body of the
version before them and cost kilobytes. Nothing is deleted while training, so a long-lived project grows by
hundreds of megabytes per fine-tune; `python manage.py prune_artifacts` (run it daily) keeps what can still
serve and frees the rest.

What is kept, per project: the active version, every version still training, the newest `keep` versions that
an admin could promote or roll back to (ready or retired), and the embedding caches of the bodies those use
plus the base model's (the cold start and the label-error page read it). A pruned version keeps its row:
its metrics, labels and place on the learning curve stay; it can no longer be promoted, rolled back to or
pinned in a prediction, and says so.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from annotation.models import Project
from annotation.services.audit import audit_record
from learning.ml.classifier import base_body_id, default_base_model
from learning.models import EmbeddingShard, ModelVersion, TrainingRun
from learning.services import artifact_root, base_model_for

Status = ModelVersion.Status
_FINISHED = {TrainingRun.Status.SUCCEEDED, TrainingRun.Status.FAILED, TrainingRun.Status.REFUSED}
KEEP_DEFAULT = 3


@dataclass
class PruneResult:
    project_id: int
    versions: list[int] = field(default_factory=list)  # numbers of the versions whose files went
    bodies: list[str] = field(default_factory=list)  # body ids whose embedding caches went
    shards: int = 0
    bytes_freed: int = 0


def _size(path: Path) -> int:
    """Bytes a deletion frees: files with other hard links (a body shared with a kept version) free nothing."""
    if path.is_file():
        stat = path.stat()
        return stat.st_size if stat.st_nlink == 1 else 0
    if path.is_dir():
        return sum(_size(child) for child in path.rglob("*") if child.is_file())
    return 0


def artifacts_prune(
    *, project: Project, keep: int = KEEP_DEFAULT, dry_run: bool = False, actor: AbstractBaseUser | None = None
) -> PruneResult:
    """Delete the files of versions nobody can go back to any more, and embedding caches no kept body uses."""
    if keep < 1:
        raise ValueError("Keep at least one version to roll back to.")
    result = PruneResult(project_id=project.pk)
    with transaction.atomic():
        versions = list(
            ModelVersion.objects.select_for_update().filter(project=project, pruned_at__isnull=True).order_by("-number")
        )
        switchable = [v for v in versions if v.status in (Status.READY, Status.RETIRED)]
        kept = {v.pk for v in versions if v.status in (Status.ACTIVE, Status.TRAINING)} | {
            v.pk for v in switchable[:keep]
        }
        doomed = [v for v in versions if v.pk not in kept and v.artifact_path]
        bodies_kept = {v.body_id for v in versions if v.pk in kept and v.body_id}
        bodies_kept.add(base_body_id(base_model_for(project) or default_base_model()))
        shards = list(EmbeddingShard.objects.filter(project=project).exclude(body_id__in=bodies_kept))

        result.versions = sorted(v.number for v in doomed)
        result.bodies = sorted({s.body_id for s in shards})
        result.shards = len(shards)
        result.bytes_freed = sum(_size(v.artifact_dir) for v in doomed) + sum(
            _size(artifact_root() / s.path) for s in shards
        )
        if dry_run or not (doomed or shards):
            return result

        now = timezone.now()
        ModelVersion.objects.filter(pk__in=[v.pk for v in doomed]).update(pruned_at=now)
        EmbeddingShard.objects.filter(pk__in=[s.pk for s in shards]).delete()
        audit_record(
            action="model.artifacts_pruned",
            actor=actor,
            project=project,
            target=project,
            after={
                "versions": result.versions,
                "bodies": result.bodies,
                "shards": result.shards,
                "bytes_freed": result.bytes_freed,
                "keep": keep,
            },
        )
        # Files go once the rows say so: a crash in between leaves files nobody points at, never a row
        # pointing at files that are gone.
        paths = [v.artifact_dir for v in doomed] + [artifact_root() / s.path for s in shards]
        transaction.on_commit(lambda: _delete(paths))
    return result


def checkpoints_prune(*, projects: list[Project] | None = None, dry_run: bool = False) -> list[int]:
    """Delete fine-tune checkpoints that no run can resume from any more; the ids of their runs.

    A run removes its checkpoint when it ends, but a worker stopped between the run's last commit and that
    removal leaves it behind (about 90 MB a body). A checkpoint of a run that is queued or running stays:
    the next worker resumes from it. With `projects`, only those projects' runs are looked at; without,
    checkpoints whose run no longer exists go too.
    """
    root = artifact_root() / "checkpoints"
    found: dict[int, Path] = {}
    for path in root.glob("run-*") if root.is_dir() else ():
        suffix = path.name.removeprefix("run-")
        if path.is_dir() and suffix.isdigit():
            found[int(suffix)] = path
    runs = TrainingRun.objects.filter(pk__in=found)
    if projects is not None:
        runs = runs.filter(project__in=projects)
    status = dict(runs.values_list("pk", "status"))
    doomed = sorted(
        run_id
        for run_id in found
        if (run_id in status and status[run_id] in _FINISHED) or (projects is None and run_id not in status)
    )
    if not dry_run:
        _delete([found[run_id] for run_id in doomed])
    return doomed


def _delete(paths: list[Path]) -> None:
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
