"""Pool-based active-learning simulation on any labelled JSONL file, with the live loop's own code.

The labels are known in advance, so the "reviewer" is the file: from a seed set, each round fits the
classifier head (`Classifier.fit_head`, the live fast path), scores the unlabelled pool, asks a query
strategy (`learning.ml.strategies`) for the next `step` documents and reveals their labels, until the
budget is spent. Every round is evaluated on the held-out test rows. Several strategies run over several
seeds; a seed fixes the seed set, so strategies are compared on the same start (paired).

With `folds` and a `group_field` (e.g. policy) the held-out test rows are never touched: the training rows'
groups are dealt into K folds, and each fold is evaluated on its own groups with the other folds' rows as
the pool (policy-grouped cross-validation). Every choice is made on those figures; the test split is for
one confirmation at the end. With label texts (`label_descriptions`), the taxonomy's own words give a
zero-shot point at 0 labels and, with `anchor_copies`, extra rows in every head fit, as in the live loop.

Outputs under `out/`: curves.csv, learning_curves.png, summary.json and summary.md.
"""

from __future__ import annotations

import csv
import json
import math
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from learning.ml.classifier import THRESHOLD_RULES, Classifier, TrainingArgs
from learning.ml.coldstart import COLD_STARTS, cold_start
from learning.ml.embeddings import EmbeddingCache
from learning.ml.exceptions import NotEnoughLabels
from learning.ml.label_descriptions import (
    LabelText,
    anchor_rows,
    encode_label_texts,
    label_texts_from_file,
    zero_shot_probabilities,
)
from learning.ml.metrics import f1_scores
from learning.ml.strategies import get_strategy, labelled_counts

BASELINE = "random"


@dataclass
class LabelledCorpus:
    """A labelled JSONL file in memory: texts, encoded targets and which rows are held out for testing."""

    ids: list[str]
    texts: list[str]
    labels: list[str]
    targets: np.ndarray
    multi_label: bool
    test_mask: np.ndarray
    split_source: str
    skipped_unlabelled: int = 0
    groups: np.ndarray | None = None
    """The group of each row (e.g. its policy) when a group field was given: folds and per-group figures."""

    @property
    def train_indices(self) -> np.ndarray:
        return np.flatnonzero(~self.test_mask)

    @property
    def test_indices(self) -> np.ndarray:
        return np.flatnonzero(self.test_mask)


@dataclass
class SimulationConfig:
    """One simulation: which file, which strategies, how many labels and seeds, where results go."""

    data: Path
    out: Path
    strategies: Sequence[str] = ("margin", BASELINE)
    seed_size: int = 20
    step: int = 20
    budget: int = 400
    seeds: int = 3
    seed_offset: int = 0
    """Seeds run are seed_offset .. seed_offset + seeds - 1; an offset gives fresh seeds for a confirmation run."""
    split_field: str = "split"
    group_field: str | None = None
    test_fraction: float = 0.25
    multi_label: bool | None = None
    """None: multi-label when any row carries more than one label."""
    cold_start: str = "random"
    """How the seed set is drawn: "random" (the usual baseline) or "diverse" (k-means on embeddings)."""
    base_model: str | None = None
    cache_dir: Path = Path("var/cache/embeddings")
    report_at: Sequence[int] = (100, 200, 400)
    folds: int | None = None
    """Policy-grouped cross-validation over the training rows (needs group_field); None: the test split."""
    label_descriptions: Path | None = None
    """Taxonomy JSON with each label's name, description and guideline: zero-shot point and anchors."""
    slow_every: int | None = None
    """Replay the slow path: fine-tune the body every this many labels (the project's slow_retrain_every)."""
    slow_steps: int = 20
    """Cap on each replayed fine-tune's steps (the live default is 100; ~3-8 s a step on two cores)."""
    training_args: TrainingArgs = field(default_factory=TrainingArgs)
    show_progress: bool = True
    threads: int | None = 1
    """BLAS/OpenMP threads for the head fits; 1 is fastest on a small shared machine (no spinning threads)."""
    workers: int = 1
    """Curves run side by side in this many forked processes (each with `threads`); the figures are the same."""

    def label_counts(self) -> list[int]:
        """Labelled-set sizes at which the classifier is evaluated: seed, seed+step, ..., budget."""
        if self.seed_size < 1 or self.step < 1 or self.budget < self.seed_size:
            raise ValueError("need seed_size >= 1, step >= 1 and budget >= seed_size")
        counts = list(range(self.seed_size, self.budget + 1, self.step))
        if counts[-1] != self.budget:
            counts.append(self.budget)
        return counts

    def check(self) -> None:
        """Refuse inconsistent options before any work."""
        if self.folds is not None:
            if self.folds < 2:
                raise ValueError("cross-validation needs at least 2 folds")
            if not self.group_field:
                raise ValueError("cross-validation needs --group-field (e.g. policy) so no group straddles folds")


@dataclass
class CurvePoint:
    strategy: str
    seed: int
    n_labels: int
    macro_f1: float
    micro_f1: float
    fold: int = 0
    """Cross-validation fold (0 on the test split); a run is one (fold, seed)."""


@dataclass
class Fold:
    """One evaluation of the loop: which rows form the pool and which are held out to score it."""

    index: int
    pool: np.ndarray
    test: np.ndarray


@dataclass
class SimulationResult:
    config: SimulationConfig
    corpus: LabelledCorpus
    points: list[CurvePoint]
    summary: dict[str, Any]
    out: Path

    @property
    def summary_markdown(self) -> str:
        return summary_markdown(self.summary)


# -- data ---------------------------------------------------------------------------------------------------


def load_corpus(
    path: str | Path,
    *,
    split_field: str = "split",
    group_field: str | None = None,
    test_fraction: float = 0.25,
    multi_label: bool | None = None,
    seed: int = 0,
) -> LabelledCorpus:
    """Read JSONL rows with `text` and `labels` (list) or `label` (string).

    Test rows are those whose `split_field` is "test"; when no row has that field, a seeded random split
    holds out `test_fraction`, grouped by `group_field` when given (so one policy never straddles both).
    Rows without any label are skipped and counted.
    """
    rows = []
    skipped = 0
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            if "text" not in row:
                raise ValueError(f"{path}:{number}: row has no 'text'")
            names = row.get("labels", row.get("label"))
            names = [names] if isinstance(names, str) else list(names or [])
            if not names:
                skipped += 1
                continue
            row["_labels"] = names
            row.setdefault("id", str(number))
            rows.append(row)
    if not rows:
        raise ValueError(f"{path} has no labelled rows")
    detected = any(len(row["_labels"]) > 1 for row in rows)
    multi = detected if multi_label is None else multi_label
    if not multi and detected:
        raise ValueError(f"{path} has rows with several labels; a single-label run needs one label per row")
    labels = sorted({name for row in rows for name in row["_labels"]})
    if multi:
        position = {label: j for j, label in enumerate(labels)}
        targets = np.zeros((len(rows), len(labels)), dtype=np.int64)
        for i, row in enumerate(rows):
            targets[i, [position[name] for name in row["_labels"]]] = 1
    else:
        position = {label: j for j, label in enumerate(labels)}
        targets = np.array([position[row["_labels"][0]] for row in rows], dtype=np.int64)

    if any(split_field in row for row in rows):
        test_mask = np.array([row.get(split_field) == "test" for row in rows])
        if not test_mask.any() or test_mask.all():
            raise ValueError(f"field '{split_field}' must mark some rows, not all, as 'test'")
        source = f"field '{split_field}'"
    else:
        test_mask = _random_split(rows, group_field, test_fraction, seed)
        source = f"seeded random {test_fraction:.0%}" + (f" grouped by '{group_field}'" if group_field else "")
    return LabelledCorpus(
        ids=[str(row["id"]) for row in rows],
        texts=[row["text"] for row in rows],
        labels=labels,
        targets=targets,
        multi_label=multi,
        test_mask=test_mask,
        split_source=source,
        skipped_unlabelled=skipped,
        groups=np.array([str(row.get(group_field)) for row in rows]) if group_field else None,
    )


def grouped_folds(corpus: LabelledCorpus, k: int) -> list[Fold]:
    """K folds over the training rows' groups: each fold's test rows come from groups no other fold has.

    Groups are shuffled with a fixed seed and dealt, largest first, to the fold with the fewest rows so far,
    so folds are about equal in rows and the same file always gives the same folds. The test split's rows
    are in no fold.
    """
    if corpus.groups is None:
        raise ValueError("grouped folds need the rows' groups (load the corpus with a group_field)")
    train = corpus.train_indices
    groups = corpus.groups[train]
    names, sizes = np.unique(groups, return_counts=True)
    if len(names) < k:
        raise ValueError(f"{len(names)} groups cannot fill {k} folds")
    order = np.random.default_rng(0).permutation(len(names))
    order = order[np.argsort(-sizes[order], kind="stable")]
    fold_of_group: dict[str, int] = {}
    load = np.zeros(k, dtype=np.int64)
    for g in order:
        target = int(np.argmin(load))
        fold_of_group[str(names[g])] = target
        load[target] += sizes[g]
    fold_of_row = np.array([fold_of_group[str(g)] for g in groups])
    return [Fold(index=f, pool=train[fold_of_row != f], test=train[fold_of_row == f]) for f in range(k)]


def evaluation_folds(corpus: LabelledCorpus, folds: int | None) -> list[Fold]:
    """The grouped cross-validation folds, or the one test split when `folds` is None."""
    if folds is None:
        return [Fold(index=0, pool=corpus.train_indices, test=corpus.test_indices)]
    return grouped_folds(corpus, folds)


def _random_split(rows: list[dict[str, Any]], group_field: str | None, fraction: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if group_field:
        groups = sorted({str(row.get(group_field)) for row in rows})
        n_test = max(1, round(fraction * len(groups)))
        test_groups = set(rng.choice(groups, size=n_test, replace=False).tolist())
        return np.array([str(row.get(group_field)) in test_groups for row in rows])
    mask = np.zeros(len(rows), dtype=bool)
    mask[rng.choice(len(rows), size=max(1, round(fraction * len(rows))), replace=False)] = True
    return mask


def corpus_embeddings(
    corpus: LabelledCorpus,
    classifier: Classifier,
    cache_dir: str | Path,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Embeddings of every text with the classifier's current body, encoded once and cached on disk."""
    cache = EmbeddingCache(cache_dir)
    return cache.get_or_compute(
        corpus.texts, classifier.body_id, lambda texts: classifier.encode(texts, progress_callback=progress)
    )


# -- the loop -----------------------------------------------------------------------------------------------


def simulate_run(
    corpus: LabelledCorpus,
    embeddings: np.ndarray,
    classifier: Classifier,
    strategy_name: str,
    seed: int,
    label_counts: Sequence[int],
    *,
    cold_start_name: str = "random",
    on_round: Callable[[], None] | None = None,
    fold: Fold | None = None,
    label_vectors: np.ndarray | None = None,
    keep_predictions_at: Sequence[int] = (),
    predictions: dict[tuple[str, int, int, int], np.ndarray] | None = None,
    slow: SlowLoop | None = None,
    label_texts: Sequence[LabelText] | None = None,
) -> list[CurvePoint]:
    """One learning curve: one strategy from one seed set, evaluated at each of `label_counts`.

    With `slow`, the live loop's slow path is replayed too: whenever the labelled set has grown by
    `slow.every` since the last fine-tune, a fresh body is fine-tuned from the base on the labelled texts
    (capped at `slow.steps` steps), every text is re-embedded with it (cached on disk by body id), and the
    following head fits use those embeddings, as the live fast path uses the active model's body.

    `strategy_name` may carry its own cold start as "name@cold_start" (e.g. "diverse@diverse").
    `fold` picks pool and test rows (default: the corpus's split). With `label_vectors` (one embedding per
    label's own text) the curve starts with the zero-shot point at 0 labels, the cold start "zero_shot" may
    pick the seed set by the strategy on zero-shot probabilities, and every head gets the labels' texts as
    anchors when the classifier's `anchor_copies` > 0. Test-row predictions at `keep_predictions_at` go
    into `predictions`, keyed (strategy, fold, seed, n_labels), for per-group figures.
    """
    strategy_key, cold_start_name = parse_strategy_spec(strategy_name, cold_start_name)
    strategy = get_strategy(strategy_key, corpus.multi_label)
    fold = fold or Fold(index=0, pool=corpus.train_indices, test=corpus.test_indices)
    train, test = fold.pool, fold.test
    pool_embeddings = embeddings[train]
    anchors = None
    if label_vectors is not None and classifier.args.anchor_copies > 0:
        anchors = anchor_rows(label_vectors, corpus.multi_label)
    rng = np.random.default_rng([seed, _stable_hash(strategy_name)])
    points: list[CurvePoint] = []
    last_slow = 0

    def record(n_labels: int, predicted: np.ndarray | None) -> None:
        if predicted is None:
            macro = micro = float("nan")
        else:
            macro, micro = f1_scores(corpus.targets[test], predicted, len(corpus.labels), corpus.multi_label)
            if predictions is not None and n_labels in keep_predictions_at:
                predictions[(strategy_name, fold.index, seed, n_labels)] = predicted
        points.append(CurvePoint(strategy_name, seed, n_labels, macro, micro, fold.index))

    if label_vectors is not None:
        test_zero_shot = zero_shot_probabilities(embeddings[test], label_vectors, corpus.multi_label)
        record(0, _decide(test_zero_shot, corpus.multi_label))
    if cold_start_name == "zero_shot":
        if label_vectors is None:
            raise ValueError("the zero_shot cold start needs label descriptions")
        pool_zero_shot = zero_shot_probabilities(pool_embeddings, label_vectors, corpus.multi_label)
        first = strategy.select(pool_zero_shot, label_counts[0], embeddings=pool_embeddings, rng=rng)
        labelled = [int(i) for i in first]
    else:
        # The seed set depends on the seed only, never on the strategy: runs are paired.
        labelled = list(cold_start(cold_start_name, pool_embeddings, label_counts[0], rng=seed))
    for round_index in range(len(label_counts)):
        chosen = np.asarray(labelled, dtype=np.int64)
        if slow is not None and len(labelled) - last_slow >= slow.every:
            classifier, embeddings = slow.fine_tune(corpus, train[chosen], classifier)
            pool_embeddings = embeddings[train]
            if label_vectors is not None and label_texts is not None:
                label_vectors = encode_label_texts(label_texts, classifier.encode)
                if anchors is not None:
                    anchors = anchor_rows(label_vectors, corpus.multi_label)
            last_slow = len(labelled)
        try:
            classifier.fit_head(pool_embeddings[chosen], corpus.targets[train[chosen]], anchors=anchors)
            trained = True
        except NotEnoughLabels:
            trained = False
        if trained:
            record(len(labelled), _decide(classifier.predict_proba_embeddings(embeddings[test]), corpus.multi_label))
        else:
            record(len(labelled), None)
        if on_round is not None:
            on_round()
        if round_index + 1 == len(label_counts):
            break
        want = label_counts[round_index + 1] - len(labelled)
        unlabelled = np.setdiff1d(np.arange(len(train)), chosen)
        if trained:
            examples = labelled_counts(corpus.targets[train[chosen]], len(corpus.labels), corpus.multi_label)
            pool_probabilities = classifier.predict_proba_embeddings(pool_embeddings[unlabelled])
            picks = strategy.select(
                pool_probabilities,
                want,
                embeddings=pool_embeddings[unlabelled],
                labelled_embeddings=pool_embeddings[chosen],
                rng=rng,
                examples_per_label=examples,
            )
        else:
            # No model yet (one class only): widen the seed set at random, as a person would.
            picks = rng.choice(len(unlabelled), size=min(want, len(unlabelled)), replace=False)
        labelled.extend(int(i) for i in unlabelled[picks])
    return points


@dataclass
class SlowLoop:
    """The live loop's slow path in the simulation: a body fine-tuned every `every` labels, capped at `steps`."""

    every: int
    steps: int
    cache_dir: Path

    def fine_tune(self, corpus: LabelledCorpus, rows: np.ndarray, current: Classifier) -> tuple[Classifier, np.ndarray]:
        """A fresh body from the base model, tuned on `rows`, and every text's embedding under it."""
        args = replace(current.args, max_steps=self.steps)
        tuned = Classifier.create(corpus.labels, corpus.multi_label, current.base_model, args)
        tuned.fine_tune_body([corpus.texts[i] for i in rows], corpus.targets[rows], max_steps=self.steps)
        # Equal labelled sets give equal body ids, so a rerun reads these embeddings from disk.
        return tuned, corpus_embeddings(corpus, tuned, self.cache_dir)


def parse_strategy_spec(spec: str, default_cold_start: str = "random") -> tuple[str, str]:
    """ "margin" -> ("margin", default); "diverse@diverse" -> ("diverse", "diverse")."""
    name, _, cold = spec.partition("@")
    return name, cold or default_cold_start


def _decide(probabilities: np.ndarray, multi_label: bool) -> np.ndarray:
    if multi_label:
        return (probabilities >= 0.5).astype(np.int64)
    return np.argmax(probabilities, axis=1)


def _stable_hash(text: str) -> int:
    return int.from_bytes(text.encode()[:8].ljust(8, b"\0"), "little") % (2**31)


def full_training_ceiling(
    corpus: LabelledCorpus,
    embeddings: np.ndarray,
    classifier: Classifier,
    fold: Fold | None = None,
) -> dict[str, Any]:
    """The same head trained on every pool row: what labelling everything would give.

    Reported with the fixed 0.5 threshold (the head the curves use) and, for multi-label, with out-of-fold
    tuned thresholds (what the live loop uses once it has that many labels).
    """
    fold = fold or Fold(index=0, pool=corpus.train_indices, test=corpus.test_indices)
    train, test = fold.pool, fold.test
    result: dict[str, Any] = {"n_labels": int(len(train))}
    original = classifier.args
    try:
        for rule in ("fixed", "cv") if corpus.multi_label else ("fixed",):
            classifier.args = replace(original, threshold_rule=rule)
            classifier.fit_head(embeddings[train], corpus.targets[train])
            predicted = _decide(classifier.predict_proba_embeddings(embeddings[test]), corpus.multi_label)
            macro, micro = f1_scores(corpus.targets[test], predicted, len(corpus.labels), corpus.multi_label)
            result[f"{rule}_thresholds"] = {"macro_f1": macro, "micro_f1": micro}
    finally:
        classifier.args = original
    result["macro_f1"] = result["fixed_thresholds"]["macro_f1"]
    result["micro_f1"] = result["fixed_thresholds"]["micro_f1"]
    return result


def _mean_ceiling(ceilings: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Fold ceilings averaged (one fold: itself), with the per-fold figures kept."""
    if len(ceilings) == 1:
        return ceilings[0]
    out: dict[str, Any] = {"n_labels": int(np.mean([c["n_labels"] for c in ceilings])), "per_fold": list(ceilings)}
    for key in ("fixed_thresholds", "cv_thresholds"):
        if key in ceilings[0]:
            out[key] = {m: float(np.mean([c[key][m] for c in ceilings])) for m in ("macro_f1", "micro_f1")}
    out["macro_f1"] = out["fixed_thresholds"]["macro_f1"]
    out["micro_f1"] = out["fixed_thresholds"]["micro_f1"]
    return out


SIMULATION_COLD_STARTS = (*COLD_STARTS, "zero_shot")
"""Cold starts of the simulation: the embedding-only ones, and the strategy on zero-shot probabilities."""


def run_simulation(config: SimulationConfig, classifier: Classifier | None = None) -> SimulationResult:
    """Run every (strategy, fold, seed) curve, then write curves.csv, the plot and the summary under `config.out`."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=config.threads):
        return _run_simulation(config, classifier)


def _run_simulation(config: SimulationConfig, classifier: Classifier | None) -> SimulationResult:
    started = time.time()
    config.check()
    for spec in config.strategies:
        name, cold = parse_strategy_spec(spec, config.cold_start)
        get_strategy(name)  # fail before encoding anything, not an hour in
        if cold not in SIMULATION_COLD_STARTS:
            raise ValueError(f"unknown cold start {cold!r} in {spec!r}; choose one of {SIMULATION_COLD_STARTS}")
        if cold == "zero_shot" and config.label_descriptions is None:
            raise ValueError(f"{spec!r} starts from zero-shot suggestions: give --label-descriptions")
    corpus = load_corpus(
        config.data,
        split_field=config.split_field,
        group_field=config.group_field,
        test_fraction=config.test_fraction,
        multi_label=config.multi_label,
    )
    folds = evaluation_folds(corpus, config.folds)
    counts = config.label_counts()
    smallest_pool = min(len(fold.pool) for fold in folds)
    if counts[-1] > smallest_pool:
        raise ValueError(f"budget {config.budget} exceeds the {smallest_pool} rows of the smallest pool")
    classifier = classifier or Classifier.create(
        corpus.labels, corpus.multi_label, config.base_model, config.training_args
    )
    progress = _progress_bar(config.show_progress)
    embeddings = corpus_embeddings(
        corpus, classifier, config.cache_dir, progress=progress("encoding", len(corpus.texts))
    )
    label_vectors, texts = None, None
    if config.label_descriptions is not None:
        texts = label_texts_from_file(config.label_descriptions, corpus.labels)
        label_vectors = encode_label_texts(texts, classifier.encode)
    slow = SlowLoop(config.slow_every, config.slow_steps, config.cache_dir) if config.slow_every else None
    report_at = sorted({*config.report_at, 0})
    tick = progress("simulating", len(config.strategies) * config.seeds * len(counts) * len(folds))
    points: list[CurvePoint] = []
    predictions: dict[tuple[str, int, int, int], np.ndarray] = {}
    runs = [
        (fold, seed, name)
        for fold in folds
        for seed in range(config.seed_offset, config.seed_offset + config.seeds)
        for name in config.strategies
    ]

    def one_curve(fold: Fold, seed: int, name: str, on_round: Callable[[], None] | None) -> _Curve:
        kept: dict[tuple[str, int, int, int], np.ndarray] = {}
        curve = simulate_run(
            corpus,
            embeddings,
            classifier,
            name,
            seed,
            counts,
            cold_start_name=config.cold_start,
            on_round=on_round,
            fold=fold,
            label_vectors=label_vectors,
            keep_predictions_at=report_at,
            predictions=kept,
            slow=slow,
            label_texts=texts,
        )
        return curve, kept

    if config.workers > 1 and len(runs) > 1:
        curves = _curves_in_processes(one_curve, runs, config.workers, on_curve=lambda: tick(len(counts), 0))
    else:
        curves = (one_curve(*run, lambda: tick(1, 0)) for run in runs)
    for curve, kept in curves:
        points.extend(curve)
        predictions.update(kept)
    ceiling = _mean_ceiling([full_training_ceiling(corpus, embeddings, classifier, fold) for fold in folds])
    config.out.mkdir(parents=True, exist_ok=True)
    write_curves(points, config.out / "curves.csv")
    summary = summarise(points, config, corpus, ceiling, elapsed=time.time() - started)
    if corpus.groups is not None:
        summary["per_group"] = per_group_figures(corpus, folds, predictions, config.strategies, report_at)
    summary["fold_sizes"] = [
        {
            "fold": fold.index,
            "pool": int(len(fold.pool)),
            "test": int(len(fold.test)),
            "test_groups": int(len(np.unique(corpus.groups[fold.test]))) if corpus.groups is not None else None,
        }
        for fold in folds
    ]
    plot_curves(points, config.out / "learning_curves.png", ceiling=ceiling, title=Path(config.data).name)
    (config.out / "summary.json").write_text(json.dumps(summary, indent=2))
    (config.out / "summary.md").write_text(summary_markdown(summary))
    return SimulationResult(config, corpus, points, summary, config.out)


_Curve = tuple[list[CurvePoint], dict[tuple[str, int, int, int], np.ndarray]]
_FORKED_CURVE: Callable[..., _Curve] | None = None


def _forked_curve(run: tuple[Fold, int, str]) -> _Curve:
    assert _FORKED_CURVE is not None
    return _FORKED_CURVE(*run, None)


def _curves_in_processes(
    one_curve: Callable[..., _Curve], runs: list[tuple[Fold, int, str]], workers: int, on_curve: Callable[[], None]
) -> list[_Curve]:
    """Every run's curve in forked processes, in the order of `runs`: the children share the parent's corpus and
    embeddings copy-on-write, and every curve depends only on its run, so the figures equal a run in one process."""
    import multiprocessing

    global _FORKED_CURVE
    _FORKED_CURVE = one_curve
    try:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            curves = []
            for curve in pool.imap(_forked_curve, runs):
                curves.append(curve)
                on_curve()
            return curves
    finally:
        _FORKED_CURVE = None


def _progress_bar(enabled: bool) -> Callable[[str, int], Callable[[int, int], None]]:
    """A factory of tqdm-backed callbacks `(done, total)`; `total == 0` means "advance by done"."""

    def make(description: str, total: int) -> Callable[[int, int], None]:
        if not enabled:
            return lambda done, total_: None
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=description, unit="it", leave=True)

        def update(done: int, total_: int) -> None:
            if total_ == 0:
                bar.update(done)
            else:
                bar.update(done - bar.n)
            if bar.n >= bar.total:
                bar.close()

        return update

    return make


# -- reporting ----------------------------------------------------------------------------------------------


def write_curves(points: Sequence[CurvePoint], path: Path) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["strategy", "fold", "seed", "n_labels", "macro_f1", "micro_f1"])
        for point in points:
            writer.writerow(
                [
                    point.strategy,
                    point.fold,
                    point.seed,
                    point.n_labels,
                    f"{point.macro_f1:.6f}",
                    f"{point.micro_f1:.6f}",
                ]
            )


def read_curves(path: str | Path) -> list[CurvePoint]:
    with open(path, newline="") as handle:
        return [
            CurvePoint(
                row["strategy"],
                int(row["seed"]),
                int(row["n_labels"]),
                float(row["macro_f1"]),
                float(row["micro_f1"]),
                int(row.get("fold") or 0),
            )
            for row in csv.DictReader(handle)
        ]


Run = tuple[int, int]
"""(fold, seed): one curve of one strategy; strategies are paired on it."""


def _table(points: Sequence[CurvePoint], metric: str) -> dict[str, dict[int, dict[Run, float]]]:
    """strategy -> n_labels -> (fold, seed) -> value."""
    table: dict[str, dict[int, dict[Run, float]]] = {}
    for point in points:
        by_run = table.setdefault(point.strategy, {}).setdefault(point.n_labels, {})
        by_run[(point.fold, point.seed)] = getattr(point, metric)
    return table


def _differences(
    table: dict[str, dict[int, dict[Run, float]]], strategy: str, baseline: str, keep: Callable[[int], bool]
) -> np.ndarray:
    differences = []
    for n_labels, by_run in table.get(strategy, {}).items():
        if not keep(n_labels):
            continue
        for run, value in by_run.items():
            base = table.get(baseline, {}).get(n_labels, {}).get(run)
            if base is not None and not (math.isnan(value) or math.isnan(base)):
                differences.append(value - base)
    return np.asarray(differences)


def _signed_rank(diffs: np.ndarray) -> dict[str, Any]:
    from scipy import stats

    result: dict[str, Any] = {
        "n_pairs": int(len(diffs)),
        "mean_difference": float(diffs.mean()) if len(diffs) else None,
    }
    if len(diffs) >= 2 and np.any(diffs != 0):
        result["wilcoxon_p"] = float(stats.wilcoxon(diffs).pvalue)
        result["paired_t_p"] = float(stats.ttest_1samp(diffs, 0.0).pvalue)
        result["wins"] = int((diffs > 0).sum())
        result["losses"] = int((diffs < 0).sum())
    else:
        result.update({"wilcoxon_p": None, "paired_t_p": None, "wins": 0, "losses": 0})
    return result


def paired_test(
    points: Sequence[CurvePoint], strategy: str, baseline: str = BASELINE, metric: str = "macro_f1", after: int = 0
) -> dict[str, Any]:
    """Strategy minus baseline, paired over (fold, seed, n_labels) for every n_labels > `after`.

    Points of one curve are not independent, so read these p-values as a screen; the paired test at one
    label count (`summarise`, "paired_vs_random" per report point) and the test across groups are the
    honest ones.
    """
    return _signed_rank(_differences(_table(points, metric), strategy, baseline, lambda n: n > after))


def paired_between(
    points: Sequence[CurvePoint], summary: dict[str, Any], strategy: str, baseline: str, n_labels: int
) -> dict[str, Any]:
    """`strategy` minus `baseline` at one label count: paired over runs (fold x seed) and across test groups.

    Any two strategies of one run, not only a strategy and random; the groups' figures come from the
    summary's per-group macro-F1 (averaged over seeds), so the test across groups asks the same question as
    the one against random.
    """
    from scipy import stats

    table = _table(points, "macro_f1")
    result = {"runs": _signed_rank(_differences(table, strategy, baseline, lambda m: m == n_labels))}
    per_group = summary.get("per_group", {})
    ours = per_group.get(strategy, {}).get(str(n_labels), {}).get("by_group", {})
    theirs = per_group.get(baseline, {}).get(str(n_labels), {}).get("by_group", {})
    diffs = np.array([value - theirs[group] for group, value in ours.items() if group in theirs])
    if len(diffs):
        result["groups"] = {
            "n_groups": int(len(diffs)),
            "mean_difference": float(diffs.mean()),
            "groups_better": int((diffs > 0).sum()),
            "groups_worse": int((diffs < 0).sum()),
            "wilcoxon_p": float(stats.wilcoxon(diffs).pvalue) if np.any(diffs != 0) else None,
        }
    return result


def summarise(
    points: Sequence[CurvePoint],
    config: SimulationConfig,
    corpus: LabelledCorpus,
    ceiling: dict[str, Any] | None,
    *,
    elapsed: float,
) -> dict[str, Any]:
    """Mean and spread (over runs, folds and seeds) at the report points, paired tests against random."""
    macro = _table(points, "macro_f1")
    micro = _table(points, "micro_f1")
    counts = sorted({p.n_labels for p in points})
    report_at = [n for n in sorted({*config.report_at, 0}) if n in counts] or [counts[-1]]
    strategies: dict[str, Any] = {}
    for name in config.strategies:
        at: dict[str, Any] = {}
        for n in report_at:
            by_run = macro[name][n]
            values = np.array(list(by_run.values()))
            micro_values = np.array(list(micro[name][n].values()))
            fold_means = [np.nanmean([v for (f, _), v in by_run.items() if f == fold]) for fold in _folds(by_run)]
            seed_means = [np.nanmean([v for (_, s), v in by_run.items() if s == seed]) for seed in _seeds(by_run)]
            entry: dict[str, Any] = {
                "macro_f1_mean": float(np.nanmean(values)),
                "macro_f1_sd": float(np.nanstd(values)),
                "macro_f1_min": float(np.nanmin(values)),
                "macro_f1_max": float(np.nanmax(values)),
                "macro_f1_sd_over_folds": float(np.nanstd(fold_means)),
                "macro_f1_sd_over_seeds": float(np.nanstd(seed_means)),
                "micro_f1_mean": float(np.nanmean(micro_values)),
            }
            if BASELINE in macro and name != BASELINE and n in macro[BASELINE]:
                base = float(np.nanmean(list(macro[BASELINE][n].values())))
                entry["difference_vs_random"] = entry["macro_f1_mean"] - base
                entry["ratio_vs_random"] = entry["macro_f1_mean"] / base if base else None
                entry["paired_vs_random"] = _signed_rank(_differences(macro, name, BASELINE, lambda m, n=n: m == n))
            at[str(n)] = entry
        curve_counts = [n for n in counts if n >= config.seed_size]
        curve_mean = [float(np.nanmean(list(macro[name][n].values()))) for n in curve_counts]
        strategies[name] = {
            "at": at,
            "area_under_curve": float(np.trapezoid(curve_mean, curve_counts) / (curve_counts[-1] - curve_counts[0]))
            if len(curve_counts) > 1
            else curve_mean[0],
        }
        if BASELINE in macro and name != BASELINE:
            strategies[name]["paired_vs_random"] = paired_test(points, name, after=config.seed_size)
            strategies[name]["paired_vs_random_micro"] = paired_test(
                points, name, metric="micro_f1", after=config.seed_size
            )
    return {
        "data": str(config.data),
        "n_rows": len(corpus.texts),
        "n_train": int(len(corpus.train_indices)),
        "n_test": int(len(corpus.test_indices)),
        "labels": corpus.labels,
        "multi_label": corpus.multi_label,
        "split": corpus.split_source,
        "evaluation": (
            f"{config.folds}-fold cross-validation grouped by '{config.group_field}' over the training rows"
            if config.folds
            else "the test split"
        ),
        "skipped_unlabelled": corpus.skipped_unlabelled,
        "seed_size": config.seed_size,
        "step": config.step,
        "budget": config.budget,
        "seeds": config.seeds,
        "seed_offset": config.seed_offset,
        "folds": config.folds,
        "cold_start": config.cold_start,
        "label_descriptions": str(config.label_descriptions) if config.label_descriptions else None,
        "report_at": report_at,
        "training_args": config.training_args.to_dict(),
        "strategies": strategies,
        "all_training": ceiling,
        "elapsed_seconds": round(elapsed, 1),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {_cpu_count()} CPU cores, Python {platform.python_version()}",
        "config": {key: str(value) for key, value in asdict(config).items() if key != "training_args"},
    }


def _folds(by_run: dict[Run, float]) -> list[int]:
    return sorted({fold for fold, _ in by_run})


def _seeds(by_run: dict[Run, float]) -> list[int]:
    return sorted({seed for _, seed in by_run})


def _macro_f1_by_group(
    truth: np.ndarray, predicted: np.ndarray, groups: np.ndarray, corpus: LabelledCorpus
) -> dict[str, float]:
    """Macro-F1 of each group's rows, as `f1_scores` computes it, in one pass of counts (thousands of groups x
    runs would take minutes through scikit-learn)."""
    n_labels = len(corpus.labels)
    if not corpus.multi_label:
        truth, predicted = np.eye(n_labels, dtype=np.int64)[truth], np.eye(n_labels, dtype=np.int64)[predicted]
    names, index = np.unique(groups, return_inverse=True)
    membership = np.eye(len(names), dtype=np.int64)[index].T  # (groups, rows)
    tp = membership @ (truth & predicted)
    support = membership @ truth
    predicted_count = membership @ predicted
    denominator = support + predicted_count
    f1 = np.divide(2 * tp, denominator, out=np.zeros(tp.shape, dtype=np.float64), where=denominator > 0)
    scored = denominator > 0
    macro = np.where(scored.any(axis=1), (f1 * scored).sum(axis=1) / np.maximum(scored.sum(axis=1), 1), 0.0)
    return {str(name): float(value) for name, value in zip(names, macro, strict=True)}


def per_group_figures(
    corpus: LabelledCorpus,
    folds: Sequence[Fold],
    predictions: dict[tuple[str, int, int, int], np.ndarray],
    strategies: Sequence[str],
    report_at: Sequence[int],
) -> dict[str, Any]:
    """Macro-F1 per test group (policy), averaged over seeds: its spread, and strategy - random across groups.

    A group's macro-F1 averages over the labels that occur in it or are predicted for it. The signed-rank
    test across groups asks whether a strategy's gain holds policy by policy, not only on the pooled rows.
    """
    from scipy import stats

    if corpus.groups is None:
        return {}
    scores: dict[tuple[str, int], dict[str, float]] = {}
    for name in strategies:
        for n in report_at:
            per_group: dict[str, list[float]] = {}
            for fold in folds:
                groups = corpus.groups[fold.test]
                truth = corpus.targets[fold.test]
                for key, predicted in predictions.items():
                    if key[0] != name or key[1] != fold.index or key[3] != n:
                        continue
                    for group, macro in _macro_f1_by_group(truth, predicted, groups, corpus).items():
                        per_group.setdefault(group, []).append(macro)
            scores[(name, n)] = {group: float(np.mean(values)) for group, values in per_group.items()}
    out: dict[str, Any] = {}
    for name in strategies:
        at: dict[str, Any] = {}
        for n in report_at:
            values = np.array(list(scores[(name, n)].values()))
            if not len(values):
                continue
            entry: dict[str, Any] = {
                "n_groups": int(len(values)),
                "median": float(np.median(values)),
                "q25": float(np.percentile(values, 25)),
                "q75": float(np.percentile(values, 75)),
                # Kept so any two strategies of the run can be compared group by group afterwards.
                "by_group": dict(sorted(scores[(name, n)].items())),
            }
            base = scores.get((BASELINE, n), {})
            if name != BASELINE and base:
                diffs = np.array([value - base[g] for g, value in scores[(name, n)].items() if g in base])
                entry["mean_difference_vs_random"] = float(diffs.mean())
                entry["groups_better"] = int((diffs > 0).sum())
                entry["groups_worse"] = int((diffs < 0).sum())
                entry["wilcoxon_p"] = float(stats.wilcoxon(diffs).pvalue) if np.any(diffs != 0) else None
            at[str(n)] = entry
        out[name] = at
    return out


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def summary_markdown(summary: dict[str, Any]) -> str:
    """The summary as Markdown: macro-F1 mean ± sd per strategy at each report point, then the paired tests."""
    report_at = summary["report_at"]
    header = "| strategy | " + " | ".join(f"macro-F1 @ {n}" for n in report_at) + " | mean over curve |"
    lines = [
        f"Data: `{summary['data']}` ({summary['n_train']} train / {summary['n_test']} test, {summary['split']}; "
        f"{'multi' if summary['multi_label'] else 'single'}-label, {len(summary['labels'])} labels). "
        f"Evaluated on {summary.get('evaluation', 'the test split')}. "
        f"Seed {summary['seed_size']} ({summary['cold_start']}), step {summary['step']}, "
        f"budget {summary['budget']}, {summary['seeds']} seeds "
        f"({summary['seed_offset']}-{summary['seed_offset'] + summary['seeds'] - 1}).",
        "",
        "Mean ± sd over runs (fold x seed); difference against random in brackets.",
        "",
        header,
        "|" + " --- |" * (len(report_at) + 2),
    ]
    for name, entry in summary["strategies"].items():
        cells = []
        for n in report_at:
            cell = entry["at"].get(str(n))
            if cell is None:
                cells.append("")
                continue
            text = f"{cell['macro_f1_mean']:.3f} ± {cell['macro_f1_sd']:.3f}"
            if "difference_vs_random" in cell:
                text += f" ({cell['difference_vs_random']:+.3f})"
            cells.append(text)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {entry['area_under_curve']:.3f} |")
    ceiling = summary.get("all_training")
    if ceiling:
        lines += [
            "",
            f"All {ceiling['n_labels']} pool rows, same head: macro-F1 {ceiling['macro_f1']:.3f}, "
            f"micro-F1 {ceiling['micro_f1']:.3f}.",
        ]
        if "cv_thresholds" in ceiling:
            lines[-1] += (
                f" With out-of-fold tuned thresholds: macro-F1 {ceiling['cv_thresholds']['macro_f1']:.3f}, "
                f"micro-F1 {ceiling['cv_thresholds']['micro_f1']:.3f}."
            )
    tested = [
        (name, n, entry["at"][str(n)]["paired_vs_random"])
        for name, entry in summary["strategies"].items()
        for n in report_at
        if "paired_vs_random" in entry["at"].get(str(n), {})
    ]
    if tested:
        groups = summary.get("per_group", {})
        lines += [
            "",
            "Against random at each label count: paired over runs (fold x seed), and across test groups "
            "(each group's macro-F1 averaged over seeds):",
            "",
            "| strategy | labels | mean difference | runs better / worse | Wilcoxon p (runs) | groups better / worse "
            "| Wilcoxon p (groups) |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for name, n, test in tested:
            group = groups.get(name, {}).get(str(n), {})
            group_cells = (
                f"{group['groups_better']} / {group['groups_worse']} | {_fmt(group.get('wilcoxon_p'), '.2g')}"
                if "groups_better" in group
                else "n/a | n/a"
            )
            lines.append(
                f"| {name} | {n} | {_fmt(test['mean_difference'], '+.4f')} | {test['wins']} / {test['losses']} | "
                f"{_fmt(test['wilcoxon_p'], '.2g')} | {group_cells} |"
            )
    return "\n".join(lines) + "\n"


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def plot_curves(
    points: Sequence[CurvePoint],
    path: Path,
    *,
    ceiling: dict[str, Any] | None = None,
    title: str = "",
) -> Path:
    """Mean macro- and micro-F1 per strategy against labels, with the min-max band over runs (fold x seed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharex=True)
    for axis, metric, name in ((axes[0], "macro_f1", "macro-F1"), (axes[1], "micro_f1", "micro-F1")):
        for strategy, by_count in _table(points, metric).items():
            counts = sorted(by_count)
            values = [np.array(list(by_count[n].values())) for n in counts]
            mean = [np.nanmean(v) for v in values]
            line = axis.plot(counts, mean, label=strategy, linestyle="--" if strategy == BASELINE else "-")[0]
            axis.fill_between(
                counts,
                [np.nanmin(v) for v in values],
                [np.nanmax(v) for v in values],
                color=line.get_color(),
                alpha=0.15,
            )
        if ceiling:
            axis.axhline(ceiling[metric], color="grey", linestyle=":", label=f"all {ceiling['n_labels']} labels")
        axis.set_xlabel("labelled documents")
        axis.set_ylabel(f"{name} on the test split")
        axis.grid(alpha=0.3)
    axes[0].legend(loc="lower right", fontsize="small")
    caption = "mean over runs (fold x seed), band = min-max"
    figure.suptitle(f"{title}: {caption}" if title else caption)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


# -- command line -------------------------------------------------------------------------------------------


def add_simulation_arguments(parser: Any) -> None:
    """The simulation's options on an argparse parser (used by `manage.py simulate` and the benchmarks)."""
    parser.add_argument("--data", required=True, type=Path, help="JSONL with 'text' and 'labels' or 'label'")
    parser.add_argument(
        "--strategy",
        action="append",
        dest="strategies",
        metavar="NAME[@COLD_START]",
        help="query strategy, repeatable (random is added as the baseline); e.g. margin, batch, diverse@diverse",
    )
    parser.add_argument("--seed-size", type=int, default=20)
    parser.add_argument("--step", type=int, default=20)
    parser.add_argument("--budget", type=int, default=400)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed-offset", type=int, default=0, help="first seed (fresh seeds confirm a choice)")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--split-field", default="split", help="rows whose field is 'test' are held out")
    parser.add_argument(
        "--group-field", default=None, help="keep groups whole in splits and folds, report per group (e.g. policy)"
    )
    parser.add_argument(
        "--folds",
        type=int,
        default=None,
        help="grouped cross-validation over the training rows (needs --group-field); the test split is not used",
    )
    parser.add_argument(
        "--label-descriptions",
        type=Path,
        default=None,
        help="taxonomy JSON (labels with key/name, description, guideline): zero-shot at 0 labels and anchors",
    )
    parser.add_argument(
        "--slow-every",
        type=int,
        default=None,
        help="replay the slow path: fine-tune the body every N labels (slow; off by default)",
    )
    parser.add_argument("--slow-steps", type=int, default=20, help="cap on each replayed fine-tune's steps")
    parser.add_argument(
        "--anchor-copies",
        type=int,
        default=TrainingArgs.anchor_copies,
        help="how many documents each label's text counts as in every head fit (needs --label-descriptions)",
    )
    parser.add_argument("--test-fraction", type=float, default=0.25)
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--multi-label", dest="multi_label", action="store_true", default=None)
    kind.add_argument("--single-label", dest="multi_label", action="store_false")
    parser.add_argument("--cold-start", choices=SIMULATION_COLD_STARTS, default="random")
    parser.add_argument("--report-at", type=int, nargs="+", default=[100, 200, 400])
    parser.add_argument("--base-model", default=None, help="local SentenceTransformer directory")
    parser.add_argument("--cache-dir", type=Path, default=Path("var/cache/embeddings"))
    parser.add_argument("--head-c", type=float, default=TrainingArgs.head_c)
    parser.add_argument("--threshold-rule", choices=THRESHOLD_RULES, default=TrainingArgs.threshold_rule)
    parser.add_argument("--no-progress", dest="show_progress", action="store_false")
    parser.add_argument("--workers", type=int, default=1, help="run curves side by side in this many processes")


def config_from_arguments(options: Any) -> SimulationConfig:
    """A SimulationConfig from parsed options (an argparse Namespace or Django's options dict)."""
    values = options if isinstance(options, dict) else vars(options)
    strategies = list(values.get("strategies") or ["margin"])
    if not any(parse_strategy_spec(spec)[0] == BASELINE for spec in strategies):
        strategies.append(BASELINE)
    return SimulationConfig(
        data=Path(values["data"]),
        out=Path(values["out"]),
        strategies=strategies,
        seed_size=values["seed_size"],
        step=values["step"],
        budget=values["budget"],
        seeds=values["seeds"],
        seed_offset=values.get("seed_offset", 0),
        split_field=values["split_field"],
        group_field=values["group_field"],
        test_fraction=values["test_fraction"],
        multi_label=values["multi_label"],
        cold_start=values["cold_start"],
        report_at=tuple(values["report_at"]),
        folds=values.get("folds"),
        slow_every=values.get("slow_every"),
        slow_steps=values.get("slow_steps", 20),
        label_descriptions=Path(values["label_descriptions"]) if values.get("label_descriptions") else None,
        base_model=values["base_model"],
        cache_dir=Path(values["cache_dir"]),
        training_args=TrainingArgs(
            head_c=values["head_c"],
            threshold_rule=values["threshold_rule"],
            anchor_copies=values.get("anchor_copies", TrainingArgs.anchor_copies),
        ),
        show_progress=values["show_progress"],
        workers=values.get("workers", 1),
    )
