"""The evaluation set: a random share of the documents reserved to measure models on, and where those documents
sit in the queue; also the project's learning lock that switches and claims queue up on.
"""

from __future__ import annotations

import numpy as np
from django.db import transaction

from annotation.models import Document, Project
from learning.models import EvaluationReservation, LearningState


def _state_lock(project_id: int) -> LearningState:
    """The project's learning row, locked until the transaction ends: switches and claims queue up here."""
    LearningState.objects.get_or_create(project_id=project_id)
    return LearningState.objects.select_for_update().get(project_id=project_id)


def evaluation_reserve(*, project: Project) -> int:
    """Give every document not yet considered its chance of joining the evaluation set; returns how many joined.

    A random `eval_fraction` of the documents is reserved, imported labeled ones included. A document the
    learner already scored and a reviewer labeled is never reserved: it was chosen, not drawn at random.
    """
    with transaction.atomic():
        state = _state_lock(project.pk)
        new = (
            Document.objects.filter(project=project, pk__gt=state.reserved_through_document_id)
            .order_by("pk")
            .values_list("pk", "status", "queue_priority__model_version")
        )
        rows = list(new)
        if not rows:
            return 0
        eligible = [pk for pk, status, scored_by in rows if status == Document.Status.QUEUED or scored_by is None]
        rng = np.random.default_rng()
        # Randomised rounding keeps the expected share exact even when documents arrive a few at a time.
        count = min(len(eligible), int(np.floor(project.eval_fraction * len(eligible) + rng.random())))
        chosen = rng.choice(np.asarray(eligible, dtype=np.int64), size=count, replace=False) if count else []
        EvaluationReservation.objects.bulk_create(
            [EvaluationReservation(document_id=int(pk), project=project) for pk in chosen], ignore_conflicts=True
        )
        state.reserved_through_document_id = rows[-1][0]
        state.save(update_fields=["reserved_through_document_id"])
    return len(chosen)


def interleaved_scores(n_learner: int, n_evaluation: int, eval_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Queue scores (higher first) for documents in the learner's order and evaluation documents in theirs.

    Positions are rank-based: an evaluation document comes about every 1/eval_fraction places, so the
    evaluation set is labeled at that rate, in random order, whatever the model thinks of it.
    """
    learner_positions = (np.arange(n_learner) + 1.0) / max(1.0 - eval_fraction, 1e-9)
    if eval_fraction > 0:
        # Half a slot off the learner's grid, so the two never tie.
        evaluation_positions = (np.arange(n_evaluation) + 0.5) / eval_fraction + 1e-6
    else:
        evaluation_positions = n_learner + 1.0 + np.arange(n_evaluation)
    last = max(learner_positions.max(initial=0.0), evaluation_positions.max(initial=0.0))
    return 1.0 - learner_positions / (last + 1.0), 1.0 - evaluation_positions / (last + 1.0)
