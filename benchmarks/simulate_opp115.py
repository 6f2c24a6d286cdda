"""OPP-115 active-learning benchmark: learning curves per query strategy against random, and the ceilings.

    .venv/bin/python benchmarks/simulate_opp115.py --out var/bench/opp115

Runs learning.ml.simulation on ../shared/datasets/opp115/segments.jsonl (read in place: the corpus is
licensed for research and must not be copied into the repository), multi-label, on its policy-level split:
seed 20, step 20, budget 400, 3 seeds. Then two ceilings on all 2,298 training segments: the same
frozen-body balanced head, and a SetFit body fine-tune capped at --fine-tune-steps steps with that head.
Writes the simulation outputs plus report.md and report.json under --out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from learning.ml.classifier import Classifier, TrainingArgs  # noqa: E402
from learning.ml.embeddings import EmbeddingCache  # noqa: E402
from learning.ml.metrics import evaluate  # noqa: E402
from learning.ml.simulation import SimulationConfig, load_corpus, run_simulation, summary_markdown  # noqa: E402

DATA = ROOT.parent / "shared" / "datasets" / "opp115" / "segments.jsonl"
STRATEGIES = ["random", "least_confident", "margin", "entropy", "batch", "diverse", "diverse@diverse"]
"""least_confident is the README's "plain uncertainty"; diverse@diverse adds the k-means cold start."""
REFERENCE = {
    "random": (0.534, 0.589, 0.608),
    "least_confident": (0.504, 0.604, 0.630),
    "all_training_frozen": 0.634,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "bench" / "opp115")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed-offset", type=int, default=0)
    parser.add_argument("--strategy", action="append", dest="strategies", help=f"default: {' '.join(STRATEGIES)}")
    parser.add_argument(
        "--fine-tune-steps", type=int, default=150, help="cap of the full-training body fine-tune; 0 skips it"
    )
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "var" / "cache" / "embeddings")
    options = parser.parse_args()

    config = SimulationConfig(
        data=options.data,
        out=options.out,
        strategies=options.strategies or STRATEGIES,
        seed_size=20,
        step=20,
        budget=400,
        seeds=options.seeds,
        seed_offset=options.seed_offset,
        multi_label=True,
        report_at=(100, 200, 400),
        cache_dir=options.cache_dir,
    )
    result = run_simulation(config)
    report = {"simulation": result.summary, "reference": REFERENCE}
    if options.fine_tune_steps > 0:
        report["fine_tuned"] = fine_tuned_ceiling(options.data, options.fine_tune_steps, options.cache_dir)
    (options.out / "report.json").write_text(json.dumps(report, indent=2))
    markdown = report_markdown(report)
    (options.out / "report.md").write_text(markdown)
    print(markdown)


def fine_tuned_ceiling(data: Path, steps: int, cache_dir: Path) -> dict:
    """SetFit body fine-tuned on every training segment (capped at `steps`), then the balanced head."""
    from tqdm.auto import tqdm

    corpus = load_corpus(data, multi_label=True)
    train, test = corpus.train_indices, corpus.test_indices
    args = TrainingArgs(max_steps=steps, num_iterations=20, batch_size=16, seed=0)
    classifier = Classifier.create(corpus.labels, True, args=args)
    texts = [corpus.texts[i] for i in train]
    started = time.time()
    with tqdm(total=steps, desc="fine-tuning body", unit="step") as bar:
        classifier.fine_tune_body(
            texts, corpus.targets[train], progress_callback=lambda done, _: bar.update(done - bar.n)
        )
    fine_tune_seconds = time.time() - started
    started = time.time()
    with tqdm(total=len(corpus.texts), desc="encoding with the tuned body", unit="text") as bar:
        embeddings = EmbeddingCache(cache_dir).get_or_compute(
            corpus.texts,
            classifier.body_id,
            lambda all_texts: classifier.encode(all_texts, progress_callback=lambda done, _: bar.update(done - bar.n)),
        )
    encode_seconds = time.time() - started
    classifier.fit_head(embeddings[train], corpus.targets[train])
    probabilities = classifier.predict_proba_embeddings(embeddings[test])
    metrics = evaluate(corpus.targets[test], (probabilities >= 0.5).astype(int), corpus.labels, multi_label=True)
    return {
        "steps": steps,
        "pairs": steps * args.batch_size,
        "training_args": args.to_dict(),
        "fine_tune_seconds": round(fine_tune_seconds, 1),
        "encode_seconds": round(encode_seconds, 1),
        "macro_f1": metrics["macro_f1"],
        "micro_f1": metrics["micro_f1"],
        "per_label_f1": {label: values["f1"] for label, values in metrics["per_label"].items()},
    }


def report_markdown(report: dict) -> str:
    summary = report["simulation"]
    reference = report["reference"]
    lines = [summary_markdown(summary), ""]
    ceiling = summary["all_training"]
    lines.append(
        f"Ceiling, frozen body + balanced head on all {ceiling['n_labels']} training segments: "
        f"macro-F1 {ceiling['macro_f1']:.3f}, micro-F1 {ceiling['micro_f1']:.3f} "
        f"(README reference {reference['all_training_frozen']:.3f})."
    )
    tuned = report.get("fine_tuned")
    if tuned:
        lines.append(
            f"Ceiling, SetFit body fine-tuned on all training segments, capped at {tuned['steps']} steps of 16 pairs "
            f"({tuned['fine_tune_seconds'] / 60:.1f} min) + balanced head: macro-F1 {tuned['macro_f1']:.3f}, "
            f"micro-F1 {tuned['micro_f1']:.3f}."
        )
    lines += ["", f"Elapsed: {summary['elapsed_seconds'] / 60:.1f} min on {summary['machine']}."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
