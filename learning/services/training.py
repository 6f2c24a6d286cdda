"""The training work of a claimed run: read labels, fit (a head on cached embeddings, or a fine-tuned body),
evaluate, save in SetFit's format, compare with the serving model and promote under the project's policy.
"""

from __future__ import annotations

import filecmp
import logging
import os
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from annotation.models import Document, Project
from annotation.services.liveness import Heartbeat
from learning.exceptions import RunAbandoned, TrainingRefused
from learning.ml.classifier import Classifier, TrainingArgs
from learning.ml.exceptions import FineTuneInterrupted, NotEnoughLabels
from learning.ml.label_descriptions import anchor_rows, encode_label_texts
from learning.ml.metrics import evaluate
from learning.models import ModelVersion, TrainingRun
from learning.services.classifiers import _classifier_on_body, _held_classifier, _held_classifier_keep
from learning.services.embeddings import embeddings_for
from learning.services.evaluation import _state_lock, evaluation_reserve
from learning.services.pool import (
    PoolScores,
    _pool_scores,
    _priorities_write,
    queued_pool,
    version_examples_per_label,
)
from learning.services.projects import artifact_root, base_model_for, project_files_remove
from learning.services.reembedding import embeddings_shared
from learning.services.registry import _switch
from learning.services.runs import (
    CONNECTION_ERRORS,
    _kick_follow_up_on_commit,
    _Progress,
    _run_claim,
    _run_end,
    _run_retry_or_fail,
    fine_tune_checkpoint,
    stale_after,
    training_runs_fail_stale,
)
from learning.services.snapshots import LabelSnapshot, label_snapshot, label_texts, training_refusal

logger = logging.getLogger(__name__)


Kind = ModelVersion.Kind
RunStatus = TrainingRun.Status
VersionStatus = ModelVersion.Status

# Files at least this large that equal the reference version's are hard-linked instead of copied.
LINK_MIN_BYTES = 64 * 1024


def fine_tune_max_steps() -> int:
    """Default cap on body fine-tuning steps (~3 s per step of 16 pairs on two cores)."""
    return int(getattr(settings, "DOCKET_FINE_TUNE_MAX_STEPS", 100))


@dataclass
class _Trained:
    classifier: Classifier
    metrics: dict[str, Any]
    reference_version: ModelVersion | None  # whose files equal ours (same body), for hard links
    labelled_embeddings: np.ndarray


def training_run_execute(*, run_id: int, task_id: str = "") -> TrainingRun | None:
    """Run a claimed training run to its end: refused, failed or succeeded (and maybe promoted).

    Safe to call twice for the same run: only the caller that claims it works on it.
    """
    project_id = TrainingRun.objects.filter(pk=run_id).values_list("project_id", flat=True).first()
    if project_id is None:
        return None
    training_runs_fail_stale(project_id=project_id)
    run = _run_claim(run_id, task_id)
    if run is None:
        return None
    progress = _Progress(run)
    started = time.monotonic()
    task = run.celery_task_id
    try:
        with Heartbeat(lambda: _run_heartbeat(run_id, task), name=f"heartbeat-run-{run_id}"):
            _run_work(run, progress, started)
    except (TrainingRefused, NotEnoughLabels) as refusal:
        _run_end(run.pk, task_id=task, status=RunStatus.REFUSED, error=str(refusal))
    except FineTuneInterrupted as stop:
        # The worker is stopping: the run stays "running" under this task, whose message goes back to the
        # broker; the worker that receives it again takes the run over and resumes from the checkpoint. Its
        # heartbeat is made old at once, so that delivery may take it over (and the sweeper queues it again if
        # the message is lost).
        logger.warning("Training run %s paused after %s of %s fine-tuning steps", run.pk, stop.steps_done, stop.steps)
        TrainingRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(
            phase=f"Paused after {stop.steps_done} of {stop.steps} steps: resumes when a worker is back",
            heartbeat_at=timezone.now() - stale_after() - timedelta(seconds=1),
        )
        raise
    except RunAbandoned:
        if not Project.objects.filter(pk=project_id).exists():
            project_files_remove(project_id)  # what this run wrote after the deletion cleared the rest
            return None
        logger.warning("Training run %s was ended elsewhere while this worker held it; stopping", run.pk)
    except Exception as error:
        lost_connection = isinstance(error, CONNECTION_ERRORS)
        if lost_connection or not connection.is_usable():
            # The error may have come from this very connection; the run is ended on a fresh one.
            connection.close()
        if not Project.objects.filter(pk=project_id).exists():
            project_files_remove(project_id)
            logger.info("Project %s was deleted while run %s trained; stopped quietly", project_id, run_id)
            return None
        outcome = _run_retry_or_fail(
            run_id, task_id=task, error=f"{type(error).__name__}: {error}".strip(), retry=lost_connection
        )
        if outcome != "queued":
            raise
        logger.warning("Training run %s lost its database connection; queued again", run_id, exc_info=True)
    finally:
        timings = progress.close()
        try:
            TrainingRun.objects.filter(pk=run.pk).update(timings=timings)
        except CONNECTION_ERRORS:
            connection.close()
    ended = TrainingRun.objects.filter(pk=run.pk).first()
    if ended is None or ended.is_finished:
        fine_tune_checkpoint(run.pk).discard()  # a run queued again keeps its checkpoint to resume from
    return ended


def _run_heartbeat(run_id: int, task_id: str) -> None:
    TrainingRun.objects.filter(pk=run_id, status=RunStatus.RUNNING, celery_task_id=task_id).update(
        heartbeat_at=timezone.now()
    )


def _run_work(run: TrainingRun, progress: _Progress, started: float) -> None:
    project = Project.objects.get(pk=run.project_id)
    progress.phase("Reading labels", "read_labels")
    evaluation_reserve(project=project)
    snapshot = label_snapshot(project)
    TrainingRun.objects.filter(pk=run.pk).update(label_events=snapshot.label_events)
    refusal = training_refusal(snapshot)
    if refusal:
        raise TrainingRefused(refusal)
    args = TrainingArgs(max_steps=run.max_steps if run.max_steps is not None else fine_tune_max_steps())
    active = ModelVersion.objects.filter(project=project, status=VersionStatus.ACTIVE).first()
    version = _version_create(run, project, snapshot, args)
    if run.kind == Kind.SLOW:
        trained = _train_slow(project, snapshot, args, progress, run.pk)
    else:
        trained = _train_fast(project, snapshot, args, active, progress)

    # Saved beside the comparison, the pool's scores and the priorities' write (file writes against numpy and
    # PostgreSQL), and waited for in the switching transaction, before its commit.
    saving = _ArtifactSave(trained.classifier, project, version, trained.reference_version)
    try:
        _run_compare_and_finish(run, project, version, snapshot, trained, active, saving, progress, started)
    finally:
        saving.wait()
        progress.timings["save"] = saving.seconds
    if run.kind != Kind.SLOW:
        _held_classifier_keep(artifact_root() / saving.relative, trained.classifier)


def _run_compare_and_finish(
    run: TrainingRun,
    project: Project,
    version: ModelVersion,
    snapshot: LabelSnapshot,
    trained: _Trained,
    active: ModelVersion | None,
    saving: _ArtifactSave,
    progress: _Progress,
    started: float,
) -> None:
    # The other lane may switch models while this one trains (a head refit during a fine-tune, or the
    # fine-tune ending during a refit): compare with whatever serves now, and again if it changes meanwhile.
    for attempt in range(1, OVERTAKEN_ATTEMPTS + 1):
        if attempt > 1:
            active = ModelVersion.objects.filter(project=project, status=VersionStatus.ACTIVE).first()
        progress.phase("Comparing with the active model", "compare")
        comparison = _compare_with_active(project, snapshot, trained.metrics, active)
        promote, reason = promotion_decision(
            policy=project.promotion_policy, has_active=active is not None, comparison=comparison
        )
        pool = None
        if promote:
            progress.phase("Scoring the queue", "score_pool")
            pool = _pool_scores(
                project,
                trained.classifier,
                version.number,
                labelled_embeddings=trained.labelled_embeddings,
                examples_per_label=version_examples_per_label(version),
                progress=progress,
            )
        progress.phase("Switching models" if promote else "Finishing", "switch")
        try:
            _run_finish(
                run=run,
                version=version,
                classifier=trained.classifier,
                metrics={**trained.metrics, "comparison": {**comparison, "promoted": promote, "reason": reason}},
                artifact=saving,
                promote_over=active if promote else None,
                pool=pool,
                duration=time.monotonic() - started,
                progress=progress,
                retry_if_overtaken=attempt < OVERTAKEN_ATTEMPTS,
            )
            return
        except _Overtaken:
            continue


class _Overtaken(Exception):
    """Another model started serving between this run's comparison and its switch."""


# Comparisons a finished run makes when other runs keep switching models under it, before it gives up.
OVERTAKEN_ATTEMPTS = 3


def _version_create(run: TrainingRun, project: Project, snapshot: LabelSnapshot, args: TrainingArgs) -> ModelVersion:
    with transaction.atomic():
        _state_lock(project.pk)
        number = (ModelVersion.objects.filter(project=project).aggregate(m=Max("number"))["m"] or 0) + 1
        version = ModelVersion.objects.create(
            project=project,
            number=number,
            status=VersionStatus.TRAINING,
            kind=run.kind,
            taxonomy_version=snapshot.taxonomy_version,
            label_keys=snapshot.label_keys,
            labels=snapshot.labels,
            training_args=args.to_dict(),
            base_model=base_model_for(project) or "",
            train_label_count=len(snapshot.train_ids),
            train_label_counts=snapshot.examples_per_label(),
            eval_label_count=len(snapshot.eval_ids),
        )
        TrainingRun.objects.filter(pk=run.pk).update(model_version=version)
    return version


def _train_fast(
    project: Project,
    snapshot: LabelSnapshot,
    args: TrainingArgs,
    active: ModelVersion | None,
    progress: _Progress,
) -> _Trained:
    """Refit the head on cached embeddings of the serving body (the base body before any model)."""
    progress.phase("Loading the model body", "load")
    holder = _held_classifier(active, project)
    classifier = _classifier_on_body(holder, snapshot.label_keys, snapshot.multi_label, args)
    needed = np.concatenate([snapshot.train_ids, snapshot.eval_ids])
    progress.phase("Embedding labeled documents", "embed_labeled", total=len(needed))
    embeddings = embeddings_for(
        project_id=project.pk,
        body_id=classifier.body_id,
        document_ids=needed,
        encode=holder.encode,
        progress=progress,
    )
    n_train = len(snapshot.train_ids)
    progress.phase("Fitting the classifier head", "fit_head")
    anchors = _label_anchors(snapshot, args, holder.encode, holder.body_id)
    classifier.fit_head(embeddings[:n_train], snapshot.train_targets, anchors=anchors)
    progress.phase("Evaluating", "evaluate")
    metrics = _evaluate(classifier, embeddings[n_train:], snapshot)
    reference = (
        ModelVersion.objects.filter(project=project, body_id=classifier.body_id)
        .exclude(artifact_path="")
        .order_by("-number")
        .first()
    )
    return _Trained(classifier, metrics, reference, embeddings[:n_train])


def _train_slow(
    project: Project, snapshot: LabelSnapshot, args: TrainingArgs, progress: _Progress, run_id: int
) -> _Trained:
    """Fine-tune a fresh body from the base model (capped), re-embed the pool under it, fit the head."""
    progress.phase("Loading the base model", "load")
    classifier = Classifier.create(snapshot.label_keys, snapshot.multi_label, base_model_for(project), args)
    texts_by_id = dict(Document.objects.filter(pk__in=snapshot.train_ids.tolist()).values_list("pk", "text").iterator())
    texts = [texts_by_id[int(pk)] for pk in snapshot.train_ids]
    progress.phase("Fine-tuning the body", "fine_tune", total=args.max_steps)
    classifier.fine_tune_body(
        texts, snapshot.train_targets, progress_callback=progress, checkpoint=fine_tune_checkpoint(run_id)
    )
    pool_ids, _keys, reserved = queued_pool(project)
    needed = np.concatenate([snapshot.train_ids, snapshot.eval_ids, pool_ids[~reserved]])
    progress.phase("Embedding documents with the new body", "embed", total=len(needed))

    def waiting_for_spark(count: int) -> None:
        progress.phase(
            f"Waiting for {count:,} embeddings from Spark: manage.py export_pool {project.pk} --reembedding "
            "(docs/scale.md)",
            "embed_spark",
            total=len(needed),
        )

    embeddings = embeddings_shared(
        project_id=project.pk,
        run_id=run_id,
        classifier=classifier,
        document_ids=needed,
        progress=progress,
        waiting_for_spark=waiting_for_spark,
    )
    n_train, n_eval = len(snapshot.train_ids), len(snapshot.eval_ids)
    progress.phase("Fitting the classifier head", "fit_head")
    anchors = _label_anchors(snapshot, args, classifier.encode, classifier.body_id)
    classifier.fit_head(embeddings[:n_train], snapshot.train_targets, anchors=anchors)
    progress.phase("Evaluating", "evaluate")
    metrics = _evaluate(classifier, embeddings[n_train : n_train + n_eval], snapshot)
    return _Trained(classifier, metrics, None, embeddings[:n_train])


# The labels' texts as encoded by a body, by (body id, texts). A fast run refits the head every few labels and
# the texts seldom change, so a worker encodes them once per body rather than on every run.
_anchor_vectors: OrderedDict[tuple[str, tuple[str, ...]], np.ndarray] = OrderedDict()
ANCHOR_VECTORS_KEPT = 16


def _label_anchors(
    snapshot: LabelSnapshot, args: TrainingArgs, encode: Callable[[list[str]], np.ndarray], body_id: str
) -> tuple[np.ndarray, np.ndarray] | None:
    """The labels' own texts as extra training rows (encoded by the body the head is fitted on), or None."""
    if args.anchor_copies <= 0:
        return None
    texts = label_texts([label["id"] for label in snapshot.labels])
    key = (body_id, tuple(text.text() for text in texts))
    vectors = _anchor_vectors.get(key)
    if vectors is None:
        vectors = encode_label_texts(texts, encode)
        vectors.flags.writeable = False  # shared by later runs
        _anchor_vectors[key] = vectors
        while len(_anchor_vectors) > ANCHOR_VECTORS_KEPT:
            _anchor_vectors.popitem(last=False)
    _anchor_vectors.move_to_end(key)
    return anchor_rows(vectors, snapshot.multi_label)


def _evaluate(classifier: Classifier, embeddings: np.ndarray, snapshot: LabelSnapshot) -> dict[str, Any]:
    """learning.ml.metrics.evaluate on the evaluation set, or an empty record when nothing is reserved yet."""
    if not len(snapshot.eval_ids):
        return {"n_documents": 0, "macro_f1": None, "micro_f1": None}
    predicted = classifier.decide(classifier.predict_proba_embeddings(embeddings))
    return evaluate(snapshot.eval_targets, predicted, snapshot.label_keys, snapshot.multi_label)


def _compare_with_active(
    project: Project, snapshot: LabelSnapshot, metrics: dict[str, Any], active: ModelVersion | None
) -> dict[str, Any]:
    """Both models' macro-F1 on today's evaluation set (the active one is measured again, not remembered)."""
    comparison: dict[str, Any] = {"new_macro_f1": metrics.get("macro_f1"), "n_documents": len(snapshot.eval_ids)}
    if active is None:
        return comparison
    comparison["active_version"] = active.number
    if not len(snapshot.eval_ids) or active.label_keys != snapshot.label_keys:
        comparison["comparable"] = False
        return comparison
    holder = _held_classifier(active, project)
    embeddings = embeddings_for(
        project_id=project.pk, body_id=active.body_id, document_ids=snapshot.eval_ids, encode=holder.encode
    )
    predicted = holder.decide(holder.predict_proba_embeddings(embeddings))
    active_metrics = evaluate(snapshot.eval_targets, predicted, snapshot.label_keys, snapshot.multi_label)
    comparison["active_macro_f1"] = active_metrics["macro_f1"]
    comparison["comparable"] = True
    return comparison


def promotion_decision(*, policy: str, has_active: bool, comparison: dict[str, Any]) -> tuple[bool, str]:
    """Whether a freshly trained version should start serving, and why, under the project's policy."""
    Policy = Project.PromotionPolicy
    if policy == Policy.MANUAL:
        return False, "The project's policy leaves promotion to an admin."
    if not has_active:
        return True, "First model of the project."
    if policy == Policy.ALWAYS:
        return True, "The project's policy promotes every ready model."
    if not comparison.get("comparable"):
        if not comparison.get("n_documents"):
            return True, "No evaluation labels yet, so nothing to compare; promoted."
        return True, "The taxonomy changed since the active model, so the two cannot be compared; promoted."
    new, old = comparison["new_macro_f1"], comparison["active_macro_f1"]
    n, active = comparison["n_documents"], comparison["active_version"]
    same = f"on the same {n} evaluation documents"
    if new + 1e-9 >= old:
        return True, f"Macro-F1 {new:.3f} is not worse than {old:.3f} of v{active} {same}."
    return False, f"Macro-F1 {new:.3f} is worse than {old:.3f} of the active v{active} {same}."


class _ArtifactSave:
    """A model being saved under its final path (`relative`, known at once) on a thread of its own.

    `result()` waits for it and raises what the save raised; `wait()` only waits (the run's own error, if any,
    is the one to report). A run waits in any case before it ends, so no file is written after it.
    """

    def __init__(
        self, classifier: Classifier, project: Project, version: ModelVersion, reference: ModelVersion | None
    ) -> None:
        self.relative = Path("models") / str(project.pk) / f"v{version.number}-{uuid.uuid4().hex[:8]}"
        self.seconds = 0.0
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._save, args=(classifier, reference), name=f"save-model-v{version.number}", daemon=True
        )
        self._thread.start()

    def _save(self, classifier: Classifier, reference: ModelVersion | None) -> None:
        started = time.monotonic()
        try:
            _artifact_save(classifier, self.relative, reference)
        except BaseException as error:  # handed to the run's thread by result()
            self._error = error
        finally:
            self.seconds = round(time.monotonic() - started, 3)

    def wait(self) -> None:
        self._thread.join()

    def result(self) -> str:
        self.wait()
        if self._error is not None:
            raise self._error
        return str(self.relative)


def _artifact_save(classifier: Classifier, relative: Path, reference: ModelVersion | None) -> None:
    """Save in SetFit's format under ARTIFACT_DIR; the directory appears whole (written aside, then renamed)."""
    final = artifact_root() / relative
    scratch = final.with_name(final.name + ".partial")
    try:
        classifier.save(scratch)
        if reference is not None and reference.artifact_dir is not None:
            _link_identical_files(scratch, reference.artifact_dir)
        os.replace(scratch, final)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise


def _link_identical_files(directory: Path, reference: Path) -> None:
    """Hard-link large files equal to the reference's (the 90 MB body of a head-only refit) to save disk."""
    if not reference.is_dir():
        return
    for path in directory.rglob("*"):
        twin = reference / path.relative_to(directory)
        if not path.is_file() or not twin.is_file():
            continue
        size = path.stat().st_size
        if size < LINK_MIN_BYTES or size != twin.stat().st_size or not filecmp.cmp(path, twin, shallow=False):
            continue
        link = path.with_name(path.name + ".link")
        try:
            os.link(twin, link)
            os.replace(link, path)
        except OSError:  # another file system: keep the copy
            link.unlink(missing_ok=True)


def _run_finish(
    *,
    run: TrainingRun,
    version: ModelVersion,
    classifier: Classifier,
    metrics: dict[str, Any],
    artifact: _ArtifactSave,
    promote_over: ModelVersion | None,
    pool: PoolScores | None,
    duration: float,
    progress: _Progress,
    retry_if_overtaken: bool = False,
) -> None:
    """One transaction: the version becomes ready (or active, with the whole queue rescored), the run succeeds.

    When another model started serving since the comparison, raises _Overtaken (nothing written) if the
    caller will compare again, else finishes without promoting.
    """
    with transaction.atomic():
        state = _state_lock(run.project_id)
        current = TrainingRun.objects.select_for_update().get(pk=run.pk)
        if current.status != RunStatus.RUNNING or current.celery_task_id != run.celery_task_id:
            raise RunAbandoned(f"training run {run.pk} is no longer this worker's")
        active_now = ModelVersion.objects.filter(project_id=run.project_id, status=VersionStatus.ACTIVE).first()
        promote = pool is not None and (active_now.pk if active_now else None) == (
            promote_over.pk if promote_over else None
        )
        if pool is not None and not promote and retry_if_overtaken:
            raise _Overtaken
        if pool is not None and not promote:
            metrics["comparison"]["promoted"] = False
            metrics["comparison"]["reason"] = "Another model was switched to while this one trained; not promoted."
        now = timezone.now()
        version.status = VersionStatus.READY
        version.artifact_path = str(artifact.relative)
        version.body_id = classifier.body_id
        version.training_args = {**classifier.args.to_dict(), "kind": version.kind}
        version.metrics = metrics
        version.macro_f1 = metrics.get("macro_f1")
        version.micro_f1 = metrics.get("micro_f1")
        version.duration_seconds = round(duration, 3)
        version.finished_at = now
        version.save(
            update_fields=[
                "status",
                "artifact_path",
                "body_id",
                "training_args",
                "metrics",
                "macro_f1",
                "micro_f1",
                "duration_seconds",
                "finished_at",
            ]
        )
        if promote:
            _switch(
                project=state.project,
                version=version,
                actor=None,
                action="model.promote",
                reason=metrics["comparison"]["reason"],
            )
            _priorities_write(run.project_id, pool)
        current.status = RunStatus.SUCCEEDED
        current.finished_at = now
        current.phase = "Promoted" if promote else "Ready, not promoted"
        current.progress_done = current.progress_total
        current.save(update_fields=["status", "finished_at", "phase", "progress_done"])
        _kick_follow_up_on_commit(run.project_id, run.kind)
        artifact.result()  # the model's files are in place before anyone may load them: else nothing is committed
    progress.close()
