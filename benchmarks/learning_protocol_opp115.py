"""The learning protocol on OPP-115: choose under policy-grouped cross-validation, confirm once on the test split.

    .venv/bin/python benchmarks/learning_protocol_opp115.py --stage cv        # choices: 70 training policies
    .venv/bin/python benchmarks/learning_protocol_opp115.py --stage confirm   # once, on the 20 test policies

Each arm is one learner (today's, or the new one with the taxonomy's own words as anchors) with its query
strategies and random as the baseline in the same run, so every comparison is paired over (fold, seed). The
cv stage deals the 70 training policies into --folds folds (each fold's pool and test come from different
policies) and never reads the test split; the confirm stage runs the same arms, unchanged, on the dataset's
own split. The step is the live loop's cadence (a head refit every 10 labels, `fast_retrain_every`); the
first 20 labels are the live cold start's.

Reads ../shared/datasets/opp115/segments.jsonl in place (research licence: never copied into the repository)
and benchmarks/opp115_taxonomy.json (names, descriptions and examples written for Docket). Writes each arm's
outputs under --out/<stage>/<arm>/ and report.json, report.md and curves.png under --out/<stage>/.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from learning.ml.classifier import TrainingArgs  # noqa: E402
from learning.ml.simulation import (  # noqa: E402
    SimulationConfig,
    paired_between,
    read_curves,
    run_simulation,
    summary_markdown,
)

DATA = ROOT.parent / "shared" / "datasets" / "opp115" / "segments.jsonl"
DESCRIPTIONS = ROOT / "benchmarks" / "opp115_taxonomy.json"


@dataclass(frozen=True)
class Arm:
    """One learner and the strategies run with it (random is always added as the paired baseline)."""

    name: str
    strategies: tuple[str, ...]
    training_args: TrainingArgs = field(default_factory=TrainingArgs)
    descriptions: bool = False
    versus: tuple[tuple[str, str], ...] = ()
    """Pairs (strategy, other) also compared directly, paired over runs and across policies, in the report."""


ARMS = {
    # What a project got before: no label texts; the project default (margin, after the live loop's k-means
    # cold start) and the strategy the documentation recommended (diverse).
    "before": Arm("before", ("margin@diverse", "diverse"), TrainingArgs(anchor_copies=0)),
    # Screening under grouped CV: each label's text as one labelled document, and the rare-label strategies.
    "anchors": Arm(
        "anchors",
        ("diverse", "diverse_rare", "diverse_rare@zero_shot"),
        TrainingArgs(anchor_copies=1),
        descriptions=True,
    ),
    # The learner chosen under grouped CV, as a project now runs it: zero-shot suggestions at 0 labels, the
    # k-means cold start, each label's text counted as sixteen labelled documents, the diverse strategy.
    "new": Arm("new", ("diverse@diverse",), TrainingArgs(anchor_copies=16), descriptions=True),
    # The levers screened after that, each against random with the same learner (run with --step 20
    # --budget 200 --seeds 4): strategies that weigh labels by how few labelled examples they have ...
    "rare_strategies": Arm(
        "rare_strategies", ("diverse", "diverse_rare_uncertainty", "badge"), TrainingArgs(), descriptions=True
    ),
    # ... and the head: its regularisation, the anchors' weight, thresholds from cross-validation inside
    # the labelled set at every size (the default tunes them from 600 labelled documents on).
    "head_c1": Arm("head_c1", ("diverse",), TrainingArgs(head_c=1.0), descriptions=True),
    "head_c16": Arm("head_c16", ("diverse",), TrainingArgs(head_c=16.0), descriptions=True),
    "anchors32": Arm("anchors32", ("diverse",), TrainingArgs(anchor_copies=32), descriptions=True),
    "anchors64": Arm("anchors64", ("diverse",), TrainingArgs(anchor_copies=64), descriptions=True),
    "thresholds_cv": Arm("thresholds_cv", ("diverse",), TrainingArgs(threshold_rule="cv"), descriptions=True),
    # The project default against the best rare-label strategy of the screen, both as a project runs them (the
    # k-means cold start, a head refit every 10 labels; run with --step 10 --budget 200 --seeds 4), paired.
    # The rule, fixed before the run: the default becomes diverse_rare_uncertainty if its mean beats diverse at
    # 200 labels and is not below it by more than 0.005 at 50 or at 100; otherwise diverse stays.
    "rare_live": Arm(
        "rare_live",
        ("diverse@diverse", "diverse_rare_uncertainty@diverse"),
        TrainingArgs(anchor_copies=16),
        descriptions=True,
        versus=(("diverse_rare_uncertainty@diverse", "diverse@diverse"),),
    ),
    # Its confirmation on the test policies, once, if the rule above switches the default: the new learner with
    # diverse_rare_uncertainty beside the earlier confirmation of `new` (random here must repeat its figures).
    "new_rare": Arm(
        "new_rare", ("diverse_rare_uncertainty@diverse",), TrainingArgs(anchor_copies=16), descriptions=True
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", choices=("cv", "confirm"), required=True)
    parser.add_argument("--arm", action="append", choices=sorted(ARMS), help="default: every arm")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "bench" / "protocol")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--seed-offset", type=int, default=0)
    parser.add_argument("--step", type=int, default=10)
    parser.add_argument("--budget", type=int, default=300)
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "var" / "cache" / "embeddings")
    parser.add_argument("--workers", type=int, default=1, help="curves side by side in this many processes")
    parser.add_argument(
        "--report-only", action="store_true", help="gather the arms already run under --out into the report and plot"
    )
    options = parser.parse_args()
    stage_dir = options.out / options.stage
    report_path = stage_dir / "report.json"
    # Arms may run one at a time (each takes a while on two shared cores): the report gathers them all.
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    if options.report_only:
        report = {
            name: json.loads((stage_dir / name / "summary.json").read_text())
            for name in ARMS
            if (stage_dir / name / "summary.json").exists()
        }
    for name in [] if options.report_only else options.arm or list(ARMS):
        arm = ARMS[name]
        config = SimulationConfig(
            data=options.data,
            out=stage_dir / name,
            strategies=[*arm.strategies, "random"],
            seed_size=20,
            step=options.step,
            budget=options.budget,
            seeds=options.seeds,
            seed_offset=options.seed_offset,
            group_field="policy",
            folds=options.folds if options.stage == "cv" else None,
            multi_label=True,
            label_descriptions=DESCRIPTIONS if arm.descriptions else None,
            report_at=(20, 50, 100, 200, 300, 400),
            cache_dir=options.cache_dir,
            training_args=replace(arm.training_args),
            workers=options.workers,
        )
        summary = run_simulation(config).summary
        report[name] = summary
        print(f"## {name}\n\n{summary_markdown(summary)}{versus_markdown(stage_dir, name, summary)}")
    report_path.write_text(json.dumps(report, indent=2))
    (stage_dir / "report.md").write_text(
        "\n".join(
            f"## {name}\n\n{summary_markdown(summary)}{versus_markdown(stage_dir, name, summary)}"
            for name, summary in report.items()
        )
    )
    plot_arms(stage_dir, list(report), stage_dir / "curves.png", options.stage)


def versus_markdown(stage_dir: Path, arm: str, summary: dict) -> str:
    """The arm's direct comparisons (`Arm.versus`) at each report point, as a Markdown table ('' when none)."""
    pairs = ARMS[arm].versus if arm in ARMS else ()
    if not pairs:
        return ""
    points = read_curves(stage_dir / arm / "curves.csv")
    lines = [
        "",
        "Directly against each other, paired over runs (fold x seed) and across test groups:",
        "",
        "| strategy | against | labels | mean difference | runs better / worse, Wilcoxon p "
        "| groups better / worse, Wilcoxon p |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for strategy, other in pairs:
        for n in summary["report_at"]:
            if n < summary["seed_size"]:
                continue
            test = paired_between(points, summary, strategy, other, n)
            runs, groups = test["runs"], test.get("groups")
            group_cell = "n/a"
            if groups:
                group_cell = f"{groups['groups_better']} / {groups['groups_worse']}, p {_p(groups['wilcoxon_p'])}"
            lines.append(
                f"| {strategy} | {other} | {n} | {_signed(runs['mean_difference'])} | "
                f"{runs['wins']} / {runs['losses']}, p {_p(runs['wilcoxon_p'])} | {group_cell} |"
            )
    return "\n".join(lines) + "\n"


def _p(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2g}"


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.4f}"


def plot_arms(stage_dir: Path, arms: list[str], path: Path, stage: str) -> None:
    """Every arm's strategies on one macro-F1 plot: mean over runs, band = min-max; random dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    figure, axis = plt.subplots(figsize=(9, 5.5))
    for arm in arms:
        points = read_curves(stage_dir / arm / "curves.csv")
        by_strategy: dict[str, dict[int, list[float]]] = {}
        for point in points:
            by_strategy.setdefault(point.strategy, {}).setdefault(point.n_labels, []).append(point.macro_f1)
        for strategy, by_count in by_strategy.items():
            counts = sorted(by_count)
            mean = [float(np.nanmean(by_count[n])) for n in counts]
            style = "--" if strategy == "random" else "-"
            line = axis.plot(counts, mean, style, label=f"{arm}: {strategy}")[0]
            axis.fill_between(
                counts,
                [np.nanmin(by_count[n]) for n in counts],
                [np.nanmax(by_count[n]) for n in counts],
                color=line.get_color(),
                alpha=0.08,
            )
    summary = json.loads((stage_dir / arms[0] / "summary.json").read_text())
    ceiling = summary["all_training"]
    axis.axhline(ceiling["macro_f1"], color="grey", linestyle=":", label=f"all {ceiling['n_labels']} labels, frozen")
    where = "policy-grouped 5-fold CV, 70 training policies" if stage == "cv" else "the 20 test policies"
    axis.set_title(f"OPP-115 macro-F1 on unseen policies ({where})")
    axis.set_xlabel("labelled documents")
    axis.set_ylabel("macro-F1")
    axis.grid(alpha=0.3)
    axis.legend(fontsize="small", loc="lower right", ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    main()
