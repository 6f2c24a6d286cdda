"""Pool-based active-learning simulation on any labelled JSONL file, with the live loop's own code.

The labels are known in advance, so the "reviewer" is the file: from a seed set, each round fits the
classifier head (`Classifier.fit_head`, the live fast path), scores the unlabelled pool, asks a query
strategy (`learning.ml.strategies`) for the next `step` documents and reveals their labels, until the
budget is spent. Every round is evaluated on the held-out test rows. Several strategies run over several
seeds; a seed fixes the seed set, so strategies are compared on the same start (paired).

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
from learning.ml.metrics import f1_scores
from learning.ml.strategies import get_strategy

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
    training_args: TrainingArgs = field(default_factory=TrainingArgs)
    show_progress: bool = True
    threads: int | None = 1
    """BLAS/OpenMP threads for the head fits; 1 is fastest on a small shared machine (no spinning threads)."""

    def label_counts(self) -> list[int]:
        """Labelled-set sizes at which the classifier is evaluated: seed, seed+step, ..., budget."""
        if self.seed_size < 1 or self.step < 1 or self.budget < self.seed_size:
            raise ValueError("need seed_size >= 1, step >= 1 and budget >= seed_size")
        counts = list(range(self.seed_size, self.budget + 1, self.step))
        if counts[-1] != self.budget:
            counts.append(self.budget)
        return counts


@dataclass
class CurvePoint:
    strategy: str
    seed: int
    n_labels: int
    macro_f1: float
    micro_f1: float


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
    )


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
) -> list[CurvePoint]:
    """One learning curve: one strategy from one seed set, evaluated at each of `label_counts`.

    `strategy_name` may carry its own cold start as "name@cold_start" (e.g. "diverse@diverse").
    """
    strategy_key, cold_start_name = parse_strategy_spec(strategy_name, cold_start_name)
    strategy = get_strategy(strategy_key, corpus.multi_label)
    train = corpus.train_indices
    test = corpus.test_indices
    pool_embeddings = embeddings[train]
    # The seed set depends on the seed only, never on the strategy: runs are paired.
    labelled = list(cold_start(cold_start_name, pool_embeddings, label_counts[0], rng=seed))
    rng = np.random.default_rng([seed, _stable_hash(strategy_name)])
    points = []
    for round_index in range(len(label_counts)):
        chosen = np.asarray(labelled, dtype=np.int64)
        try:
            classifier.fit_head(pool_embeddings[chosen], corpus.targets[train[chosen]])
            trained = True
        except NotEnoughLabels:
            trained = False
        if trained:
            probabilities = classifier.predict_proba_embeddings(embeddings[test])
            predicted = _decide(probabilities, corpus.multi_label)
            macro, micro = f1_scores(corpus.targets[test], predicted, len(corpus.labels), corpus.multi_label)
        else:
            macro = micro = float("nan")
        points.append(CurvePoint(strategy_name, seed, len(labelled), macro, micro))
        if on_round is not None:
            on_round()
        if round_index + 1 == len(label_counts):
            break
        want = label_counts[round_index + 1] - len(labelled)
        unlabelled = np.setdiff1d(np.arange(len(train)), chosen)
        if trained:
            pool_probabilities = classifier.predict_proba_embeddings(pool_embeddings[unlabelled])
            picks = strategy.select(
                pool_probabilities,
                want,
                embeddings=pool_embeddings[unlabelled],
                labelled_embeddings=pool_embeddings[chosen],
                rng=rng,
            )
        else:
            # No model yet (one class only): widen the seed set at random, as a person would.
            picks = rng.choice(len(unlabelled), size=min(want, len(unlabelled)), replace=False)
        labelled.extend(int(i) for i in unlabelled[picks])
    return points


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


def full_training_ceiling(corpus: LabelledCorpus, embeddings: np.ndarray, classifier: Classifier) -> dict[str, Any]:
    """The same head trained on every training row: what labelling everything would give.

    Reported with the fixed 0.5 threshold (the head the curves use) and, for multi-label, with out-of-fold
    tuned thresholds (what the live loop uses once it has that many labels).
    """
    train, test = corpus.train_indices, corpus.test_indices
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


def run_simulation(config: SimulationConfig, classifier: Classifier | None = None) -> SimulationResult:
    """Run every (strategy, seed) curve, then write curves.csv, the plot and the summary under `config.out`."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=config.threads):
        return _run_simulation(config, classifier)


def _run_simulation(config: SimulationConfig, classifier: Classifier | None) -> SimulationResult:
    started = time.time()
    for spec in config.strategies:
        name, cold = parse_strategy_spec(spec, config.cold_start)
        get_strategy(name)  # fail before encoding anything, not an hour in
        if cold not in COLD_STARTS:
            raise ValueError(f"unknown cold start {cold!r} in {spec!r}; choose one of {COLD_STARTS}")
    corpus = load_corpus(
        config.data,
        split_field=config.split_field,
        group_field=config.group_field,
        test_fraction=config.test_fraction,
        multi_label=config.multi_label,
    )
    counts = config.label_counts()
    if counts[-1] > len(corpus.train_indices):
        raise ValueError(f"budget {config.budget} exceeds the {len(corpus.train_indices)} training rows")
    classifier = classifier or Classifier.create(
        corpus.labels, corpus.multi_label, config.base_model, config.training_args
    )
    progress = _progress_bar(config.show_progress)
    embeddings = corpus_embeddings(
        corpus, classifier, config.cache_dir, progress=progress("encoding", len(corpus.texts))
    )
    tick = progress("simulating", len(config.strategies) * config.seeds * len(counts))
    points: list[CurvePoint] = []
    for seed in range(config.seed_offset, config.seed_offset + config.seeds):
        for name in config.strategies:
            points.extend(
                simulate_run(
                    corpus,
                    embeddings,
                    classifier,
                    name,
                    seed,
                    counts,
                    cold_start_name=config.cold_start,
                    on_round=lambda: tick(1, 0),
                )
            )
    ceiling = full_training_ceiling(corpus, embeddings, classifier)
    config.out.mkdir(parents=True, exist_ok=True)
    write_curves(points, config.out / "curves.csv")
    summary = summarise(points, config, corpus, ceiling, elapsed=time.time() - started)
    plot_curves(points, config.out / "learning_curves.png", ceiling=ceiling, title=Path(config.data).name)
    (config.out / "summary.json").write_text(json.dumps(summary, indent=2))
    (config.out / "summary.md").write_text(summary_markdown(summary))
    return SimulationResult(config, corpus, points, summary, config.out)


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
        writer.writerow(["strategy", "seed", "n_labels", "macro_f1", "micro_f1"])
        for point in points:
            writer.writerow(
                [point.strategy, point.seed, point.n_labels, f"{point.macro_f1:.6f}", f"{point.micro_f1:.6f}"]
            )


def read_curves(path: str | Path) -> list[CurvePoint]:
    with open(path, newline="") as handle:
        return [
            CurvePoint(
                row["strategy"], int(row["seed"]), int(row["n_labels"]), float(row["macro_f1"]), float(row["micro_f1"])
            )
            for row in csv.DictReader(handle)
        ]


def _table(points: Sequence[CurvePoint], metric: str) -> dict[str, dict[int, dict[int, float]]]:
    """strategy -> n_labels -> seed -> value."""
    table: dict[str, dict[int, dict[int, float]]] = {}
    for point in points:
        table.setdefault(point.strategy, {}).setdefault(point.n_labels, {})[point.seed] = getattr(point, metric)
    return table


def paired_test(
    points: Sequence[CurvePoint], strategy: str, baseline: str = BASELINE, metric: str = "macro_f1", after: int = 0
) -> dict[str, Any]:
    """Strategy minus baseline, paired over (seed, n_labels) for every n_labels > `after` (past the seed set).

    Points of one curve are not independent, so read the p-values as a screen, not a proof; the spread
    over seeds in the plot is the honest picture.
    """
    from scipy import stats

    table = _table(points, metric)
    differences = []
    for n_labels, by_seed in table.get(strategy, {}).items():
        if n_labels <= after:
            continue
        for seed, value in by_seed.items():
            base = table.get(baseline, {}).get(n_labels, {}).get(seed)
            if base is not None and not (math.isnan(value) or math.isnan(base)):
                differences.append(value - base)
    diffs = np.asarray(differences)
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


def summarise(
    points: Sequence[CurvePoint],
    config: SimulationConfig,
    corpus: LabelledCorpus,
    ceiling: dict[str, Any] | None,
    *,
    elapsed: float,
) -> dict[str, Any]:
    """Mean and spread at the report points, differences against random, paired tests, run facts."""
    macro = _table(points, "macro_f1")
    micro = _table(points, "micro_f1")
    counts = sorted({p.n_labels for p in points})
    report_at = [n for n in config.report_at if n in counts] or [counts[-1]]
    strategies: dict[str, Any] = {}
    for name in config.strategies:
        at: dict[str, Any] = {}
        for n in report_at:
            values = np.array(list(macro[name][n].values()))
            micro_values = np.array(list(micro[name][n].values()))
            entry = {
                "macro_f1_mean": float(np.nanmean(values)),
                "macro_f1_sd": float(np.nanstd(values)),
                "macro_f1_min": float(np.nanmin(values)),
                "macro_f1_max": float(np.nanmax(values)),
                "micro_f1_mean": float(np.nanmean(micro_values)),
            }
            if BASELINE in macro and name != BASELINE:
                base = float(np.nanmean(list(macro[BASELINE][n].values())))
                entry["difference_vs_random"] = entry["macro_f1_mean"] - base
                entry["ratio_vs_random"] = entry["macro_f1_mean"] / base if base else None
            at[str(n)] = entry
        curve_mean = [float(np.nanmean(list(macro[name][n].values()))) for n in counts]
        strategies[name] = {
            "at": at,
            "area_under_curve": float(np.trapezoid(curve_mean, counts) / (counts[-1] - counts[0]))
            if len(counts) > 1
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
        "skipped_unlabelled": corpus.skipped_unlabelled,
        "seed_size": config.seed_size,
        "step": config.step,
        "budget": config.budget,
        "seeds": config.seeds,
        "seed_offset": config.seed_offset,
        "cold_start": config.cold_start,
        "report_at": report_at,
        "training_args": config.training_args.to_dict(),
        "strategies": strategies,
        "all_training": ceiling,
        "elapsed_seconds": round(elapsed, 1),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {_cpu_count()} CPU cores, Python {platform.python_version()}",
        "config": {key: str(value) for key, value in asdict(config).items() if key != "training_args"},
    }


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def summary_markdown(summary: dict[str, Any]) -> str:
    """The summary as a Markdown table: macro-F1 mean ± sd per strategy at each report point."""
    report_at = summary["report_at"]
    header = "| strategy | " + " | ".join(f"macro-F1 @ {n}" for n in report_at) + " | mean over curve |"
    lines = [
        f"Data: `{summary['data']}` ({summary['n_train']} train / {summary['n_test']} test, {summary['split']}; "
        f"{'multi' if summary['multi_label'] else 'single'}-label, {len(summary['labels'])} labels). "
        f"Seed {summary['seed_size']} ({summary['cold_start']}), step {summary['step']}, "
        f"budget {summary['budget']}, {summary['seeds']} seeds "
        f"({summary['seed_offset']}-{summary['seed_offset'] + summary['seeds'] - 1}).",
        "",
        header,
        "|" + " --- |" * (len(report_at) + 2),
    ]
    for name, entry in summary["strategies"].items():
        cells = []
        for n in report_at:
            cell = entry["at"][str(n)]
            text = f"{cell['macro_f1_mean']:.3f} ± {cell['macro_f1_sd']:.3f}"
            if "difference_vs_random" in cell:
                text += f" ({cell['difference_vs_random']:+.3f})"
            cells.append(text)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {entry['area_under_curve']:.3f} |")
    ceiling = summary.get("all_training")
    if ceiling:
        lines += [
            "",
            f"All {ceiling['n_labels']} training rows, same head: macro-F1 {ceiling['macro_f1']:.3f}, "
            f"micro-F1 {ceiling['micro_f1']:.3f}.",
        ]
        if "cv_thresholds" in ceiling:
            lines[-1] += (
                f" With out-of-fold tuned thresholds: macro-F1 {ceiling['cv_thresholds']['macro_f1']:.3f}, "
                f"micro-F1 {ceiling['cv_thresholds']['micro_f1']:.3f}."
            )
    tested = [
        (name, entry["paired_vs_random"])
        for name, entry in summary["strategies"].items()
        if "paired_vs_random" in entry
    ]
    if tested:
        lines += [
            "",
            "Paired against random over (seed, label count) past the seed set (macro-F1):",
            "",
            "| strategy | mean difference | wins / losses | Wilcoxon p | paired t p |",
            "| --- | --- | --- | --- | --- |",
        ]
        for name, test in tested:
            lines.append(
                f"| {name} | {_fmt(test['mean_difference'], '+.4f')} | {test['wins']} / {test['losses']} | "
                f"{_fmt(test['wilcoxon_p'], '.2g')} | {_fmt(test['paired_t_p'], '.2g')} |"
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
    """Mean macro- and micro-F1 per strategy against labels, with the min-max band over seeds."""
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
    figure.suptitle(f"{title}: mean over seeds, band = min-max" if title else "mean over seeds, band = min-max")
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
    parser.add_argument("--group-field", default=None, help="keep groups whole in a random split (e.g. policy)")
    parser.add_argument("--test-fraction", type=float, default=0.25)
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--multi-label", dest="multi_label", action="store_true", default=None)
    kind.add_argument("--single-label", dest="multi_label", action="store_false")
    parser.add_argument("--cold-start", choices=COLD_STARTS, default="random")
    parser.add_argument("--report-at", type=int, nargs="+", default=[100, 200, 400])
    parser.add_argument("--base-model", default=None, help="local SentenceTransformer directory")
    parser.add_argument("--cache-dir", type=Path, default=Path("var/cache/embeddings"))
    parser.add_argument("--head-c", type=float, default=TrainingArgs.head_c)
    parser.add_argument("--threshold-rule", choices=THRESHOLD_RULES, default=TrainingArgs.threshold_rule)
    parser.add_argument("--no-progress", dest="show_progress", action="store_false")


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
        base_model=values["base_model"],
        cache_dir=Path(values["cache_dir"]),
        training_args=TrainingArgs(head_c=values["head_c"], threshold_rule=values["threshold_rule"]),
        show_progress=values["show_progress"],
    )
