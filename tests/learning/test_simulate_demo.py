"""`manage.py simulate` end to end on the demo data: grouped cross-validation with the taxonomy's own words.

The heavy OPP-115 runs live in benchmarks/; this is the same command on the 141 labelled demo documents, small
enough for every test run.
"""

import json
from pathlib import Path

import pytest
from django.core.management import call_command

DEMO = Path(__file__).resolve().parents[2] / "annotation" / "demo"

pytestmark = pytest.mark.slow


def test_simulate_cross_validates_by_group_on_the_demo_data(tmp_path, capsys):
    out = tmp_path / "out"
    call_command(
        "simulate",
        "--data",
        str(DEMO / "documents.jsonl"),
        "--group-field",
        "source_title",
        "--folds",
        "3",
        "--label-descriptions",
        str(DEMO / "taxonomy.json"),
        "--anchor-copies",
        "1",
        "--strategy",
        "diverse_rare@zero_shot",
        "--seed-size",
        "10",
        "--step",
        "10",
        "--budget",
        "40",
        "--seeds",
        "2",
        "--report-at",
        "20",
        "40",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--out",
        str(out),
        "--no-progress",
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["folds"] == 3 and summary["evaluation"].startswith("3-fold cross-validation grouped")
    assert summary["report_at"] == [0, 20, 40]
    assert set(summary["strategies"]) == {"diverse_rare@zero_shot", "random"}
    # The demo's held-out rows (a grouped random quarter: it has no split field) are never in a fold.
    assert sum(fold["test"] for fold in summary["fold_sizes"]) == summary["n_train"]
    zero_shot = summary["strategies"]["random"]["at"]["0"]["macro_f1_mean"]
    assert 0 < zero_shot <= 1  # suggestions from the label descriptions alone, before any label
    assert summary["per_group"]["diverse_rare@zero_shot"]["40"]["n_groups"] > 10
    assert "Wilcoxon p (groups)" in capsys.readouterr().out
    assert (out / "learning_curves.png").stat().st_size > 10_000


def test_simulate_replays_the_slow_path_with_a_fine_tuned_body(tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    call_command(
        "simulate",
        "--data",
        str(DEMO / "documents.jsonl"),
        "--group-field",
        "source_title",
        "--strategy",
        "random",
        "--seed-size",
        "10",
        "--step",
        "10",
        "--budget",
        "30",
        "--seeds",
        "1",
        "--slow-every",
        "20",
        "--slow-steps",
        "1",
        "--report-at",
        "30",
        "--cache-dir",
        str(cache),
        "--out",
        str(out),
        "--no-progress",
    )
    summary = json.loads((out / "summary.json").read_text())
    assert 0 <= summary["strategies"]["random"]["at"]["30"]["macro_f1_mean"] <= 1
    # The base body's embeddings and those of the body fine-tuned at 20 labels, each cached once.
    assert len(list(cache.glob("*.npy"))) == 2
