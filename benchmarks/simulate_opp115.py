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
from dataclasses import replace
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
        "--fine-tune-steps",
        type=int,
        default=60,
        help="cap of the full-training body fine-tune (~3-8 s a step on 2 shared cores); 0 skips it",
    )
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "var" / "cache" / "embeddings")
    parser.add_argument(
        "--part", choices=("all", "simulation", "fine-tune"), default="all", help="run one half on its own"
    )
    options = parser.parse_args()
    options.out.mkdir(parents=True, exist_ok=True)
    report_path = options.out / "report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    report["reference"] = REFERENCE

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
    if options.part in ("all", "simulation"):
        report["simulation"] = run_simulation(config).summary
    if options.part in ("all", "fine-tune") and options.fine_tune_steps > 0:
        report["fine_tuned"] = fine_tuned_ceiling(options.data, options.fine_tune_steps, options.cache_dir)
    report_path.write_text(json.dumps(report, indent=2))
    if "simulation" not in report:
        print(json.dumps(report.get("fine_tuned"), indent=2))
        return
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
    heads = {}
    for rule in ("fixed", "cv"):
        head = classifier.on_same_body(corpus.labels, True, replace(args, threshold_rule=rule))
        head.fit_head(embeddings[train], corpus.targets[train])
        probabilities = head.predict_proba_embeddings(embeddings[test])
        metrics = evaluate(corpus.targets[test], (probabilities >= 0.5).astype(int), corpus.labels, multi_label=True)
        heads[f"{rule}_thresholds"] = {"macro_f1": metrics["macro_f1"], "micro_f1": metrics["micro_f1"]}
    return {
        "steps": steps,
        "pairs": steps * args.batch_size,
        "training_args": args.to_dict(),
        "fine_tune_seconds": round(fine_tune_seconds, 1),
        "encode_seconds": round(encode_seconds, 1),
        **heads,
    }


def report_markdown(report: dict) -> str:
    summary = report["simulation"]
    reference = report["reference"]
    lines = [summary_markdown(summary), ""]
    ceiling = summary["all_training"]
    lines.append(
        f"Ceiling, frozen body + balanced head on all {ceiling['n_labels']} training segments: "
        f"macro-F1 {ceiling['macro_f1']:.3f}, micro-F1 {ceiling['micro_f1']:.3f} "
        f"(README reference {reference['all_training_frozen']:.3f}); with out-of-fold tuned thresholds "
        f"{ceiling['cv_thresholds']['macro_f1']:.3f} / {ceiling['cv_thresholds']['micro_f1']:.3f}."
    )
    tuned = report.get("fine_tuned")
    if tuned:
        lines.append(
            f"Ceiling, SetFit body fine-tuned on all training segments, capped at {tuned['steps']} steps of 16 pairs "
            f"({tuned['fine_tune_seconds'] / 60:.1f} min) + balanced head: macro-F1 "
            f"{tuned['fixed_thresholds']['macro_f1']:.3f}, micro-F1 {tuned['fixed_thresholds']['micro_f1']:.3f}; "
            f"with tuned thresholds {tuned['cv_thresholds']['macro_f1']:.3f} / "
            f"{tuned['cv_thresholds']['micro_f1']:.3f}."
        )
    lines += ["", f"Elapsed: {summary['elapsed_seconds'] / 60:.1f} min on {summary['machine']}."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
