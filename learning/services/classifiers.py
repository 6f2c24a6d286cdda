"""Classifiers held by this worker process (loading a body costs about a second), and a new head on a held body."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

from annotation.models import Project
from learning.ml.classifier import Classifier, TrainingArgs
from learning.models import ModelVersion
from learning.services.projects import base_model_for

# Loading a body costs about a second; the fast loop reuses the active model's and the base model's.
_held: OrderedDict[str, Classifier] = OrderedDict()
HELD_CLASSIFIERS = 2


def _held_classifier(version: ModelVersion | None, project: Project) -> Classifier:
    """A loaded classifier to encode and predict with; never fitted in place (shared across runs)."""
    if version is not None:
        key = _version_key(version.artifact_dir)
    else:
        key = f"base:{base_model_for(project) or ''}:{project.multi_label}"
    if key in _held:
        _held.move_to_end(key)
        return _held[key]
    if version is not None:
        classifier = Classifier.load(version.artifact_dir)
    else:
        # The labels do not matter for encoding; a classifier needs two of them to exist.
        classifier = Classifier.create(["a", "b"], project.multi_label, base_model_for(project))
    _hold(key, classifier)
    return classifier


def _held_classifier_keep(artifact_dir: Path, classifier: Classifier) -> None:
    """Hold a classifier this worker has just trained and saved in `artifact_dir`, as if loaded from there.

    The next fast run starts from the model the last one made active: it finds it held instead of loading it
    again from disk (a tenth of a second a round). Only for heads refitted on a held body: what was saved is
    exactly what is in memory, and the classifier is not fitted again afterwards.
    """
    _hold(_version_key(artifact_dir), classifier)


def _version_key(artifact_dir: Path | None) -> str:
    return f"version:{artifact_dir}"


def _hold(key: str, classifier: Classifier) -> None:
    _held[key] = classifier
    _held.move_to_end(key)
    while len(_held) > HELD_CLASSIFIERS:
        _held.popitem(last=False)


def _classifier_on_body(source: Classifier, labels: list[str], multi_label: bool, args: TrainingArgs) -> Classifier:
    """A new, untrained classifier sharing `source`'s body (read-only on the fast path), for these labels.

    Adapter over learning.ml: it has no call for "same body, new head and label set", so this builds the
    SetFitModel the way `Classifier.create` does and keeps the source's body id for the embedding cache.
    """
    from setfit import SetFitModel

    model = SetFitModel(
        model_body=source.setfit_model.model_body,
        model_head=None,
        multi_target_strategy="one-vs-rest" if multi_label else None,
        normalize_embeddings=source.setfit_model.normalize_embeddings,
        labels=list(labels),
    )
    return Classifier(
        model,
        labels=labels,
        multi_label=multi_label,
        args=args,
        base_model=source.base_model,
        body_id=source.body_id,
    )
