"""Label-error detection on OPP-115: flip 10% of training labels on purpose, then ask how many of the flips
the ranking finds in its top k, against a random ranking of the same documents in the same run.

    .venv/bin/python benchmarks/label_errors_opp115.py            # writes docs/benchmarks-quality-label-errors.json

Reads ../shared/datasets/opp115/segments.jsonl (never copied into the repo) and the sentence embeddings the
simulation cached under var/cache/embeddings (encoded once, ~40 s, when missing). Segments carrying exactly
one category are used as a single-label task; multi-label segments are measured too, flipping one of their
labels. Nothing here touches the database: it is the same `learning.ml.label_errors` code the page runs.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from learning.ml.classifier import Classifier, base_body_id, default_base_model  # noqa: E402
from learning.ml.embeddings import EmbeddingCache  # noqa: E402
from learning.ml.label_errors import out_of_fold_probabilities, precision_recall_at_k, rank_label_issues  # noqa: E402
from learning.ml.simulation import load_corpus  # noqa: E402

DATA = ROOT.parent / "shared" / "datasets" / "opp115" / "segments.jsonl"


def embeddings_of(corpus) -> np.ndarray:
    base = default_base_model()
    cache = EmbeddingCache(ROOT / "var" / "cache" / "embeddings")
    cached = cache.get(corpus.texts, base_body_id(base))
    if cached is not None:
        return cached
    classifier = Classifier.create(corpus.labels, corpus.multi_label, base)
    return cache.get_or_compute(corpus.texts, classifier.body_id, classifier.encode)


def single_label(corpus, embeddings, rate: float, seed: int, ks: list[int]) -> dict:
    rng = np.random.default_rng(seed)
    rows = np.flatnonzero((corpus.targets.sum(axis=1) == 1) & ~corpus.test_mask)
    x = embeddings[rows]
    true = corpus.targets[rows].argmax(axis=1)
    n_classes = corpus.targets.shape[1]
    noisy = true.copy()
    flipped = rng.choice(len(rows), size=round(rate * len(rows)), replace=False)
    for i in flipped:
        noisy[i] = rng.choice([c for c in range(n_classes) if c != true[i]])
    started = time.perf_counter()
    probabilities = out_of_fold_probabilities(x, noisy, n_classes, seed=seed)
    issues = rank_label_issues(noisy, probabilities)
    seconds = time.perf_counter() - started
    return _scores("single-label", len(rows), n_classes, flipped, [i.index for i in issues], rng, ks, seconds)


def multi_label(corpus, embeddings, rate: float, seed: int, ks: list[int]) -> dict:
    rng = np.random.default_rng(seed)
    rows = np.flatnonzero(~corpus.test_mask)
    x = embeddings[rows]
    noisy = corpus.targets[rows].copy()
    n_classes = noisy.shape[1]
    flipped = rng.choice(len(rows), size=round(rate * len(rows)), replace=False)
    for i in flipped:  # one given label swapped for one the segment does not carry
        on, off = np.flatnonzero(noisy[i]), np.flatnonzero(noisy[i] == 0)
        noisy[i, rng.choice(on)] = 0
        noisy[i, rng.choice(off)] = 1
    started = time.perf_counter()
    probabilities = out_of_fold_probabilities(x, noisy, n_classes, multi_label=True, seed=seed)
    issues = rank_label_issues(noisy, probabilities, multi_label=True)
    seconds = time.perf_counter() - started
    return _scores("multi-label", len(rows), n_classes, flipped, [i.index for i in issues], rng, ks, seconds)


def _scores(task, n, n_classes, flipped, ranked, rng, ks, seconds) -> dict:
    flipped_set = {int(i) for i in flipped}
    random_ranking = [int(i) for i in rng.permutation(n)]
    rows = []
    for k in ks + [len(ranked)]:
        p, r = precision_recall_at_k(ranked, flipped_set, k)
        rp, rr = precision_recall_at_k(random_ranking, flipped_set, k)
        rows.append({"k": k, "precision": p, "recall": r, "random_precision": rp, "random_recall": rr})
    return {
        "task": task,
        "documents": n,
        "labels": n_classes,
        "flipped": len(flipped_set),
        "flagged": len(ranked),
        "seconds": round(seconds, 2),
        "at_k": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--rate", type=float, default=0.10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks-quality-label-errors.json")
    args = parser.parse_args()
    corpus = load_corpus(args.data, multi_label=True)
    embeddings = embeddings_of(corpus)
    results = []
    single = single_label(corpus, embeddings, args.rate, args.seed, [50, 100, 150])
    results.append(single)
    results.append(multi_label(corpus, embeddings, args.rate, args.seed, [100, 200, 300]))
    report = {
        "data": str(args.data.relative_to(ROOT.parent)) if args.data.is_relative_to(ROOT.parent) else str(args.data),
        "flip_rate": args.rate,
        "seed": args.seed,
        "folds": 5,
        "machine": f"{platform.processor() or platform.machine()}, python {platform.python_version()}",
        "results": results,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for result in results:
        print(
            f"{result['task']}: {result['documents']} documents, {result['flipped']} flipped, "
            f"{result['flagged']} flagged, {result['seconds']} s"
        )
        print("   k  precision  recall   random precision  random recall")
        for row in result["at_k"]:
            print(
                f"{row['k']:5d}  {row['precision']:9.3f}  {row['recall']:6.3f}  "
                f"{row['random_precision']:16.3f}  {row['random_recall']:13.3f}"
            )


if __name__ == "__main__":
    main()
