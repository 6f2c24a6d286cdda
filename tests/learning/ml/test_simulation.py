"""The simulation loop on a small synthetic file: splits, pairing, outputs, caching, the command line."""

import argparse
import csv
import json

import numpy as np
import pytest

from learning.ml.classifier import TrainingArgs
from learning.ml.embeddings import EmbeddingCache
from learning.ml.simulation import (
    SimulationConfig,
    add_simulation_arguments,
    config_from_arguments,
    corpus_embeddings,
    grouped_folds,
    load_corpus,
    paired_between,
    run_simulation,
    simulate_run,
)
from tests.learning.ml.frozen import frozen_body

TOPICS = {
    "collection": ["We collect your {}.", "Your {} is recorded when you sign up.", "We gather the {} you provide."],
    "sharing": [
        "We share your {} with partners.",
        "Your {} may be sold to advertisers.",
        "Affiliates receive your {}.",
    ],
    "retention": ["We keep your {} for two years.", "Your {} is deleted after a month.", "Backups of your {} expire."],
}
THINGS = ["email address", "phone number", "location", "purchase history", "name", "IP address"]


def write_rows(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def synthetic_rows(multi_label=False, with_split=True):
    rows = []
    for t, (label, templates) in enumerate(TOPICS.items()):
        for i, template in enumerate(templates):
            for j, thing in enumerate(THINGS):
                n = len(rows)
                row = {"id": f"p{n % 9}:{n}", "policy": f"p{n % 9}", "text": template.format(thing)}
                if multi_label:
                    extra = ["retention"] if label == "collection" and j % 2 else []
                    row["labels"] = [label, *extra]
                else:
                    row["label"] = label
                if with_split:
                    row["split"] = "test" if (i * len(THINGS) + j + t) % 4 == 0 else "train"
                rows.append(row)
    return rows


def test_split_field_marks_the_test_rows(tmp_path):
    corpus = load_corpus(write_rows(tmp_path / "d.jsonl", synthetic_rows()))
    assert corpus.labels == ["collection", "retention", "sharing"]
    assert not corpus.multi_label
    assert corpus.test_mask.sum() == sum(1 for row in synthetic_rows() if row["split"] == "test")


def test_random_split_keeps_each_group_on_one_side(tmp_path):
    rows = synthetic_rows(with_split=False)
    corpus = load_corpus(write_rows(tmp_path / "d.jsonl", rows), group_field="policy", test_fraction=0.34)
    policies = np.array([row["policy"] for row in rows])
    test_policies = set(policies[corpus.test_mask])
    assert test_policies and not test_policies & set(policies[~corpus.test_mask])
    again = load_corpus(tmp_path / "d.jsonl", group_field="policy", test_fraction=0.34)
    assert np.array_equal(again.test_mask, corpus.test_mask)


def test_multi_label_is_detected_and_unlabelled_rows_skipped(tmp_path):
    rows = synthetic_rows(multi_label=True) + [{"text": "no labels yet", "labels": []}]
    corpus = load_corpus(write_rows(tmp_path / "d.jsonl", rows))
    assert corpus.multi_label
    assert corpus.targets.shape == (len(rows) - 1, 3)
    assert corpus.skipped_unlabelled == 1


def test_a_single_label_run_refuses_rows_with_several_labels(tmp_path):
    with pytest.raises(ValueError, match="several labels"):
        load_corpus(write_rows(tmp_path / "d.jsonl", synthetic_rows(multi_label=True)), multi_label=False)


@pytest.fixture
def small_corpus(tmp_path):
    path = write_rows(tmp_path / "d.jsonl", synthetic_rows(multi_label=True))
    corpus = load_corpus(path)
    classifier = frozen_body().on_same_body(corpus.labels, corpus.multi_label)
    embeddings = corpus_embeddings(corpus, classifier, tmp_path / "cache")
    return path, corpus, classifier, embeddings


def test_embeddings_are_encoded_once_and_read_from_the_cache(small_corpus, tmp_path):
    _, corpus, classifier, embeddings = small_corpus
    cached = EmbeddingCache(tmp_path / "cache").get(corpus.texts, classifier.body_id)
    assert cached is not None and np.array_equal(cached, embeddings)
    assert EmbeddingCache(tmp_path / "cache").get(corpus.texts, "another-body") is None


def test_strategies_start_from_the_same_seed_set(small_corpus):
    _, corpus, classifier, embeddings = small_corpus
    counts = [6, 12, 18]
    margin = simulate_run(corpus, embeddings, classifier, "margin", 0, counts)
    random = simulate_run(corpus, embeddings, classifier, "random", 0, counts)
    assert [p.n_labels for p in margin] == counts
    assert margin[0].macro_f1 == random[0].macro_f1 or np.isnan(margin[0].macro_f1)


def test_single_label_files_run_through_the_same_loop(tmp_path):
    corpus = load_corpus(write_rows(tmp_path / "d.jsonl", synthetic_rows()))
    classifier = frozen_body().on_same_body(corpus.labels, corpus.multi_label)
    embeddings = corpus_embeddings(corpus, classifier, tmp_path / "cache")
    for strategy in ("least_confident", "batch", "diverse@diverse"):
        points = simulate_run(corpus, embeddings, classifier, strategy, 1, [6, 12, 18])
        assert [p.n_labels for p in points] == [6, 12, 18]
        assert 0 <= points[-1].macro_f1 <= 1


def test_run_writes_curves_plot_and_summary_with_paired_tests(small_corpus, tmp_path):
    path, corpus, classifier, _ = small_corpus
    config = SimulationConfig(
        data=path,
        out=tmp_path / "out",
        strategies=["margin", "diverse@diverse", "random"],
        seed_size=6,
        step=6,
        budget=24,
        seeds=2,
        cache_dir=tmp_path / "cache",
        report_at=(12, 24),
        show_progress=False,
    )
    result = run_simulation(config, classifier=classifier)
    with open(tmp_path / "out" / "curves.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 * 2 * 4
    assert set(rows[0]) == {"strategy", "fold", "seed", "n_labels", "macro_f1", "micro_f1"}
    assert (tmp_path / "out" / "learning_curves.png").stat().st_size > 10_000
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["report_at"] == [12, 24]
    assert set(summary["strategies"]["margin"]["paired_vs_random"]) >= {"mean_difference", "wilcoxon_p", "n_pairs"}
    assert summary["strategies"]["margin"]["paired_vs_random"]["n_pairs"] == 2 * 3
    assert 0 <= summary["all_training"]["macro_f1"] <= 1
    assert "| margin |" in (tmp_path / "out" / "summary.md").read_text()
    assert result.summary_markdown.startswith("Data:")


def test_command_line_options_become_a_config_with_random_as_baseline(tmp_path):
    parser = argparse.ArgumentParser()
    add_simulation_arguments(parser)
    options = parser.parse_args(
        ["--data", "d.jsonl", "--out", str(tmp_path), "--strategy", "margin", "--single-label", "--seeds", "5"]
    )
    config = config_from_arguments(options)
    assert config.strategies == ["margin", "random"]
    assert config.multi_label is False and config.seeds == 5
    assert config.label_counts()[:3] == [20, 40, 60] and config.label_counts()[-1] == 400


def test_unknown_strategy_fails_before_any_work(tmp_path):
    config = SimulationConfig(data=tmp_path / "missing.jsonl", out=tmp_path, strategies=["clairvoyant"])
    with pytest.raises(KeyError, match="clairvoyant"):
        run_simulation(config)


def test_grouped_folds_keep_each_policy_whole_and_never_touch_the_test_split(tmp_path):
    rows = synthetic_rows(multi_label=True)
    corpus = load_corpus(write_rows(tmp_path / "d.jsonl", rows), group_field="policy")
    folds = grouped_folds(corpus, 3)
    test_rows = set(corpus.test_indices.tolist())
    seen = []
    for fold in folds:
        pool_groups = set(corpus.groups[fold.pool])
        held_groups = set(corpus.groups[fold.test])
        assert held_groups and not pool_groups & held_groups
        assert not (set(fold.pool.tolist()) | set(fold.test.tolist())) & test_rows
        seen.extend(fold.test.tolist())
    assert sorted(seen) == corpus.train_indices.tolist()  # every training row is held out exactly once
    again = grouped_folds(load_corpus(tmp_path / "d.jsonl", group_field="policy"), 3)
    assert all(np.array_equal(a.test, b.test) for a, b in zip(folds, again, strict=True))


def test_cross_validation_needs_a_group_field(tmp_path):
    config = SimulationConfig(data=tmp_path / "d.jsonl", out=tmp_path, folds=3)
    with pytest.raises(ValueError, match="group-field"):
        run_simulation(config)


def test_grouped_run_reports_folds_groups_and_the_zero_shot_point(small_corpus, tmp_path):
    path, corpus, classifier, _ = small_corpus
    descriptions = tmp_path / "taxonomy.json"
    descriptions.write_text(
        json.dumps(
            {
                "labels": [
                    {"key": "collection", "name": "Collection", "description": "What we collect about you."},
                    {"key": "sharing", "name": "Sharing", "description": "Data shared with partners."},
                    {"key": "retention", "name": "Retention", "description": "How long data is kept."},
                ]
            }
        )
    )
    config = SimulationConfig(
        data=path,
        out=tmp_path / "cv",
        strategies=["diverse_rare@zero_shot", "random"],
        seed_size=6,
        step=6,
        budget=18,
        seeds=2,
        group_field="policy",
        folds=3,
        label_descriptions=descriptions,
        cache_dir=tmp_path / "cache",
        report_at=(6, 18),
        show_progress=False,
    )
    result = run_simulation(
        config, classifier=classifier.on_same_body(corpus.labels, True, args=TrainingArgs(anchor_copies=2))
    )
    summary = result.summary
    assert summary["report_at"] == [0, 6, 18]
    assert {(p.fold, p.seed) for p in result.points} == {(f, s) for f in range(3) for s in range(2)}
    zero = [p for p in result.points if p.n_labels == 0]
    assert len(zero) == 2 * 3 * 2 and all(0 <= p.macro_f1 <= 1 for p in zero)
    entry = summary["strategies"]["diverse_rare@zero_shot"]["at"]["18"]
    assert entry["paired_vs_random"]["n_pairs"] == 6
    assert {"macro_f1_sd_over_folds", "macro_f1_sd_over_seeds"} <= set(entry)
    groups = summary["per_group"]["diverse_rare@zero_shot"]["18"]
    assert groups["n_groups"] == len(set(result.corpus.groups[result.corpus.train_indices]))
    assert "groups_better" in groups
    assert "cross-validation grouped by 'policy'" in result.summary_markdown
    # Two strategies of the run compared directly, as against random: the same test, the other way round.
    direct = paired_between(result.points, summary, "diverse_rare@zero_shot", "random", 18)
    assert direct["runs"]["n_pairs"] == 6
    assert direct["runs"]["mean_difference"] == pytest.approx(entry["paired_vs_random"]["mean_difference"])
    assert direct["groups"]["groups_better"] == groups["groups_better"]
    reverse = paired_between(result.points, summary, "random", "diverse_rare@zero_shot", 18)
    assert reverse["groups"]["groups_better"] == groups["groups_worse"]


def test_per_group_macro_f1_equals_the_metric_on_each_group_alone(small_corpus):
    from learning.ml.metrics import f1_scores
    from learning.ml.simulation import _macro_f1_by_group

    _, corpus, _, _ = small_corpus
    rng = np.random.default_rng(0)
    truth = corpus.targets
    predicted = (rng.random(truth.shape) < 0.4).astype(np.int64)
    groups = np.array([text_id.split(":")[0] for text_id in corpus.ids])
    fast = _macro_f1_by_group(truth, predicted, groups, corpus)
    for group in set(groups):
        rows = groups == group
        assert fast[group] == pytest.approx(f1_scores(truth[rows], predicted[rows], len(corpus.labels), True)[0])


def test_curves_in_several_processes_equal_one_process(small_corpus, tmp_path):
    path, corpus, classifier, _ = small_corpus
    results = []
    for workers in (1, 2):
        config = SimulationConfig(
            data=path,
            out=tmp_path / f"workers{workers}",
            strategies=["diverse", "random"],
            seed_size=6,
            step=6,
            budget=18,
            seeds=2,
            group_field="policy",
            folds=3,
            cache_dir=tmp_path / "cache",
            report_at=(6, 18),
            show_progress=False,
            workers=workers,
        )
        results.append(run_simulation(config, classifier=classifier.on_same_body(corpus.labels, True)))
    one, two = results
    assert [(p.strategy, p.fold, p.seed, p.n_labels, p.macro_f1) for p in two.points] == [
        (p.strategy, p.fold, p.seed, p.n_labels, p.macro_f1) for p in one.points
    ]
    assert two.summary["per_group"] == one.summary["per_group"]
