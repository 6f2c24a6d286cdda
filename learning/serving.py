"""Models loaded for serving predictions: one per (project, version) in each web process, swapped atomically.

The active version is asked of the database on every call (one indexed query, or a column of the query that
read the project), so a promotion or rollback made by any process is picked up by every process on its next
request. A new version is loaded completely
before one dict entry is replaced under a lock; requests already holding the old `ServedModel` finish with
it, and requests that arrive while the new one loads keep getting the old one rather than waiting, so a swap
never fails or stalls a request. Only a process with no model for the project yet waits for the first load.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import Histogram

from learning import selectors
from learning.ml.classifier import Classifier
from learning.models import ModelVersion

logger = logging.getLogger(__name__)

SERVABLE = (ModelVersion.Status.ACTIVE, ModelVersion.Status.READY, ModelVersion.Status.RETIRED)
PINNED_KEPT = 2
"""Pinned (non-active) versions kept loaded per process; each MiniLM model costs ~100 MB."""
PREDICT_BATCH = 32
PREDICT_SECONDS = Histogram(
    "docket_predict_seconds",
    "Time the model took to answer one prediction request (all its texts), by project and model version.",
    ["project", "model_version"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


ASK = object()
"""`active_number` not given: ask the database for the active version."""


class NoModelReady(Exception):
    """The project has no version that can predict (none trained yet, or the pinned one cannot serve)."""


class UnknownModelVersion(Exception):
    """A pinned version number the project does not have."""


@dataclass
class ServedModel:
    """A loaded model and what a prediction must report about it. Thread-safe to share."""

    project_id: int
    number: int
    taxonomy_version: int
    label_keys: list[str]
    multi_label: bool
    classifier: Any
    # Fast tokenizers refuse concurrent use of one instance ("Already borrowed"), and inference already uses
    # every core, so one prediction at a time per model and process costs nothing and fails nothing.
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def predict_proba(self, texts: Sequence[str], batch_size: int = PREDICT_BATCH) -> np.ndarray:
        """(n, n_labels) probabilities in `label_keys` order; texts are encoded `batch_size` at a time."""
        started = time.perf_counter()
        with self._lock:
            probabilities = self.classifier.predict_proba(list(texts), batch_size=batch_size)
        PREDICT_SECONDS.labels(project=str(self.project_id), model_version=str(self.number)).observe(
            time.perf_counter() - started
        )
        return probabilities

    def decide(self, probabilities: np.ndarray) -> list[list[str]]:
        """Predicted label keys per row: the argmax, or (multi-label) every label at or above its threshold.

        Thresholds are folded into the saved heads, so 0.5 is each label's decision point.
        """
        if self.multi_label:
            return [[self.label_keys[j] for j in np.flatnonzero(row >= 0.5)] for row in probabilities]
        return [[self.label_keys[int(np.argmax(row))]] for row in probabilities]


Loader = Callable[[Path], Any]


class ModelCache:
    def __init__(self, loader: Loader | None = None) -> None:
        self._loader = loader or (lambda path: Classifier.load(path))
        self._active: dict[int, ServedModel] = {}
        self._pinned: OrderedDict[tuple[int, int], ServedModel] = OrderedDict()
        self._load_locks: dict[tuple[int, int], threading.Lock] = {}
        self._guard = threading.Lock()

    def active(self, project: Any, *, active_number: int | None | object = ASK) -> ServedModel:
        """The project's active model, loading it (once per process) when the active version changed.

        A caller that read the active version's number with the project (`selectors.serving_columns`) passes
        it as `active_number` (None: no active version), which saves the query while the loaded model is it.
        """
        version = selectors.active_model_version(project) if active_number is ASK else None
        number = version.number if version is not None else (None if active_number is ASK else active_number)
        if number is None:
            raise NoModelReady(f"{project} has no active model yet; it needs more labels or a training run.")
        current = self._active.get(project.pk)
        if current is not None and current.number == number:
            return current
        if version is None:  # a new active version: read its row (its files) before loading it
            version = selectors.active_model_version(project)
            if version is None:
                raise NoModelReady(f"{project} has no active model yet; it needs more labels or a training run.")
            if current is not None and current.number == version.number:
                return current
        lock = self._lock_for(project.pk, version.number)
        if current is not None and not lock.acquire(blocking=False):
            return current  # another thread is loading the new version: keep serving the old one meanwhile
        if current is None:
            lock.acquire()
        try:
            current = self._active.get(project.pk)
            if current is not None and current.number == version.number:
                return current
            served = self._load(version)
            self._active[project.pk] = served  # the swap: one reference, replaced whole
            logger.info("Serving model v%s for project %s", served.number, project.pk)
            return served
        finally:
            lock.release()

    def version(self, project: Any, number: int) -> ServedModel:
        """A pinned version (the active one is shared with `active`); a few are kept, least recently used go."""
        current = self._active.get(project.pk)
        if current is not None and current.number == number:
            return current
        with self._guard:
            served = self._pinned.get((project.pk, number))
            if served is not None:
                self._pinned.move_to_end((project.pk, number))
                return served
        version = selectors.model_version_by_number(project, number)
        if version is None:
            raise UnknownModelVersion(f"{project} has no model version {number}.")
        if version.pruned_at is not None:
            raise NoModelReady(f"The files of model version {number} were pruned on {version.pruned_at:%Y-%m-%d}.")
        if version.status not in SERVABLE or not version.artifact_path:
            raise NoModelReady(f"Model version {number} is {version.get_status_display().lower()}; it cannot predict.")
        if version.status == ModelVersion.Status.ACTIVE:
            return self.active(project)
        with self._lock_for(project.pk, number):
            with self._guard:
                served = self._pinned.get((project.pk, number))
            if served is None:
                served = self._load(version)
                with self._guard:
                    self._pinned[(project.pk, number)] = served
                    while len(self._pinned) > PINNED_KEPT:
                        self._pinned.popitem(last=False)
            return served

    def loaded_versions(self) -> dict[int, int]:
        """{project id: version number} of the active models this process holds (what /readyz reports)."""
        return {project_id: served.number for project_id, served in list(self._active.items())}

    def clear(self) -> None:
        with self._guard:
            self._active.clear()
            self._pinned.clear()

    def _lock_for(self, project_id: int, number: int) -> threading.Lock:
        with self._guard:
            return self._load_locks.setdefault((project_id, number), threading.Lock())

    def _load(self, version: ModelVersion) -> ServedModel:
        path = version.artifact_dir
        if path is None or not Path(path).exists():
            raise NoModelReady(f"The files of model version {version.number} are missing from artifact storage.")
        classifier = self._loader(Path(path))
        labels = list(getattr(classifier, "labels", None) or version.label_keys)
        return ServedModel(
            project_id=version.project_id,
            number=version.number,
            taxonomy_version=version.taxonomy_version,
            label_keys=labels,
            multi_label=bool(getattr(classifier, "multi_label", False)),
            classifier=classifier,
        )


models = ModelCache()
"""This process's cache; the web process and the benchmark share it."""


def served_model(project: Any, *, number: int | None = None, active_number: int | None | object = ASK) -> ServedModel:
    """The model that answers a prediction: the active one, or the pinned version `number`.

    `active_number`: the active version's number when the caller read it with the project (see `ModelCache.active`).
    """
    return models.active(project, active_number=active_number) if number is None else models.version(project, number)
