"""Cold start picks distinct, spread-out documents and scales to a large collection."""

import time

import numpy as np

from learning.ml.coldstart import cold_start, diverse_sample, random_sample


def test_diverse_sample_takes_one_document_from_each_separated_group():
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=20.0, size=(5, 16))
    group = np.repeat(np.arange(5), 200)
    embeddings = centres[group] + rng.normal(size=(1000, 16))
    picked = diverse_sample(embeddings, 5, rng=0)
    assert sorted(group[picked].tolist()) == [0, 1, 2, 3, 4]


def test_diverse_sample_scales_to_a_hundred_thousand_documents():
    embeddings = np.random.default_rng(1).standard_normal((100_000, 384)).astype(np.float32)
    started = time.perf_counter()
    picked = diverse_sample(embeddings, 20, rng=0)
    elapsed = time.perf_counter() - started
    assert len(set(picked.tolist())) == 20
    assert elapsed < 15, f"cold start took {elapsed:.1f}s on 100,000 x 384"


def test_diverse_sample_never_returns_excluded_documents():
    embeddings = np.random.default_rng(2).normal(size=(300, 8))
    excluded = np.arange(0, 300, 2)
    picked = diverse_sample(embeddings, 30, rng=0, exclude=excluded)
    assert len(set(picked.tolist())) == 30
    assert not set(picked.tolist()) & set(excluded.tolist())


def test_diverse_sample_returns_everything_when_asked_for_more_than_there_is():
    embeddings = np.random.default_rng(3).normal(size=(7, 4))
    assert sorted(diverse_sample(embeddings, 10, rng=0).tolist()) == list(range(7))


def test_random_cold_start_is_reproducible_and_distinct():
    first = random_sample(1000, 50, rng=5)
    assert first.tolist() == random_sample(1000, 50, rng=5).tolist()
    assert len(set(first.tolist())) == 50


def test_cold_start_dispatches_by_name():
    embeddings = np.random.default_rng(4).normal(size=(100, 4))
    assert len(cold_start("diverse", embeddings, 10, rng=0)) == 10
    assert len(cold_start("random", embeddings, 10, rng=0)) == 10
